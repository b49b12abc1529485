"""What users call: ``LLM`` (settings plus single calls, streams and batches), ``Batch`` and ``Fill``.

- ``llm``: ``LLM`` — its single calls go through a ``CallRunner`` (``nbllm._call``).
- ``batch``: ``Batch`` — many prompts on the same runner, bounded concurrency, nothing finished lost,
  an optional spend guard (``budget``: ``SpendGuard``, ``OutputGuess``).
- ``fill``: ``Fill`` — one template over the rows of a table, the answers into a column.
- ``estimate``: ``Estimate`` — what a batch would cost and take, before sending.
"""

from .batch import Batch
from .budget import OutputGuess, SpendGuard
from .estimate import Estimate
from .fill import Fill, fill_prompts
from .llm import LLM

__all__ = ["LLM", "Batch", "Estimate", "Fill", "OutputGuess", "SpendGuard", "fill_prompts"]
