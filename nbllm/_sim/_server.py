"""The aiohttp shell: routes, auth and limit checks, pacing and fault injection around the pure modules."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from aiohttp import web

from ._batch_http import BatchContext
from ._batch_routes import OpenAIBatchRoutes
from ._batch_store import BatchStore
from ._config import SimConfig
from ._errors import auth_error, bad_request, injected_error, quota_error, rate_limit_error, version_missing
from ._faults import BEFORE_ANSWER, parse_directive, roll_fault
from ._hashing import stable_hash, unit
from ._msgbatch_routes import AnthropicBatchRoutes
from ._pacing import NO_DRAW, LatencyDraw, Pacing, draw_latency, needs_draw, nonstream_delay, plan_pacing, schedule
from ._requests import BadRequest, Call, anthropic_key, bearer_key, parse_anthropic, parse_openai
from ._respond import Reply, respond
from ._state import SimState, Ticket
from ._tokens import count_prompt_tokens, last_user_text
from ._wire import (
    anthropic_message,
    anthropic_stream,
    anthropic_stream_error,
    malformed_event,
    models_list,
    openai_completion,
    openai_stream,
    openai_stream_error,
)

__all__ = ["SimServer"]


@dataclass
class _Ctx:
    """One request on its way through the handler; ``outcome`` and ``sent`` feed the statistics."""

    request: web.Request
    anthropic: bool
    number: int
    rid: str
    headers: dict[str, str]
    ticket: Ticket
    call: Call
    prompt_tokens: int
    outcome: str = "ok"
    sent: int = 0


class SimServer:
    """Holds the simulator's state and serves both APIs from one `aiohttp.web.Application`."""

    def __init__(
        self, config: SimConfig, state: SimState | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config
        self.state = state or SimState(config)
        self.batches = BatchStore()
        self._clock = clock
        self._tag = secrets.token_hex(6)  # makes ids unique across simulator instances
        self._sem = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
        self._attempts: dict[int, int] = {}  # prompt hash -> answers started, for `draw_latency`
        batch_ctx = BatchContext(config, self.state, self.batches, self.clock)
        self._batch_routes = (OpenAIBatchRoutes(batch_ctx), AnthropicBatchRoutes(batch_ctx))

    def clock(self) -> float:
        """Return the seconds batch timelines run on: the given clock, or the event loop's."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def make_app(self) -> web.Application:
        """Return the application with the chat, model-list, files and batch routes of both APIs."""
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.openai_chat)
        app.router.add_post("/v1/messages", self.anthropic_messages)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/sim/stats", self.sim_stats)
        for routes in self._batch_routes:
            routes.register(app)
        return app

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``."""
        return await self._chat(request, anthropic=False)

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages``."""
        return await self._chat(request, anthropic=True)

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: a few names; any model name is accepted in requests anyway."""
        return web.Response(body=models_list(int(time.time())), content_type="application/json")

    async def health(self, request: web.Request) -> web.Response:
        """``GET /health``: liveness for scripts that wait for a standalone simulator."""
        return web.Response(text="ok")

    async def sim_stats(self, request: web.Request) -> web.Response:
        """``GET /sim/stats``: `Simulator.stats()` and `Simulator.batch_stats()` for a simulator in another
        process (keys appear by alias or masked, never in full)."""
        return web.json_response({"keys": self.state.stats(), "batches": self.batches.stats()})

    async def _chat(self, request: web.Request, anthropic: bool) -> web.StreamResponse:
        """Authorise, validate, rate-limit, then answer; every admitted request is checked out."""
        now = time.monotonic()
        number = self.state.next_counter()
        rid = f"{self._tag}{number:010x}"
        headers = {("request-id" if anthropic else "x-request-id"): f"req_{rid}"}
        key = anthropic_key(request.headers) if anthropic else bearer_key(request.headers)
        ticket, refusal = self.state.authorize(key, now)
        if ticket is None:
            return auth_error(anthropic, refusal or "unknown", key, headers)
        try:
            if anthropic and "anthropic-version" not in request.headers:
                raise version_missing()
            call = await _parse(request, anthropic, self.config.response_format)
        except BadRequest as exc:
            self.state.count(ticket, "bad_requests")
            return bad_request(anthropic, exc, headers)
        prompt_tokens = count_prompt_tokens(call.messages, call.system)
        admission = self.state.admit(ticket, prompt_tokens + call.token_budget, now)
        headers.update(self.state.limit_headers(ticket, anthropic, now, time.time()))
        if admission == "quota":
            return quota_error(anthropic, headers)
        if not isinstance(admission, str) and not admission.ok:
            return rate_limit_error(anthropic, admission, ticket, call.model, headers)
        ctx = _Ctx(request, anthropic, number, rid, headers, ticket, call, prompt_tokens)
        try:
            if self._sem is None:
                return await self._answer(ctx)
            async with self._sem:
                return await self._answer(ctx)
        finally:
            self.state.check_out(ticket, ctx.outcome, prompt_tokens, ctx.sent, time.monotonic())

    def _fault(self, raw_prompt: str, ctx: _Ctx) -> str | None:
        """Pick the fault for this request: a prompt directive first, then the seeded dice."""
        directive = parse_directive(raw_prompt)
        if directive is not None and (not directive.once or self.state.claim_once(raw_prompt)):
            return directive.fault
        faults = self.config.faults
        if not faults.active():
            return None
        return roll_fault(
            faults, anthropic=ctx.anthropic, stream=ctx.call.stream, seed=self.config.seed, counter=ctx.number
        )

    async def _answer(self, ctx: _Ctx) -> web.StreamResponse:
        """Build the deterministic answer and send it, as a stream or one body, faults included."""
        cfg, call = self.config, ctx.call
        raw = last_user_text(call.messages)
        fault = self._fault(raw, ctx)
        if fault in BEFORE_ANSWER:
            ctx.outcome = "rate_limited" if fault == "429" else "server_errors"
            return injected_error(ctx.anthropic, fault, ctx.headers)
        reply = respond(call, cfg, self.state.claim_once)
        u = unit(cfg.seed, ctx.number, 99) if cfg.ttft_jitter else 0.5
        draw = self._latency_draw(raw) if needs_draw(cfg) else NO_DRAW
        pacing = plan_pacing(cfg, ctx.ticket.profile.latency_scale, u, reply.done.tokens, fault == "slow", draw)
        if call.stream:
            return await self._stream(ctx, reply, pacing, fault)
        return await self._complete(ctx, reply, pacing, fault)

    def _latency_draw(self, prompt: str) -> LatencyDraw:
        """Count one more answer to ``prompt`` and return its latency draw (the handlers share one loop: no lock)."""
        key = stable_hash(prompt)
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        return draw_latency(self.config, key, attempt)

    async def _complete(self, ctx: _Ctx, reply: Reply, pacing: Pacing, fault: str | None) -> web.StreamResponse:
        """Send a non-stream answer after the whole generation time."""
        done = reply.done
        delay = nonstream_delay(self.config, pacing, done.tokens, ctx.ticket.profile.latency_scale)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault == "disconnect":
            ctx.outcome = "disconnects"
            _drop_connection(ctx.request)
            return web.Response(status=500)  # never reaches the client
        if fault == "stream_error":
            ctx.outcome = "server_errors"
            return injected_error(ctx.anthropic, "500", ctx.headers)
        created = int(time.time())
        if ctx.anthropic:
            body = anthropic_message(f"msg_{ctx.rid}", ctx.call.model, done, ctx.prompt_tokens, reply.tool)
        else:
            body = openai_completion(f"chatcmpl-{ctx.rid}", created, ctx.call.model, done, ctx.prompt_tokens)
        if fault == "malformed":
            body = body[: len(body) // 2]  # truncated JSON, to test client robustness
        ctx.sent = done.tokens
        return web.Response(body=body, headers=ctx.headers, content_type="application/json")

    def _events(self, ctx: _Ctx, reply: Reply) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """Return the provider's stream events as (head, pieces, tail)."""
        done = reply.done
        if ctx.anthropic:
            return anthropic_stream(f"msg_{ctx.rid}", ctx.call.model, done, ctx.prompt_tokens, reply.tool)
        created = int(time.time())
        return openai_stream(
            f"chatcmpl-{ctx.rid}", created, ctx.call.model, done, ctx.prompt_tokens, ctx.call.include_usage
        )

    async def _stream(self, ctx: _Ctx, reply: Reply, pacing: Pacing, fault: str | None) -> web.StreamResponse:
        """Stream the answer as SSE, applying a mid-stream fault if one was picked."""
        head, body, tail = self._events(ctx, reply)
        cut = max(1, len(body) // 2) if body else 0  # where mid-stream faults strike
        real = len(body)
        if fault == "malformed":
            body = [*body[:cut], malformed_event(ctx.anthropic), *body[cut:]]
        elif fault in ("disconnect", "stream_error"):
            body, real = body[:cut], cut
            tail = [] if fault == "disconnect" else [_stream_error(ctx.anthropic)]
            ctx.outcome = "disconnects" if fault == "disconnect" else "server_errors"
        resp = web.StreamResponse(headers=ctx.headers)
        resp.content_type, resp.charset = "text/event-stream", "utf-8"
        resp.headers["Cache-Control"] = "no-cache"
        if fault == "disconnect":
            resp.force_close()
        try:
            async for written in _paced_writes(ctx.request, resp, head, body, tail, pacing):
                ctx.sent = min(written, real)
            if fault == "disconnect":
                _drop_connection(ctx.request)  # no terminator: the client sees a cut stream
            else:
                await resp.write_eof()
        except ConnectionError:
            # The client went away (closed the stream, timed out); not our fault to count as one.
            ctx.outcome = ctx.outcome if ctx.outcome != "ok" else "client_aborts"
        return resp


async def _paced_writes(
    request: web.Request, resp: web.StreamResponse, head: list[bytes], body: list[bytes], tail: list[bytes], pacing: Pacing
) -> AsyncIterator[int]:
    """Write head, body pieces on schedule and tail; yield how many body pieces went out after each write.

    With instant pacing everything is one prebuilt write: no sleep, no per-piece await.
    """
    if pacing.ttft > 0:
        await asyncio.sleep(pacing.ttft)
    await resp.prepare(request)
    if pacing.instant or len(body) <= 1 and pacing.interval <= 0:
        await resp.write(b"".join([*head, *body, *tail]))
        yield len(body)
        return
    loop = asyncio.get_running_loop()
    start, prev = loop.time(), 0
    groups = schedule(len(body), pacing) or [(0.0, 0)]
    for offset, end in groups:
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        parts = body[prev:end]
        if prev == 0:
            parts = [*head, *parts]
        if end == len(body):
            parts = [*parts, *tail]
        await resp.write(b"".join(parts))
        prev = end
        yield end


def _stream_error(anthropic: bool) -> bytes:
    """Return the provider's mid-stream error event."""
    if anthropic:
        return anthropic_stream_error("overloaded_error", "Overloaded")
    return openai_stream_error("The server had an error while processing your request. Sorry about that!")


def _drop_connection(request: web.Request) -> None:
    """Close the socket under the response so nothing more (no chunk terminator) is sent."""
    transport = request.transport
    if transport is not None:
        transport.close()


async def _parse(request: web.Request, anthropic: bool, response_format: str) -> Call:
    """Read and validate the JSON body of a chat request (``response_format``: `SimConfig.response_format`)."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"We could not parse the JSON body of your request: {exc}") from None
    return parse_anthropic(body) if anthropic else parse_openai(body, response_format)
