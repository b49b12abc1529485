"""What users call: ``LLM`` (settings plus single calls, streams and batches), ``Batch`` and ``Fill``.

- ``llm``: ``LLM`` — its single calls go through a ``CallRunner`` (``nbllm._call``).
- ``batch``: ``Batch`` — many prompts on the same runner, nothing finished lost, an optional spend guard
  (``budget``: ``SpendGuard``, ``OutputGuess``); ``workers``: as many in flight as the keys allow;
  ``hedging``: the latency tail raced on other keys (``Hedger``).
- ``provider_batch``: ``ProviderBatchRun`` — ``amap(mode="batch")``: the same, through provider batch APIs.
- ``batch_listing``: ``provider_batches()`` and ``cancel_provider_batch()`` over the store's job record.
- ``results``: ``Results`` — the awaited batch: a list with ``to_dataframe()`` and ``summary()``.
- ``fill``: ``Fill`` — one template over the rows of a table, the answers into a column.
- ``estimate``: ``Estimate`` — what a batch would cost and take, before sending.
"""

from .batch import Batch
from .batch_listing import (
    ProviderBatchInfo,
    ProviderBatchList,
    cancel_provider_batch,
    provider_batches,
)
from .budget import OutputGuess, SpendGuard
from .estimate import Estimate
from .fill import Fill, fill_prompts
from .llm import LLM
from .provider_batch import ProviderBatchRun
from .results import BatchSummary, Results

__all__ = [
    "LLM",
    "Batch",
    "BatchSummary",
    "Estimate",
    "Fill",
    "OutputGuess",
    "ProviderBatchInfo",
    "ProviderBatchList",
    "ProviderBatchRun",
    "Results",
    "SpendGuard",
    "cancel_provider_batch",
    "fill_prompts",
    "provider_batches",
]
