"""``CallRunner``: one call, end to end — cache lookup → key lease → request → stream → store.

Every way nbllm makes a call goes through one: ``LLM``'s methods, batches, ``%%llm`` cells and the
prompt panel. It reads an ``LLMSettings`` on every call and resolves where calls go once, on first use.

    runner = CallRunner(LLMSettings("gpt-4o-mini"))
    response = await runner.ainvoke("Hello")                          # caller side, with callbacks
    response = await runner.astream_into("Tell a story", print)       # text to a sink as it arrives
    call = runner.prepare("Hello", stream=False)                      # engine side, as batches do:
    response = await runner.answer(call, cache=True)                  #   run on nbllm's engine loop

Two sides, one implementation. ``execute``/``answer`` run on the engine loop (``nbllm._engine``): they
own the cache lookup, the request and the store write. The ``a…`` methods run on the caller's loop:
they hand the work to the engine and fire the callbacks (``on_llm_start``, ``on_llm_new_token``,
``on_llm_end``, ``on_llm_error``) where the caller is, so a ``print`` in a callback lands in its cell.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from .. import _engine
from .._callbacks import dispatch, wants_tokens
from .._client import AttemptWatch, CallSpec, call_response, run_call
from .._keys import KeyPool
from .._store import RequestFingerprints, Store
from .._structured import as_schema
from .._types import LLMResult, MessagesInput, Response, check_text
from .prepared import CallPreparer, PreparedCall
from .route import Route, resolve_route, resolve_store
from .settings import LLMSettings, check_parameters
from .structured import answer_structured

__all__ = ["CallPreparer", "CallRunner", "PreparedCall"]


class CallRunner:
    """Runs the calls of one ``LLMSettings`` (see module docstring)."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self._route: Route | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<CallRunner {self.settings.model or '(default model)'}>"

    # ---- where calls go -----------------------------------------------------------------------------
    @property
    def route(self) -> Route:
        """Target, model and endpoint label, resolved once on first use (thread-safe)."""
        route = self._route
        if route is not None:  # set once, never changed: read without the lock (several times per call)
            return route
        with self._lock:
            if self._route is None:
                self._route = resolve_route(self.settings)
            return self._route

    @property
    def model(self) -> str:
        return self.route.model

    @property
    def pool(self) -> KeyPool:
        return self.route.target.pool

    @property
    def store(self) -> Store | None:
        setting = self.settings.store_setting
        store = resolve_store(setting)
        if isinstance(setting, (str, Path)):
            self.settings.store_setting = store  # open a path once; later calls and siblings share it
        return store

    def for_model(self, model: str) -> CallRunner:
        """A runner with the same settings (keys, server, store, callbacks, limits) for another model."""
        return CallRunner(self.settings.settings_for(model))

    # ---- preparing a call (pure) --------------------------------------------------------------------
    def preparer(self, *, stream: bool, overrides: dict[str, Any] | None = None,
                 fingerprint: bool | None = None) -> CallPreparer:
        """What ``prepare`` does, for many prompts with the same ``overrides``: ``preparer(prompt, sample)``
        is the ``PreparedCall``. The settings are read and checked once, and the fingerprints' shared part
        encoded once (a batch prepares all its prompts with one; docs/ARCHITECTURE.md, "Client CPU")."""
        overrides = dict(overrides or {})
        schema = overrides.pop("schema", self.settings.schema)
        max_reasks = overrides.pop("max_reasks", self.settings.max_reasks)
        system, spec = self._spec(stream, overrides)
        if fingerprint is None:
            fingerprint = self.store is not None
        return CallPreparer(spec, system, None if schema is None else as_schema(schema), max_reasks,
                            self._fingerprints(spec) if fingerprint else None)

    def prepare(self, prompt: MessagesInput, *, stream: bool, overrides: dict[str, Any] | None = None,
                sample: int = 0, fingerprint: bool | None = None) -> PreparedCall:
        """The spec for ``prompt`` with ``overrides`` of the settings, and its store fingerprint.

        ``sample`` tells apart identical prompts of one batch. ``fingerprint``: whether to compute one
        (default: if answers are stored); a batch decides once for all its prompts. ``schema`` and
        ``max_reasks`` (overrides or settings) make it a structured call; they are not part of the
        fingerprint, so the store's raw answers serve any schema (docs/ARCHITECTURE.md, "Structured answers").
        Anything that could not be sent raises a ``ConfigurationError`` here, before a key is leased.
        """
        return self.preparer(stream=stream, overrides=overrides, fingerprint=fingerprint)(prompt, sample)

    def check_overrides(self, overrides: dict[str, Any]) -> None:
        """Raise a ConfigurationError now if no call with these overrides could be sent (a batch checks
        once, before its first item, instead of failing every item alike)."""
        overrides = dict(overrides)
        schema = overrides.pop("schema", None)
        overrides.pop("max_reasks", None)
        if schema is not None:
            as_schema(schema)
        system, _ = self._spec(True, overrides)
        if system is not None:
            check_text(system, "The system prompt")

    def _spec(self, stream: bool, overrides: dict[str, Any]) -> tuple[str | None, CallSpec]:
        """(system prompt, spec without messages) from the settings and ``overrides``, checked: settings
        may have changed since the LLM was made (``llm.max_tokens = ...``)."""
        settings, overrides = self.settings, dict(overrides)
        stop = overrides.pop("stop", settings.stop)
        system = overrides.pop("system", settings.system)
        spec = CallSpec(
            model=self.model,
            messages=[],
            temperature=overrides.pop("temperature", settings.temperature),
            max_tokens=overrides.pop("max_tokens", settings.max_tokens),
            stop=[stop] if isinstance(stop, str) else stop,
            stream=stream,
            extra={**settings.model_kwargs, **overrides},
        )
        check_parameters(spec.temperature, spec.max_tokens, spec.stop, spec.extra)
        return system, spec

    def _fingerprints(self, spec: CallSpec) -> RequestFingerprints:
        """The fingerprints of calls with ``spec``'s settings (messages and sample vary)."""
        route = self.route
        params = {"temperature": spec.temperature, "max_tokens": spec.max_tokens, "stop": spec.stop, **spec.extra}
        return RequestFingerprints(route.target.wire_format, route.endpoint, spec.model, params)

    # ---- engine side --------------------------------------------------------------------------------
    async def execute(self, call: PreparedCall, *, cache: bool, batch: str | None = None,
                      index: int | None = None, deliver_text: bool = True,
                      watch: AttemptWatch | None = None) -> AsyncIterator[str | Response]:
        """On the engine loop: answer from the cache, or send the call and record its outcome.

        Yields text deltas as they arrive (unless ``deliver_text=False``), then the ``Response``. A
        structured call yields only its validated Response: an answer that may still be re-asked is not
        shown as it streams (docs/ARCHITECTURE.md, "Structured answers"). ``watch``: one attempt of a
        hedged item (docs/ARCHITECTURE.md, "Hedging"); only the outcome that settles the item is recorded.
        """
        if call.schema is not None:
            yield await answer_structured(self, call, cache=cache, batch=batch, index=index)
            return
        store = self.store if call.fingerprint is not None else None
        if store is not None and cache:
            hit = store.lookup(call.fingerprint)  # type: ignore[arg-type]
            if hit is not None:
                yield hit
                return
        try:
            async for item in run_call(call.spec, self.route.target, deliver_text, watch):
                if isinstance(item, Response) and store is not None:
                    store.record(call.fingerprint, call.stored_request(), item, batch=batch, index=index)  # type: ignore[arg-type]
                yield item
        except Exception as error:
            settles = watch is None or watch.may_fail()  # a hedged item's other attempt may still answer
            if store is not None and settles:
                store.record(call.fingerprint, call.stored_request(), error=error, batch=batch, index=index)  # type: ignore[arg-type]
            raise

    async def answer(self, call: PreparedCall, *, cache: bool, batch: str | None = None,
                     index: int | None = None, watch: AttemptWatch | None = None) -> Response:
        """On the engine loop: ``execute`` without text deltas, to its ``Response``.

        The same steps as ``execute`` without its generator: every answer of a batch comes through here,
        and each generator layer costs CPU per call (docs/ARCHITECTURE.md, "Client CPU"). ``watch``: as
        for ``execute``.
        """
        if call.schema is not None:
            return await _last(self.execute(call, cache=cache, batch=batch, index=index, deliver_text=False,
                                            watch=watch))
        store = self.store if call.fingerprint is not None else None
        if store is not None and cache:
            hit = store.lookup(call.fingerprint)  # type: ignore[arg-type]
            if hit is not None:
                return hit
        try:
            response = await call_response(call.spec, self.route.target, watch)
        except Exception as error:
            if store is not None and (watch is None or watch.may_fail()):
                store.record(call.fingerprint, call.stored_request(), error=error, batch=batch, index=index)  # type: ignore[arg-type]
            raise
        if store is not None:
            store.record(call.fingerprint, call.stored_request(), response, batch=batch, index=index)  # type: ignore[arg-type]
        return response

    # ---- caller side --------------------------------------------------------------------------------
    async def events(self, prompt: MessagesInput, *, stream: bool, cache: bool | None = None,
                     overrides: dict[str, Any] | None = None) -> AsyncIterator[str | Response]:
        """Run a call on the engine; fire callbacks here; yield its text chunks, then its Response."""
        call = self.prepare(prompt, stream=stream, overrides=overrides)
        callbacks = self.settings.callbacks
        await dispatch(callbacks, "on_llm_start", {"name": "nbllm", "model": call.spec.model},
                       [_prompt_text(call.spec)], run_id=uuid.uuid4())
        try:
            async for item in _engine.aiter_on_engine(self.execute(call, cache=bool(cache))):
                if isinstance(item, str):
                    await dispatch(callbacks, "on_llm_new_token", item)
                else:
                    await dispatch(callbacks, "on_llm_end", LLMResult.from_responses([item], call.spec.model))
                yield item
        except Exception as error:
            await dispatch(callbacks, "on_llm_error", error)
            raise

    async def ainvoke(self, prompt: MessagesInput, *, cache: bool | None = None,
                      overrides: dict[str, Any] | None = None) -> Response:
        """Ask once and return the finished Response; streams when the settings or callbacks want tokens."""
        settings = self.settings
        stream = settings.streaming or wants_tokens(settings.callbacks)
        if not settings.callbacks:  # fast path: one crossing to the engine, no per-token hops
            return await _engine.run(self.answer(self.prepare(prompt, stream=stream, overrides=overrides),
                                                 cache=bool(cache)))
        return await _last(self.events(prompt, stream=stream, cache=cache, overrides=overrides))

    async def astream_into(self, prompt: MessagesInput, sink: Callable[[str], Any], *,
                           cache: bool | None = None, overrides: dict[str, Any] | None = None) -> Response:
        """Stream the answer's text into ``sink`` as it arrives and return the Response.

        An answer from the store arrives whole, without chunks: ``sink`` then gets its text once, so a
        view fed by ``sink`` always ends up showing the whole answer.
        """
        streamed = False
        response = None
        async for item in self.events(prompt, stream=True, cache=cache, overrides=overrides):
            if isinstance(item, str):
                streamed = True
                sink(item)
            else:
                response = item
        assert response is not None  # events() ends with the Response or raises
        if not streamed and response.text:
            sink(response.text)
        return response


async def _last(items: AsyncIterator[str | Response]) -> Response:
    """The final item of a call's items: its Response."""
    last = None
    async for item in items:
        last = item
    assert isinstance(last, Response)
    return last


def _prompt_text(spec: CallSpec) -> str:
    return "\n".join(str(m.get("content", "")) for m in spec.messages)
