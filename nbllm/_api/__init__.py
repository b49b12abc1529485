"""What users call: ``LLM`` (settings plus single calls, streams and batches) and ``Batch``.

- ``llm``: ``LLM`` — its single calls go through a ``CallRunner`` (``nbllm._call``).
- ``batch``: ``Batch`` — many prompts on the same runner, bounded concurrency, nothing finished lost.
- ``results``: ``Results`` — the awaited batch: a list with ``to_dataframe()`` and ``summary()``.
"""

from .batch import Batch
from .llm import LLM
from .results import BatchSummary, Results

__all__ = ["LLM", "Batch", "BatchSummary", "Results"]
