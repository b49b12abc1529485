"""What the OpenAI and Anthropic batch routes share: the key check, capped body reads, JSON replies, result building.

Result files are built line by line on the event loop; every few hundred lines the
builder yields, so a 50 000-line batch does not stall streams being served meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from aiohttp import web

from ._batch_store import BatchStore
from ._config import SimConfig
from ._errors import auth_error
from ._requests import anthropic_key, bearer_key
from ._state import SimState

__all__ = ["BatchContext", "json_reply", "read_capped", "render_lines"]

T = TypeVar("T")
_YIELD_EVERY = 256


class BatchContext:
    """The server parts batch routes need: settings, keys, the clock, and one build lock per batch."""

    def __init__(self, config: SimConfig, state: SimState, store: BatchStore, clock: Callable[[], float]) -> None:
        self.config = config
        self.state = state
        self.store = store
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    def owner(self, request: web.Request, anthropic: bool) -> tuple[str, str] | web.Response:
        """Return (raw key, key name) of an accepted key, or the provider's 401 response."""
        key = anthropic_key(request.headers) if anthropic else bearer_key(request.headers)
        name, refusal = self.state.identify(key)
        if refusal is not None:
            return auth_error(anthropic, refusal, key, {})
        return key or "", name

    def lock(self, batch_id: str) -> asyncio.Lock:
        """Return the lock that keeps one batch's results from being built twice at once."""
        return self._locks.setdefault(batch_id, asyncio.Lock())


def json_reply(obj: Any, status: int = 200) -> web.Response:
    """Return a JSON response, non-ASCII kept readable."""
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return web.Response(status=status, body=body, content_type="application/json")


async def read_capped(read: Callable[[int], Awaitable[bytes]], limit: int) -> bytes | None:
    """Read a body with ``read(size)`` (``request.content.read``, ``part.read_chunk``) up to ``limit``
    bytes; None when it is larger."""
    data = bytearray()
    while True:
        chunk = await read(1 << 20)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            return None


async def render_lines(items: Iterable[T], render: Callable[[T], object]) -> None:
    """Call ``render`` on every item, yielding to the event loop every few hundred items."""
    for count, item in enumerate(items, start=1):
        render(item)
        if count % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
