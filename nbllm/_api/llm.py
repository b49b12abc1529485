"""``LLM``: the one object users hold. Single calls here; batches in ``_batch.py``.

    llm = nbllm.LLM("openai:gpt-4o-mini", temperature=0)
    print(llm.invoke("Hello, how are you?").text)
    async for chunk in llm.astream("Write me a 1 verse song about sparkling water."):
        print(chunk, end="|", flush=True)

Every call runs on the engine loop (``_engine``); the async methods await it from any loop and the sync
methods block on it. Callbacks run in the caller's thread.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import _engine
from .batch import BatchMixin
from .._callbacks import dispatch, wants_tokens
from .._client import Target, run_call
from .route import default_model, default_route, shared_store
from .._exceptions import ConfigurationError
from .._client import Timeouts
from .._keys import ApiKey, KeySpec
from .._keys import KeyPool
from .._client import CallSpec, resolve_model
from .._client import RetryPolicy
from .._store import Store, request_fingerprint
from .._types import Generation, LLMResult, MessagesInput, Response, StreamEvent, normalize_messages

__all__ = ["LLM"]

class LLM(BatchMixin):
    """A model plus settings plus the keys to call it with.

    ``model``: ``"openai:gpt-4o-mini"``, ``"anthropic:claude-haiku-4-5"``, ``"ollama:llama3"``… or a bare
    name (with ``base_url`` for any OpenAI-compatible server). Keys: ``api_key=``, ``keys=[...]``,
    ``pool=KeyPool(...)``, or (default) the environment / ``.env`` — and the embedded simulator if none.
    ``store``: a path or Store to record every answer to, ``False`` for none (default: the shared store).
    ``cache``: read answers back from the store (default: only in batches, see ``amap``).
    Extra keyword arguments are sent to the provider as they are (``top_p=…``, ``seed=…``…).
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
        concurrency: int = 32,
        timeouts: Timeouts | None = None,
        max_retries: int | None = None,
        store: Store | str | Path | bool | None = None,
        cache: bool | None = None,
        progress: str = "auto",
        auth_header: str = "bearer",
        **model_kwargs: Any,
    ) -> None:
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
        self._store_setting = store
        self._explicit_pool = pool or _pool_from(api_key, keys, provider, base_url, auth_header)
        self._resolved: tuple[Target, str, str] | None = None
        self._lock = threading.Lock()
        self.last_results: list[Any] | None = None

    def __repr__(self) -> str:
        model = self.model or "(default model)"
        return f"LLM({model!r}, keys={'custom' if self._explicit_pool else 'from environment'})"

    # ---- resolution -------------------------------------------------------------------------------
    def _target(self) -> tuple[Target, str, str]:
        """(target, model name, endpoint label for cache fingerprints), resolved once on first use."""
        with self._lock:
            if self._resolved is None:
                self._resolved = self._resolve()
            return self._resolved

    def _resolve(self) -> tuple[Target, str, str]:
        pool, route = self._explicit_pool, None
        if pool is None:
            route = default_route(simulate=False)
            route = None if route is not None and route.simulated else route  # None: no key anywhere
        model_string = self.model or (default_model(route) if pool is None else "gpt-4o-mini")
        wire_format, model, prefix_url = resolve_model(model_string, self.provider)
        explicit_url = self.base_url or prefix_url
        if pool is None and route is None:
            if explicit_url:  # no key anywhere, but a server was named: a local one that needs no key
                pool = KeyPool([ApiKey("", alias="no-key")])
            else:
                route = default_route()
        if route is not None:
            pool = route.pool
        base_url = explicit_url or (route.base_url_for(wire_format) if route else None)
        # the cache must not confuse simulator answers with a provider's, nor one server's with another's
        endpoint = "simulator" if route and route.simulated else (explicit_url or "default")
        assert pool is not None
        target = Target(pool, wire_format, base_url, self.auth_header, self.retry, self.timeouts)
        return target, model, endpoint

    @property
    def pool(self) -> KeyPool:
        return self._target()[0].pool

    @property
    def store(self) -> Store | None:
        setting = self._store_setting
        if setting is False:
            return None
        if setting is None or setting is True:
            return shared_store()
        if isinstance(setting, Store):
            return setting
        self._store_setting = Store(setting)
        return self._store_setting

    def _spec(self, prompt: MessagesInput, stream: bool, overrides: dict[str, Any]) -> CallSpec:
        _, model, _ = self._target()
        stop = overrides.pop("stop", self.stop)
        spec = CallSpec(
            model=model,
            messages=normalize_messages(prompt, overrides.pop("system", self.system)),
            temperature=overrides.pop("temperature", self.temperature),
            max_tokens=overrides.pop("max_tokens", self.max_tokens),
            stop=[stop] if isinstance(stop, str) else stop,
            stream=stream,
            extra={**self.model_kwargs, **overrides},
        )
        return spec

    def _fingerprint(self, spec: CallSpec, sample: int = 0) -> str:
        target, _, endpoint = self._target()
        params = {"temperature": spec.temperature, "max_tokens": spec.max_tokens, "stop": spec.stop, **spec.extra}
        return request_fingerprint(
            {"provider": target.wire_format, "base_url": endpoint, "model": spec.model,
             "messages": spec.messages, "params": params, "sample": sample}
        )

    # ---- the one engine-side implementation of a single call --------------------------------------
    async def _execute(self, spec: CallSpec, cache: bool, batch: str | None = None, index: int | None = None,
                       fingerprint: str | None = None, deliver_text: bool = True) -> AsyncIterator[str | Response]:
        """On the engine loop: answer from the cache, or call and record the outcome in the store."""
        target, _, _ = self._target()
        store = self.store
        if store is not None and fingerprint is None:
            fingerprint = self._fingerprint(spec)
        if store is not None and cache:
            hit = store.lookup(fingerprint)
            if hit is not None:
                yield hit
                return
        request = {"model": spec.model, "messages": spec.messages, "params": spec.extra | {"temperature": spec.temperature, "max_tokens": spec.max_tokens}}
        try:
            async for item in run_call(spec, target, deliver_text):
                if isinstance(item, Response) and store is not None:
                    store.record(fingerprint, request, item, batch=batch, index=index)
                yield item
        except Exception as error:
            if store is not None:
                store.record(fingerprint, request, error=error, batch=batch, index=index)
            raise

    async def _events(self, prompt: MessagesInput, stream: bool, cache: bool | None, overrides: dict[str, Any]) -> AsyncIterator[str | Response]:
        """Caller side: run ``_execute`` on the engine, fire callbacks here, yield chunks then the Response."""
        spec = self._spec(prompt, stream, overrides)
        callbacks = self.callbacks
        await dispatch(callbacks, "on_llm_start", {"name": "nbllm", "model": spec.model}, [_prompt_text(spec)], run_id=uuid.uuid4())
        try:
            async for item in _engine.aiter_on_engine(self._execute(spec, bool(cache))):
                if isinstance(item, str):
                    await dispatch(callbacks, "on_llm_new_token", item)
                else:
                    await dispatch(callbacks, "on_llm_end", _as_result([item], spec.model))
                yield item
        except Exception as error:
            await dispatch(callbacks, "on_llm_error", error)
            raise

    # ---- public single-call API -------------------------------------------------------------------
    async def ainvoke(self, prompt: MessagesInput, *, cache: bool | None = None, **overrides: Any) -> Response:
        """Ask once and return the finished Response (text, usage, model, finish_reason, latency)."""
        stream = self.streaming or wants_tokens(self.callbacks)
        if not self.callbacks:  # fast path: one crossing to the engine, no per-token hops
            spec = self._spec(prompt, stream, overrides)
            return await _engine.run(_last(self._execute(spec, bool(cache), deliver_text=False)))
        response = None
        async for item in self._events(prompt, stream, cache, overrides):
            response = item
        assert isinstance(response, Response)
        return response

    def invoke(self, prompt: MessagesInput, *, cache: bool | None = None, **overrides: Any) -> Response:
        """Blocking ``ainvoke``; works in scripts, threads and notebook cells alike."""
        return _engine.run_sync(self.ainvoke(prompt, cache=cache, **overrides))

    __call__ = invoke

    async def astream(self, prompt: MessagesInput, *, cache: bool | None = None, **overrides: Any) -> AsyncIterator[str]:
        """Yield the answer's text chunks as they arrive."""
        async for item in self._events(prompt, True, cache, overrides):
            if isinstance(item, str):
                yield item
            elif item.cached:
                yield item.text

    def stream(self, prompt: MessagesInput, *, cache: bool | None = None, **overrides: Any) -> Iterator[str]:
        """Blocking ``astream``: a plain iterator of text chunks."""
        return _engine.iter_on_engine(self.astream(prompt, cache=cache, **overrides))

    async def astream_events(self, prompt: MessagesInput, version: str = "v1", **overrides: Any) -> AsyncIterator[StreamEvent]:
        """``on_llm_start``, one ``on_llm_stream`` per chunk, then ``on_llm_end`` (or ``on_llm_error``)."""
        run_id, name = str(uuid.uuid4()), "nbllm.LLM"
        yield StreamEvent("on_llm_start", name, {"input": prompt}, run_id)
        try:
            async for item in self._events(prompt, True, overrides.pop("cache", None), overrides):
                if isinstance(item, str):
                    yield StreamEvent("on_llm_stream", name, {"chunk": item}, run_id)
                else:
                    yield StreamEvent("on_llm_end", name, {"output": item}, run_id)
        except Exception as error:
            yield StreamEvent("on_llm_error", name, {"error": error}, run_id)
            raise

    def panel(self, **kwargs: Any) -> Any:
        """A PromptPanel widget that sends its prompts through this LLM (its keys, limits and store)."""
        from .._jupyter import PromptPanel

        return PromptPanel(llm=self, **kwargs)

    async def agenerate(self, prompts: Sequence[MessagesInput], **overrides: Any) -> LLMResult:
        """LangChain's ``agenerate``: all prompts concurrently, one LLMResult. Raises the first error.

        With callbacks, each prompt streams through them (``on_llm_new_token`` sees every token), as
        LangChain does with ``streaming=True``; otherwise the prompts run as one batch.
        """
        cache = overrides.pop("cache", False)
        if self.callbacks:
            import asyncio

            responses = await asyncio.gather(*(self.ainvoke(p, cache=cache, **dict(overrides)) for p in prompts))
            return _as_result(responses, self._target()[1])
        results = await self.amap(list(prompts), cache=cache, progress="none", **overrides)
        for result in results:
            if not result.ok:
                raise result.error
        return _as_result(results, self._target()[1])

    def generate(self, prompts: Sequence[MessagesInput], **overrides: Any) -> LLMResult:
        """Blocking ``agenerate``."""
        return _engine.run_sync(self.agenerate(prompts, **overrides))



def _pool_from(api_key: str | None, keys: Sequence[KeySpec] | None, provider: str | None,
               base_url: str | None, auth_header: str) -> KeyPool | None:
    if api_key is not None:
        return KeyPool([ApiKey(api_key, alias="key-1", base_url=base_url, auth_header=auth_header)])
    if keys is not None:
        return KeyPool(keys)
    return None


async def _last(agen: AsyncIterator[str | Response]) -> Response:
    last = None
    async for item in agen:
        last = item
    assert isinstance(last, Response)
    return last


def _prompt_text(spec: CallSpec) -> str:
    return "\n".join(str(m.get("content", "")) for m in spec.messages)


def _as_result(responses: Sequence[Response], model: str) -> LLMResult:
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for response in responses:
        for name, value in response.usage.as_dict().items():
            usage[name] += value
    generations = [
        [Generation(r.text, {"finish_reason": r.finish_reason, "model": r.model, "latency": r.latency,
                             "key_alias": r.key_alias, "usage": r.usage.as_dict()})]
        for r in responses
    ]
    return LLMResult(generations=generations, llm_output={"token_usage": usage, "model_name": model})

