"""One call, end to end: cache lookup → key lease → request → stream → store.

- ``runner``: ``CallRunner`` — the one path every call takes; ``LLM``, ``Batch``, the ``%%llm`` cell
  runner and the ``PromptPanel`` all call through it.
- ``settings``: ``LLMSettings`` — model, keys and call parameters, as an ``LLM`` is configured.
- ``route``: where calls go — the keys given, else the keys in the environment, else the embedded
  simulator; and the store answers are recorded in.

The HTTP exchange itself (lease → request → decode → retries) is ``nbllm._client``.
"""

from .route import Route, default_route, reset_defaults, resolve_route, shared_store
from .runner import CallRunner, PreparedCall
from .settings import DEFAULT_CONCURRENCY, LLMSettings, check_concurrency

__all__ = [
    "DEFAULT_CONCURRENCY",
    "CallRunner",
    "LLMSettings",
    "PreparedCall",
    "Route",
    "check_concurrency",
    "default_route",
    "reset_defaults",
    "resolve_route",
    "shared_store",
]
