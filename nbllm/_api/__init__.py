"""What users call: ``LLM`` (single calls and batches), ``Batch``, and how a call finds its keys."""

from .batch import Batch
from .llm import LLM

__all__ = ["LLM", "Batch"]
