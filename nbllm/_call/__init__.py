"""One call, end to end: cache lookup → key lease → request → stream → store.

- ``runner``: ``CallRunner`` — the one path every call takes; ``LLM``, ``Batch``, the ``%%llm`` cell
  runner and the ``PromptPanel`` all call through it.
- ``settings``: ``LLMSettings`` — model, keys and call parameters, as an ``LLM`` is configured.
- ``structured``: ``schema=`` calls — send, judge, re-ask until the answer fits (``prepared``: a call
  ready to send, with its schema).
- ``route``: where calls go — the keys given, else the keys in the environment, else the embedded
  simulator; and the store answers are recorded in.

The HTTP exchange itself (lease → request → decode → retries) is ``nbllm._client``.
"""

from .prepared import PreparedCall
from .route import Route, default_route, reset_defaults, resolve_route, shared_store
from .runner import CallRunner
from .settings import DEFAULT_CONCURRENCY, LLMSettings, check_concurrency
from .structured import accept_answer, capabilities

__all__ = [
    "DEFAULT_CONCURRENCY",
    "CallRunner",
    "LLMSettings",
    "PreparedCall",
    "Route",
    "accept_answer",
    "capabilities",
    "check_concurrency",
    "default_route",
    "reset_defaults",
    "resolve_route",
    "shared_store",
]
