"""Structured answers on the engine loop: send, judge, and re-ask until the answer fits its schema.

    call = runner.prepare(prompt, stream=False, overrides={"schema": Result})
    response = await answer_structured(runner, call, cache=True)     # CallRunner.execute does this
    response.parsed, response.attempts

One prompt gets at most ``1 + max_reasks`` answers judged, plus one retry with a larger ``max_tokens``
after an answer cut off at a token limit the call sent (``_larger_max_tokens``). Every request is an ordinary call (``CallRunner.answer``):
429s, 5xx and broken connections are retried there, on their own budget, and never count as re-asks;
a bad answer is never a network retry. After the budget the call raises ``StructuredOutputError``
(a batch keeps it as a ``Failure``) with the raw text and every attempt.

Native constrained output first: OpenAI-compatible servers get ``response_format`` (json_schema, strict
when the schema allows), Anthropic a forced tool. A server that answers 400 to ``response_format`` gets
the schema as instructions in the prompt instead, and tolerant extraction reads the answer. That is
remembered per endpoint for the process; while the first request to an endpoint finds out, the others
wait for it, so the 400 is paid once.

The store keeps raw answers: every answer is recorded under the fingerprint of the original prompt
(the schema is not part of it), with the conversation actually sent, and the newest is what a lookup
finds. A rerun — with the same schema, or a changed one — judges that answer offline, and only an
answer that no longer fits is re-asked (docs/ARCHITECTURE.md, "Structured answers").
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

from .._client import CallSpec, OutputFormat
from .._exceptions import BadRequestError, StructuredOutputError
from .._structured import Verdict, judge, reask_messages, with_instructions
from .._types import Attempt, Response, Usage
from .prepared import PreparedCall

if TYPE_CHECKING:
    from .._store import Store
    from .route import Route

__all__ = ["CallSender", "EndpointCapabilities", "accept_answer", "answer_structured", "capabilities"]

#: max_tokens for the one retry after a cut-off Anthropic answer when the call set none (nbllm then sent 1024)
LENGTH_RETRY_MAX_TOKENS = 4096


class EndpointCapabilities:
    """Which endpoints honour ``response_format`` (learned per process), and the probe finding out."""

    def __init__(self) -> None:
        self.native: dict[tuple[Any, ...], bool] = {}
        self._probes: dict[tuple[Any, ...], asyncio.Event] = {}

    async def known(self, key: tuple[Any, ...]) -> bool | None:
        """True/False when known; None when unknown, and the caller is now the probe (``settle`` it)."""
        while key not in self.native:
            probe = self._probes.get(key)
            if probe is None:
                self._probes[key] = asyncio.Event()
                return None
            await probe.wait()  # a probe that failed otherwise leaves it unknown: the next caller probes
        return self.native[key]

    def settle(self, key: tuple[Any, ...], native: bool | None) -> None:
        if native is not None:
            self.native[key] = native
        probe = self._probes.pop(key, None)
        if probe is not None:
            probe.set()


capabilities = EndpointCapabilities()


class CallSender(Protocol):
    """What the loop needs of a ``CallRunner`` (which calls it: a Protocol, so no import circle)."""

    @property
    def route(self) -> Route: ...

    @property
    def store(self) -> Store | None: ...

    async def answer(self, call: PreparedCall, *, cache: bool, batch: str | None = None,
                     index: int | None = None) -> Response: ...


async def answer_structured(runner: CallSender, call: PreparedCall, *, cache: bool, batch: str | None = None,
                            index: int | None = None) -> Response:
    """The validated answer to ``call`` (see module docstring); raises ``StructuredOutputError``."""
    schema = call.schema
    assert schema is not None
    started = time.perf_counter()
    judged: list[Attempt] = []
    spec, reasks, length_retried = call.spec, 0, False
    response = call.previous or _lookup(runner, call, cache)
    while True:
        if response is None:
            response = await _send(runner, call, spec, batch, index)
        verdict = judge(response.text, response.finish_reason, schema)
        judged.append(_attempt(response, verdict))
        if verdict.ok:
            return _accepted(response, verdict, judged, started)
        larger = _larger_max_tokens(spec, runner.route.target.wire_format) if verdict.truncated else None
        if larger is not None and not length_retried:
            length_retried = True  # the same conversation once more, with room to finish
            spec = dataclasses.replace(spec, max_tokens=larger)
        elif reasks < call.max_reasks:
            reasks += 1
            spec = dataclasses.replace(spec, messages=reask_messages(spec.messages, response.text, verdict.errors))
        else:
            raise _failure(schema.name, judged, reasks)
        response = None


def _larger_max_tokens(spec: CallSpec, wire_format: str) -> int | None:
    """Room for a cut-off answer to finish: twice the limit sent; None when no limit of ours cut it.

    Without ``max_tokens`` an OpenAI-compatible server stops at the model's own maximum, which no
    request can raise: such an answer is re-asked instead. Anthropic requires the field, and nbllm
    sent its default of 1024.
    """
    if spec.max_tokens:
        return 2 * spec.max_tokens
    return LENGTH_RETRY_MAX_TOKENS if wire_format == "anthropic" else None


def accept_answer(call: PreparedCall, hit: Response) -> Response | None:
    """An answer judged offline — one from the store, or from a provider batch (which cannot re-ask):
    the accepted Response, parsed, or None when it must be re-asked online."""
    assert call.schema is not None
    verdict = judge(hit.text, hit.finish_reason, call.schema)
    return _accepted(hit, verdict, [_attempt(hit, verdict)], None) if verdict.ok else None


def _lookup(runner: CallSender, call: PreparedCall, cache: bool) -> Response | None:
    store = runner.store if cache and call.fingerprint is not None else None
    return store.lookup(call.fingerprint) if store is not None else None  # type: ignore[arg-type]


def _attempt(response: Response, verdict: Verdict) -> Attempt:
    return Attempt(response.text, list(verdict.errors), response.usage, response.finish_reason,
                   response.latency, response.key_alias, response.cached)


def _accepted(response: Response, verdict: Verdict, judged: list[Attempt], started: float | None) -> Response:
    """The final Response: the accepted answer, parsed, carrying every attempt and their summed cost."""
    sent = [attempt for attempt in judged if not attempt.cached]
    if not sent:  # answered from the store alone
        return dataclasses.replace(response, parsed=verdict.parsed, attempts=judged)
    usage = Usage()
    for attempt in sent:
        usage += attempt.usage
    latency = time.perf_counter() - started if started is not None else response.latency
    return dataclasses.replace(response, parsed=verdict.parsed, attempts=judged, usage=usage, latency=latency,
                               cached=False)


def _failure(name: str, judged: list[Attempt], reasks: int) -> StructuredOutputError:
    last = judged[-1]
    shown = "; ".join(last.errors[:3])
    return StructuredOutputError(
        f"No answer fit the schema {name} after {len(judged)} answers ({reasks} re-asks): {shown}. "
        "Every raw answer and its errors are in .attempts; raise max_reasks, loosen the schema or its "
        "validators, or make the prompt clearer.",
        text=last.text, attempts=judged, errors=last.errors,
    )


async def _send(runner: CallSender, call: PreparedCall, spec: CallSpec, batch: str | None,
                index: int | None) -> Response:
    """One request, natively constrained where the endpoint allows it (finding that out once)."""
    route = runner.route
    if route.target.wire_format != "openai":  # a forced tool is part of Anthropic's API itself
        return await _ask(runner, call, spec, True, batch, index)
    key = _endpoint_key(route)
    known = await capabilities.known(key)
    if known is not None:
        return await _ask(runner, call, spec, known, batch, index)
    try:
        response = await _ask(runner, call, spec, True, batch, index)
    except BadRequestError as error:
        if not _refuses_response_format(error):
            capabilities.settle(key, None)
            raise
        capabilities.settle(key, False)
        print(f"nbllm: {route.endpoint} does not accept response_format; for the rest of this process, "
              "schemas go into the prompt as instructions and answers are parsed tolerantly.", file=sys.stderr)
        return await _ask(runner, call, spec, False, batch, index)
    except BaseException:
        capabilities.settle(key, None)
        raise
    capabilities.settle(key, True)
    return response


async def _ask(runner: CallSender, call: PreparedCall, spec: CallSpec, native: bool, batch: str | None,
               index: int | None) -> Response:
    schema = call.schema
    assert schema is not None
    output = OutputFormat(schema.name, schema.json_schema, schema.strict_schema, native)
    messages = spec.messages if native else with_instructions(spec.messages, schema)
    # a plain call (no schema): sent and recorded under the original prompt's fingerprint
    request = PreparedCall(dataclasses.replace(spec, messages=messages, output=output), call.fingerprint)
    return await runner.answer(request, cache=False, batch=batch, index=index)


def _endpoint_key(route: Route) -> tuple[Any, ...]:
    """Every server a call of this route may reach: the route's URL and those of its keys."""
    target = route.target
    key_urls = tuple(sorted({key.base_url or "" for key in target.pool.keys}))
    return (target.wire_format, route.endpoint, target.base_url, key_urls)


def _refuses_response_format(error: BadRequestError) -> bool:
    """A 400 that names ``response_format`` as unsupported (not one that finds our schema invalid)."""
    text = f"{error.provider_message} {error}".lower()
    return error.status == 400 and "response_format" in text and "invalid schema" not in text
