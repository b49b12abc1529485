"""The settings of an ``LLM``: which model, which keys, and how to call it.

``LLM`` is these settings plus the methods that use them; ``CallRunner`` reads them on every call, so a
setting changed on an ``LLM`` (``llm.temperature = 0``) applies to its next call. A ``PromptPanel``
made without an ``LLM`` holds a bare ``LLMSettings``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._client import RetryPolicy, Timeouts
from .._exceptions import ConfigurationError
from .._keys import ApiKey, KeyPool, KeySpec
from .._store import Store
from .._structured import as_schema
from .._types import check_json, check_text

__all__ = ["DEFAULT_CONCURRENCY", "LLMSettings", "check_concurrency", "check_parameters"]

# None: a batch keeps as many requests in flight as its keys' limits and latency call for (the key
# pool's admission target, ``nbllm._keys.admission``); a number caps that.
DEFAULT_CONCURRENCY: int | None = None


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
        concurrency: int | None = DEFAULT_CONCURRENCY,
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
        check_concurrency(concurrency)
        check_parameters(temperature, max_tokens, stop, model_kwargs)
        if system is not None:
            check_text(system, "The system prompt")
        _check_store(store)
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


def check_concurrency(concurrency: Any) -> None:
    """Concurrency is None (adaptive) or a whole number of requests at once, at least 1."""
    if concurrency is None:
        return
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError("concurrency must be a whole number of at least 1, or None for as many as the keys "
                                 f"allow, got {_shown(concurrency)}.")


def check_parameters(temperature: Any, max_tokens: Any, stop: Any, extra: Mapping[str, Any]) -> None:
    """Raise a ConfigurationError that names the parameter if a call could not be sent with these."""
    if temperature is not None and not _finite_number(temperature, minimum=0):
        raise ConfigurationError(f"temperature must be a number of at least 0 (e.g. 0.7) or None, got {_shown(temperature)}.")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0):
        raise ConfigurationError(f"max_tokens must be a whole number (e.g. 500) or None, got {_shown(max_tokens)}.")
    stops = [stop] if isinstance(stop, str) else stop
    if stops is not None and (not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) for s in stops)):
        raise ConfigurationError(f"stop must be a string or a list of strings, got {_shown(stop)}.")
    for i, sequence in enumerate(stops or ()):
        check_text(sequence, f"stop sequence {i}")
    for name, value in extra.items():
        check_json(value, f"The parameter {name}")


def _finite_number(value: Any, minimum: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= minimum


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_store(store: Any) -> None:
    if store is None or isinstance(store, (bool, str, os.PathLike, Store)):
        return
    raise ConfigurationError(
        f"store must be a path (str or Path), a Store, True (the shared store) or False (none), "
        f"got {type(store).__name__}."
    )


def _pool_from(api_key: str | None, keys: Sequence[KeySpec] | None, base_url: str | None,
               auth_header: str) -> KeyPool | None:
    if api_key is not None:
        return KeyPool([ApiKey(api_key, alias="key-1", base_url=base_url, auth_header=auth_header)])
    if keys is not None:
        return KeyPool(keys)
    return None
