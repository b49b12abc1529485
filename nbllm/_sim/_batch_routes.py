"""OpenAI Files and Batches routes: ``/v1/files`` and ``/v1/batches``, as the official SDK calls them.

Example (against a running simulator)::

    f = client.files.create(file=open("in.jsonl", "rb"), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    client.batches.retrieve(b.id).status      # validating -> in_progress -> finalizing -> completed
    client.files.content(b.output_file_id)    # JSONL lines {id, custom_id, response, error}, shuffled

Successful lines go to the output file; lines that ran and failed (status_code 400/500 in
``response``) and lines that never ran (``error.code`` batch_expired / batch_cancelled) go
to the error file. Input problems (bad JSON lines, duplicate custom_id, more than 50 000
requests, several models) fail the batch after validating, listed in ``errors``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import BodyPartReader, web

from ._batch_http import BatchContext, json_reply, read_capped, render_lines
from ._batch_lines import line_error, openai_result, read_openai_file
from ._batch_store import StoredFile, new_id
from ._batch_wire import file_object, openai_batch_object, page
from ._batches import Batch, Line, Timing, deadline_for, new_batch, outcomes, view

__all__ = ["OpenAIBatchRoutes"]

_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
_ENDPOINT = "/v1/chat/completions"


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> web.Response:
    """Return an OpenAI error response."""
    kind = "invalid_request_error"
    return json_reply({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def _limit(request: web.Request, default: int, most: int) -> int | None:
    """Return the ``limit`` query parameter within 1..most, or None when it is not a valid number."""
    try:
        value = int(request.query.get("limit", default))
    except ValueError:
        return None
    return value if 1 <= value <= most else None


class OpenAIBatchRoutes:
    """Handlers for files and batches; every handler checks the key and only sees that key's objects."""

    max_file_bytes = 200 * 1024 * 1024
    """OpenAI's limit for a batch input file."""

    def __init__(self, ctx: BatchContext) -> None:
        self.ctx = ctx

    def register(self, app: web.Application) -> None:
        """Add the routes to ``app``."""
        app.router.add_post("/v1/files", self.upload)
        app.router.add_get("/v1/files", self.list_files)
        app.router.add_get("/v1/files/{file_id}", self.get_file)
        app.router.add_get("/v1/files/{file_id}/content", self.content)
        app.router.add_delete("/v1/files/{file_id}", self.delete_file)
        app.router.add_post("/v1/batches", self.create)
        app.router.add_get("/v1/batches", self.list_batches)
        app.router.add_get("/v1/batches/{batch_id}", self.retrieve)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self.cancel)

    async def upload(self, request: web.Request) -> web.Response:
        """``POST /v1/files``: multipart ``file`` and ``purpose``."""
        who = self.ctx.owner(request, anthropic=False)
        if isinstance(who, web.Response):
            return who
        if not request.content_type.startswith("multipart/"):
            return _error(400, "Uploads must be multipart/form-data with 'file' and 'purpose' fields.")
        fields: dict[str, str] = {}
        upload: tuple[str, bytes] | None = None
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                data = await read_capped(part.read_chunk, self.max_file_bytes)
                if data is None:
                    mb = self.max_file_bytes // (1024 * 1024)
                    return _error(400, f"File is too large: batch input files can be at most {mb} MB.", "file")
                upload = (part.filename or "file", data)
            elif part.name:
                fields[part.name] = await part.text()
        if upload is None:
            return _error(400, "Missing required parameter: 'file'.", "file")
        purpose = fields.get("purpose")
        if purpose not in _PURPOSES:
            return _error(400, f"Invalid value for 'purpose': {purpose!r}.", "purpose")
        record = StoredFile(new_id("file-"), who[0], upload[0], purpose, time.time(), upload[1])
        self.ctx.store.add_file(record)
        return json_reply(file_object(record.id, len(upload[1]), record.created_wall, record.filename, purpose))

    async def _file(self, request: web.Request) -> StoredFile | web.Response:
        """Return the caller's file named in the path, its bytes built if it is a batch result; or an error."""
        who = self.ctx.owner(request, anthropic=False)
        if isinstance(who, web.Response):
            return who
        file_id = request.match_info["file_id"]
        record = self.ctx.store.file(who[0], file_id)
        if record is None:
            return _error(404, f"No such File object: {file_id}", "id")
        if record.data is None and record.batch_id is not None:
            batch = self.ctx.store.batch(who[0], record.batch_id, "openai")
            if batch is not None:
                await self._build_results(batch)
        return record

    async def get_file(self, request: web.Request) -> web.Response:
        """``GET /v1/files/{id}``."""
        record = await self._file(request)
        if isinstance(record, web.Response):
            return record
        size = len(record.data or b"")
        return json_reply(file_object(record.id, size, record.created_wall, record.filename, record.purpose))

    async def content(self, request: web.Request) -> web.Response:
        """``GET /v1/files/{id}/content``: the raw bytes (JSONL for batch files)."""
        record = await self._file(request)
        if isinstance(record, web.Response):
            return record
        return web.Response(body=record.data or b"", content_type="application/octet-stream")

    async def list_files(self, request: web.Request) -> web.Response:
        """``GET /v1/files``: the caller's files, newest first."""
        who = self.ctx.owner(request, anthropic=False)
        if isinstance(who, web.Response):
            return who
        data = [
            file_object(f.id, len(f.data or b""), f.created_wall, f.filename, f.purpose)
            for f in self.ctx.store.files(who[0])
        ]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return json_reply({"object": "list", "data": data, "has_more": False, "first_id": first, "last_id": last})

    async def delete_file(self, request: web.Request) -> web.Response:
        """``DELETE /v1/files/{id}``."""
        who = self.ctx.owner(request, anthropic=False)
        if isinstance(who, web.Response):
            return who
        file_id = request.match_info["file_id"]
        if not self.ctx.store.delete_file(who[0], file_id):
            return _error(404, f"No such File object: {file_id}", "id")
        return json_reply({"id": file_id, "object": "file", "deleted": True})

    async def create(self, request: web.Request) -> web.Response:
        """``POST /v1/batches {input_file_id, endpoint, completion_window, metadata}``."""
        who = self.ctx.owner(request, anthropic=False)
        if isinstance(who, web.Response):
            return who
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return _error(400, f"We could not parse the JSON body of your request: {exc}")
        problem = _create_problem(body)
        if problem is not None:
            return problem
        record = self.ctx.store.file(who[0], body["input_file_id"])
        if record is None or record.data is None:
            return _error(404, f"No such File object: {body['input_file_id']}", "input_file_id")
        if record.purpose != "batch":
            return _error(400, "The input file must be uploaded with purpose 'batch'.", "input_file_id")
        batch = await self._new_batch(who[0], body, record.data)
        self.ctx.store.add_batch(batch, who[1])
        return json_reply(openai_batch_object(batch, view(batch, batch.created)))

    async def _new_batch(self, owner: str, body: dict[str, Any], data: bytes) -> Batch:
        """Validate the input file's lines and decide each line's fate; returns the new batch."""
        ctx, config = self.ctx, self.ctx.config
        entries, errors = read_openai_file(data, body["endpoint"])
        batch_id, now = new_id("batch_", 32), ctx.clock()
        lines: list[Line] = []
        if not errors:  # a batch that fails validation never runs its lines (nor claims ":once" faults)
            await render_lines(entries, lambda e: lines.append(
                Line(e[0], e[1], line_error("openai", e[1], config, batch_id, e[0], ctx.state.claim_once))
            ))
        timing = Timing.of(config.batch_seconds)
        models = [e[1].get("model") for e in entries[:1]]
        extra = {
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "metadata": body.get("metadata"),
            "model": models[0] if models and isinstance(models[0], str) else None,
            "output_file_id": new_id("file-"),
            "error_file_id": new_id("file-"),
        }
        deadline = deadline_for(
            now, timing, config.batch_expire_after, config.faults.batch_expire_rate, config.seed, batch_id
        )
        return new_batch(
            batch_id, "openai", owner, lines, created=now, wall=time.time(), timing=timing,
            deadline=deadline, errors=errors, extra=extra, seed=config.seed,
        )

    def _object(self, batch: Batch) -> dict[str, Any]:
        """Return the batch object now, registering its result files once it has ended."""
        seen = view(batch, self.ctx.clock())
        if seen.ended and seen.status != "failed":
            self.ctx.store.publish_results(batch)
        return openai_batch_object(batch, seen)

    async def retrieve(self, request: web.Request) -> web.Response:
        """``GET /v1/batches/{id}``."""
        batch = self._batch(request)
        return batch if isinstance(batch, web.Response) else json_reply(self._object(batch))

    def _batch(self, request: web.Request) -> Batch | web.Response:
        """Return the caller's batch named in the path, or an error response."""
        who = self.ctx.owner(request, anthropic=False)
        if isinstance(who, web.Response):
            return who
        batch_id = request.match_info["batch_id"]
        batch = self.ctx.store.batch(who[0], batch_id, "openai")
        return batch if batch is not None else _error(404, f"No batch found with id '{batch_id}'.", "batch_id")

    async def list_batches(self, request: web.Request) -> web.Response:
        """``GET /v1/batches?after=&limit=``: newest first, with ``has_more``, ``first_id`` and ``last_id``."""
        who = self.ctx.owner(request, anthropic=False)
        if isinstance(who, web.Response):
            return who
        limit = _limit(request, 20, 100)
        if limit is None:
            return _error(400, "Invalid 'limit': must be an integer between 1 and 100.", "limit")
        chunk, more = page(self.ctx.store.batches(who[0], "openai"), lambda b: b.id, limit, request.query.get("after"))
        data = [self._object(batch) for batch in chunk]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return json_reply({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": more})

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/batches/{id}/cancel``: cancelling, then cancelled; finished lines keep their results."""
        batch = self._batch(request)
        if isinstance(batch, web.Response):
            return batch
        now = self.ctx.clock()
        status = view(batch, now).status
        if status in ("validating", "in_progress"):
            self.ctx.store.cancel(batch, now)
        elif status not in ("cancelling", "cancelled"):
            return _error(409, f"Cannot cancel a batch with status '{status}'.")
        return json_reply(self._object(batch))

    async def _build_results(self, batch: Batch) -> None:
        """Answer every finished line and write the output and error files (once per batch)."""
        async with self.ctx.lock(batch.id):
            output = self.ctx.store.file(batch.owner, batch.extra["output_file_id"])
            errors = self.ctx.store.file(batch.owner, batch.extra["error_file_id"])
            if output is None or errors is None or output.data is not None:
                return
            kept: tuple[list[bytes], list[bytes]] = ([], [])
            config, claim = self.ctx.config, self.ctx.state.claim_once

            def render(item: tuple[Line, str]) -> None:
                to_errors, obj = openai_result(batch, item[0], item[1], config, claim)
                kept[to_errors].append(json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n")

            await render_lines(outcomes(batch), render)
            output.data, errors.data = b"".join(kept[0]), b"".join(kept[1])


def _create_problem(body: Any) -> web.Response | None:
    """Return the 400 a batch create body deserves, or None when it is well-formed."""
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            return _error(400, f"Missing required parameter: '{name}'.", name)
    if body["completion_window"] != "24h":
        return _error(400, "Invalid value for 'completion_window': only '24h' is supported.", "completion_window")
    if body["endpoint"] != _ENDPOINT:
        return _error(400, f"The simulator runs batches for '{_ENDPOINT}' only.", "endpoint")
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(_metadata_pair(k, v) for k, v in metadata.items())
    ):
        return _error(400, "'metadata' must hold at most 16 string pairs (keys 64, values 512 characters).", "metadata")
    return None


def _metadata_pair(key: object, value: object) -> bool:
    """Tell whether one metadata entry fits OpenAI's limits: string key of 64, string value of 512 characters."""
    return isinstance(key, str) and isinstance(value, str) and len(key) <= 64 and len(value) <= 512
