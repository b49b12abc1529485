"""Anthropic Message Batches routes: ``/v1/messages/batches``, as the official SDK calls them.

Example (against a running simulator)::

    b = client.messages.batches.create(requests=[{"custom_id": "a", "params": {...}}])
    client.messages.batches.retrieve(b.id).processing_status   # in_progress -> ended
    for item in client.messages.batches.results(b.id): ...     # {custom_id, result}, shuffled

As Anthropic documents it, ``request_counts`` other than ``processing`` stay 0 until the
batch has ended; ``results_url`` is a full URL of this server once it has.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from ._badrequest import BadRequest
from ._batch_http import BatchContext, json_reply, read_capped, render_lines
from ._batch_lines import anthropic_result, line_error, read_anthropic_requests
from ._batch_store import new_id
from ._batch_wire import anthropic_batch_object, page
from ._batches import Batch, Line, Timing, deadline_for, new_batch, outcomes, view

__all__ = ["AnthropicBatchRoutes"]

_BASE = "/v1/messages/batches"


def _error(status: int, kind: str, message: str) -> web.Response:
    """Return an Anthropic error response."""
    return json_reply({"type": "error", "error": {"type": kind, "message": message}}, status)


class AnthropicBatchRoutes:
    """Handlers for Message Batches; every handler checks the key and only sees that key's batches."""

    max_body_bytes = 256 * 1024 * 1024
    """Anthropic's limit for a batch create request."""

    def __init__(self, ctx: BatchContext) -> None:
        self.ctx = ctx
        self._results: dict[str, bytes] = {}

    def register(self, app: web.Application) -> None:
        """Add the routes to ``app``."""
        app.router.add_post(_BASE, self.create)
        app.router.add_get(_BASE, self.list_batches)
        app.router.add_get(_BASE + "/{batch_id}", self.retrieve)
        app.router.add_post(_BASE + "/{batch_id}/cancel", self.cancel)
        app.router.add_delete(_BASE + "/{batch_id}", self.delete)
        app.router.add_get(_BASE + "/{batch_id}/results", self.results)

    def _who(self, request: web.Request) -> tuple[str, str] | web.Response:
        """Check the key and the ``anthropic-version`` header."""
        who = self.ctx.owner(request, anthropic=True)
        if not isinstance(who, web.Response) and "anthropic-version" not in request.headers:
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        return who

    def _batch(self, request: web.Request) -> Batch | web.Response:
        """Return the caller's batch named in the path, or an error response."""
        who = self._who(request)
        if isinstance(who, web.Response):
            return who
        batch_id = request.match_info["batch_id"]
        batch = self.ctx.store.batch(who[0], batch_id, "anthropic")
        if batch is None:
            return _error(404, "not_found_error", f"Message Batch {batch_id} not found.")
        return batch

    def _object(self, request: web.Request, batch: Batch) -> dict[str, Any]:
        """Return the ``message_batch`` object as it is now."""
        base = f"{request.scheme}://{request.host}"
        return anthropic_batch_object(batch, view(batch, self.ctx.clock()), base)

    async def create(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/batches {requests: [{custom_id, params}]}``."""
        who = self._who(request)
        if isinstance(who, web.Response):
            return who
        raw = await read_capped(request.content.read, self.max_body_bytes)
        if raw is None:
            return _error(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
        try:
            entries = read_anthropic_requests(json.loads(raw))
        except ValueError as exc:
            return _error(400, "invalid_request_error", f"The request body is not valid JSON: {exc}")
        except BadRequest as exc:
            return _error(400, "invalid_request_error", exc.message)
        ctx, config = self.ctx, self.ctx.config
        batch_id, now = new_id("msgbatch_"), ctx.clock()
        lines: list[Line] = []
        await render_lines(entries, lambda e: lines.append(
            Line(e[0], e[1], line_error("anthropic", e[1], config, batch_id, e[0], ctx.state.claim_once))
        ))
        timing = Timing.of(config.batch_seconds, validates=False)
        deadline = deadline_for(
            now, timing, config.batch_expire_after, config.faults.batch_expire_rate, config.seed, batch_id
        )
        batch = new_batch(
            batch_id, "anthropic", who[0], lines, created=now, wall=time.time(), timing=timing,
            deadline=deadline, errors=[], extra={}, seed=config.seed,
        )
        ctx.store.add_batch(batch, who[1])
        return json_reply(self._object(request, batch))

    async def retrieve(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches/{id}``."""
        batch = self._batch(request)
        return batch if isinstance(batch, web.Response) else json_reply(self._object(request, batch))

    async def list_batches(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches?before_id=&after_id=&limit=``: newest first."""
        who = self._who(request)
        if isinstance(who, web.Response):
            return who
        try:
            limit = int(request.query.get("limit", 20))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return _error(400, "invalid_request_error", "limit: Input should be between 1 and 1000")
        items = self.ctx.store.batches(who[0], "anthropic")
        query = request.query
        chunk, more = page(items, lambda b: b.id, limit, query.get("after_id"), query.get("before_id"))
        data = [self._object(request, batch) for batch in chunk]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return json_reply({"data": data, "has_more": more, "first_id": first, "last_id": last})

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST …/{id}/cancel``: canceling, then ended; finished requests keep their results."""
        batch = self._batch(request)
        if isinstance(batch, web.Response):
            return batch
        now = self.ctx.clock()
        seen = view(batch, now)
        if seen.ended:
            return _error(400, "invalid_request_error", f"Message Batch {batch.id} has already ended.")
        self.ctx.store.cancel(batch, now)
        return json_reply(self._object(request, batch))

    async def delete(self, request: web.Request) -> web.Response:
        """``DELETE …/{id}``: only once processing has ended."""
        batch = self._batch(request)
        if isinstance(batch, web.Response):
            return batch
        if not view(batch, self.ctx.clock()).ended:
            message = f"Message Batch {batch.id} is still processing; cancel it and wait for it to end first."
            return _error(400, "invalid_request_error", message)
        self.ctx.store.delete_batch(batch.id)
        self._results.pop(batch.id, None)
        return json_reply({"id": batch.id, "type": "message_batch_deleted"})

    async def results(self, request: web.Request) -> web.Response:
        """``GET …/{id}/results``: JSONL ``{custom_id, result}`` lines, in the (shuffled) order they finished."""
        batch = self._batch(request)
        if isinstance(batch, web.Response):
            return batch
        if not view(batch, self.ctx.clock()).ended:
            return _error(400, "invalid_request_error", f"Message Batch {batch.id} has not ended yet; no results.")
        async with self.ctx.lock(batch.id):
            if batch.id not in self._results:
                parts: list[bytes] = []
                config, claim = self.ctx.config, self.ctx.state.claim_once
                await render_lines(outcomes(batch), lambda item: parts.append(
                    json.dumps(anthropic_result(batch, item[0], item[1], config, claim), ensure_ascii=False)
                    .encode("utf-8") + b"\n"
                ))
                self._results[batch.id] = b"".join(parts)
        return web.Response(body=self._results[batch.id], content_type="application/x-jsonl")
