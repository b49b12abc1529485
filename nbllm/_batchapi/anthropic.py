"""Anthropic's Message Batches API: create a batch of requests, poll it, stream its results.

```python
api = AnthropicBatches(conn)
batch_id, _, state = await api.create(body_bytes, requests=5_000, tag={...})
state = await api.retrieve(batch_id, requests=5_000)     # in_progress → (canceling →) ended
async for line in api.results(batch_id, state): ...     # {custom_id, result: succeeded | errored | …}
```

``POST /v1/messages/batches`` (``{requests: [{custom_id, params}]}``), ``GET /v1/messages/batches/{id}``,
the ``results_url`` it gives once ended (JSONL, streamed), ``POST …/{id}/cancel``, ``GET /v1/messages/batches``.
Message batches carry no metadata, so a batch whose create answer was lost is recognised by its size
and creation time (see ``find``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from .http import Connection
from .status import BatchState, parse_created, read_status

__all__ = ["AnthropicBatches"]

_BASE = "/v1/messages/batches"
_CLOCK_SKEW = 120.0  # seconds a server's clock may differ from ours when matching creation times
_MAX_PAGES = 10


class AnthropicBatches:
    """The Anthropic Message Batches API with one key (see module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def create(self, body: bytes, *, requests: int, tag: Mapping[str, str]) -> tuple[str, str | None, BatchState]:
        """Create a batch from ``body`` (the create JSON, already encoded); sent once."""
        created = await self.conn.request_json("POST", self.conn.url(_BASE), body, retry=False)
        return created["id"], None, read_status("anthropic", created, requests)

    async def retrieve(self, batch_id: str, *, requests: int) -> BatchState:
        answer = await self.conn.request_json("GET", self.conn.url(f"{_BASE}/{batch_id}"))
        return read_status("anthropic", answer, requests)

    async def cancel(self, batch_id: str, *, requests: int) -> BatchState:
        answer = await self.conn.request_json("POST", self.conn.url(f"{_BASE}/{batch_id}/cancel"))
        return read_status("anthropic", answer, requests)

    async def results(self, batch_id: str, state: BatchState) -> AsyncIterator[dict[str, Any]]:
        """The results file, streamed; the key goes only to this server (else the documented path)."""
        url = state.results_url
        if not url or not self.conn.same_origin(url):
            url = self.conn.url(f"{_BASE}/{batch_id}/results")
        async for line in self.conn.json_lines(url):
            yield line

    async def find(self, tag: Mapping[str, str], *, since: float, requests: int,
                   known: Callable[[str], bool]) -> str | None:
        """The one unknown batch of ``requests`` requests created since ``since``, if exactly one exists."""
        found: list[str] = []
        after: str | None = None
        for _ in range(_MAX_PAGES):
            query = "?limit=100" + (f"&after_id={after}" if after else "")
            page = await self.conn.request_json("GET", self.conn.url(_BASE + query))
            for batch in page.get("data") or ():
                created = parse_created(batch.get("created_at"))
                if created is not None and created < since - _CLOCK_SKEW:
                    return found[0] if len(found) == 1 else None
                total = sum(int(v or 0) for v in (batch.get("request_counts") or {}).values())
                if total == requests and not known(batch["id"]):
                    found.append(batch["id"])
            if not page.get("has_more") or not page.get("last_id"):
                break
            after = page["last_id"]
        return found[0] if len(found) == 1 else None
