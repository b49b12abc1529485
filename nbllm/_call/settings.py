"""The settings of an ``LLM``: which model, which keys, and how to call it.

``LLM`` is these settings plus the methods that use them; ``CallRunner`` reads them on every call, so a
setting changed on an ``LLM`` (``llm.temperature = 0``) applies to its next call. A ``PromptPanel``
made without an ``LLM`` holds a bare ``LLMSettings``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._client import RetryPolicy, Timeouts
from .._exceptions import ConfigurationError
from .._keys import ApiKey, KeyPool, KeySpec
from .._structured import as_schema

if TYPE_CHECKING:
    from .._store import Store

__all__ = ["DEFAULT_CONCURRENCY", "LLMSettings"]

DEFAULT_CONCURRENCY = 32


class LLMSettings:
    """A model plus settings plus the keys to call it with (see ``nbllm.LLM`` for every argument).

    ``explicit_pool`` is the pool made from ``api_key=``/``keys=``/``pool=`` (None: keys from the
    environment, or the simulator); ``store_setting`` is ``store=`` as given.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        keys: Sequence[KeySpec] | None = None,
        pool: KeyPool | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        streaming: bool = False,
        callbacks: Sequence[Any] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeouts: Timeouts | None = None,
        max_retries: int | None = None,
        store: Store | str | Path | bool | None = None,
        cache: bool | None = None,
        progress: str = "auto",
        auth_header: str = "bearer",
        schema: Any = None,
        max_reasks: int = 2,
        **model_kwargs: Any,
    ) -> None:
        if max_reasks < 0:
            raise ConfigurationError(f"max_reasks must be 0 or more, got {max_reasks}.")
        if schema is not None:
            as_schema(schema)  # a wrong schema= fails here, not on the first call
        if sum(x is not None for x in (api_key, keys, pool)) > 1:
            raise ConfigurationError("Give keys one way: api_key=, keys=[...] or pool=KeyPool(...).")
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}.")
        self.model, self.provider, self.base_url = model, provider, base_url
        self.system, self.temperature, self.max_tokens = system, temperature, max_tokens
        self.stop = [stop] if isinstance(stop, str) else (list(stop) if stop else None)
        self.streaming, self.callbacks = streaming, list(callbacks or [])
        self.concurrency, self.cache, self.progress = concurrency, cache, progress
        self.timeouts = timeouts or Timeouts()
        self.retry = RetryPolicy() if max_retries is None else RetryPolicy(max_retries=max_retries)
        self.auth_header, self.model_kwargs = auth_header, model_kwargs
        self.store_setting = store
        # schema=: every answer parsed and validated, re-asked up to max_reasks times (nbllm._call.structured)
        self.schema, self.max_reasks = schema, max_reasks
        self.explicit_pool = pool or _pool_from(api_key, keys, base_url, auth_header)

    def settings_for(self, model: str) -> LLMSettings:
        """The same settings (same keys, server, store, callbacks, limits) for another model.

        Always a plain ``LLMSettings``, also when called on an ``LLM``: what the copy shares with the
        original is its settings, not its state (last results, resolved route).
        """
        sibling = object.__new__(LLMSettings)
        sibling.__dict__.update({name: getattr(self, name) for name in _FIELDS})
        sibling.model = model
        return sibling


# every attribute __init__ sets: what a copy for another model carries over
_FIELDS = ("model", "provider", "base_url", "system", "temperature", "max_tokens", "stop", "streaming",
           "callbacks", "concurrency", "cache", "progress", "timeouts", "retry", "auth_header",
           "model_kwargs", "store_setting", "explicit_pool", "schema", "max_reasks")


def _pool_from(api_key: str | None, keys: Sequence[KeySpec] | None, base_url: str | None,
               auth_header: str) -> KeyPool | None:
    if api_key is not None:
        return KeyPool([ApiKey(api_key, alias="key-1", base_url=base_url, auth_header=auth_header)])
    if keys is not None:
        return KeyPool(keys)
    return None
