"""What users call: ``LLM`` (settings plus single calls, streams and batches) and ``Batch``.

- ``llm``: ``LLM`` — its single calls go through a ``CallRunner`` (``nbllm._call``).
- ``batch``: ``Batch`` — many prompts on the same runner, bounded concurrency, nothing finished lost.
- ``provider_batch``: ``ProviderBatchRun`` — ``amap(mode="batch")``: the same, through provider batch APIs.
- ``batch_listing``: ``provider_batches()`` and ``cancel_provider_batch()`` over the store's job record.
- ``results``: ``Results`` — the awaited batch: a list with ``to_dataframe()`` and ``summary()``.
"""

from .batch import Batch
from .llm import LLM
from .batch_listing import ProviderBatchInfo, ProviderBatchList, cancel_provider_batch, provider_batches
from .provider_batch import ProviderBatchRun
from .results import BatchSummary, Results

__all__ = ["LLM", "Batch", "BatchSummary", "ProviderBatchInfo", "ProviderBatchList", "ProviderBatchRun", "Results",
           "cancel_provider_batch", "provider_batches"]
