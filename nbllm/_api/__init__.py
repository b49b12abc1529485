"""What users call: ``LLM`` (settings plus single calls, streams and batches) and ``Batch``.

- ``llm``: ``LLM`` — its single calls go through a ``CallRunner`` (``nbllm._call``).
- ``batch``: ``Batch`` — many prompts on the same runner, bounded concurrency, nothing finished lost.
"""

from .batch import Batch
from .llm import LLM

__all__ = ["LLM", "Batch"]
