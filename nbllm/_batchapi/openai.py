"""OpenAI's Batch API: upload a JSONL file, create a batch on it, poll it, read its output and error files.

```python
api = OpenAIBatches(conn)
batch_id, file_id, state = await api.create(jsonl_bytes, requests=5_000, tag={"nbllm_job": "…", "nbllm_part": "0"})
state = await api.retrieve(batch_id, requests=5_000)      # validating → in_progress → finalizing → completed
async for line in api.results(batch_id, state): ...      # output file, then error file; any order
```

``POST /v1/files`` (multipart, ``purpose=batch``), ``POST /v1/batches`` (``completion_window="24h"``,
``metadata`` = the tag), ``GET /v1/batches/{id}``, ``GET /v1/files/{id}/content``,
``POST /v1/batches/{id}/cancel``, ``GET /v1/batches`` (to find a batch by its tag).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from .._client import UploadFile
from .http import Connection
from .lines import OPENAI_BATCH_URL
from .status import BatchState, parse_created, read_status

__all__ = ["OpenAIBatches"]

# how far back (seconds) and how many pages of the batch list to look through for a lost create answer
_LOOKBACK = 600.0
_MAX_PAGES = 20


class OpenAIBatches:
    """The OpenAI Batch API with one key (see module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def create(self, body: bytes, *, requests: int, tag: Mapping[str, str]) -> tuple[str, str | None, BatchState]:
        """Upload ``body`` (JSONL) and create a batch on it, tagged; the create itself is sent once."""
        conn = self.conn
        name = f"nbllm-{tag.get('nbllm_job', 'job')}-{tag.get('nbllm_part', '0')}.jsonl"
        uploaded = await conn.request_json(
            "POST", conn.url("/files"), fields={"purpose": "batch"},
            upload=UploadFile("file", name, body, "application/jsonl"),
        )
        created = await conn.request_json("POST", conn.url("/batches"), {
            "input_file_id": uploaded["id"], "endpoint": OPENAI_BATCH_URL, "completion_window": "24h",
            "metadata": dict(tag),
        }, retry=False)
        return created["id"], uploaded["id"], read_status("openai", created, requests)

    async def retrieve(self, batch_id: str, *, requests: int) -> BatchState:
        return read_status("openai", await self.conn.request_json("GET", self.conn.url(f"/batches/{batch_id}")), requests)

    async def cancel(self, batch_id: str, *, requests: int) -> BatchState:
        answer = await self.conn.request_json("POST", self.conn.url(f"/batches/{batch_id}/cancel"))
        return read_status("openai", answer, requests)

    async def results(self, batch_id: str, state: BatchState) -> AsyncIterator[dict[str, Any]]:
        """Every line of the output file, then every line of the error file."""
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                async for line in self.conn.json_lines(self.conn.url(f"/files/{file_id}/content")):
                    yield line

    async def find(self, tag: Mapping[str, str], *, since: float, requests: int,
                   known: Callable[[str], bool]) -> str | None:
        """The id of the batch carrying ``tag`` in its metadata, created after ``since`` (Unix seconds)."""
        after: str | None = None
        for _ in range(_MAX_PAGES):
            query = "?limit=100" + (f"&after={after}" if after else "")
            page = await self.conn.request_json("GET", self.conn.url("/batches" + query))
            for batch in page.get("data") or ():
                metadata = batch.get("metadata") or {}
                if all(metadata.get(k) == v for k, v in tag.items()):
                    return batch["id"]
                created = parse_created(batch.get("created_at"))
                if created is not None and created < since - _LOOKBACK:
                    return None  # newest first: everything further is older than the job
            if not page.get("has_more") or not page.get("last_id"):
                return None
            after = page["last_id"]
        return None
