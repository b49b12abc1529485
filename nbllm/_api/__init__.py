"""What users call, and the one path every call takes.

- ``llm``: ``LLM`` — settings plus single calls, streams and batches.
- ``batch``: ``Batch`` — many prompts, bounded concurrency, nothing finished ever lost.
- ``runner``: ``CallRunner`` — one call end to end: cache lookup → key lease → request → stream → store.
  ``LLM``, ``Batch``, the ``%%llm`` cell runner and the ``PromptPanel`` all call through it.
- ``settings``: ``LLMSettings`` — what an ``LLM`` is configured with.
- ``route``: where calls go — keys given, keys from the environment, or the embedded simulator; the
  shared store.
"""

from .batch import Batch
from .llm import LLM
from .route import reset_defaults
from .runner import CallRunner, PreparedCall
from .settings import LLMSettings

__all__ = ["LLM", "Batch", "CallRunner", "LLMSettings", "PreparedCall", "reset_defaults"]
