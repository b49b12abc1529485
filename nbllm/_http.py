"""The HTTP client of the engine loop: httpx's API (through httpx2) on a swappable transport.

Transport chosen by measurement (DESIGN decision 3, benchmarks/bench_overhead.py): httpx2 with
``httpx_aiohttp``'s AiohttpTransport costs far less CPU per request than httpx2's own pool. Set
``NBLLM_TRANSPORT=httpx2`` to use httpx2's native transport instead (one line to swap).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx2

from ._engine import get_engine

__all__ = ["Timeouts", "get_http_client"]


@dataclass(frozen=True)
class Timeouts:
    """``connect``: to open a connection; ``idle``: the longest silence between two chunks of an answer;
    ``total``: the whole call, retries excluded (None: no limit)."""

    connect: float = 10.0
    idle: float = 120.0
    total: float | None = 600.0

    def for_httpx(self) -> httpx2.Timeout:
        # pool=None: our own limits gate concurrency; a pool timeout would only fail healthy requests
        return httpx2.Timeout(connect=self.connect, read=self.idle, write=30.0, pool=None)


_MAX_CONNECTIONS = 1000
_client: httpx2.AsyncClient | None = None


def _make_transport() -> httpx2.AsyncBaseTransport:
    limits = httpx2.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=200, keepalive_expiry=30)
    if os.environ.get("NBLLM_TRANSPORT", "aiohttp") == "httpx2":
        return httpx2.AsyncHTTPTransport(limits=limits)
    from httpx_aiohttp.httpx2 import AiohttpTransport

    return AiohttpTransport(limits=limits)


def get_http_client() -> httpx2.AsyncClient:
    """The engine loop's shared client (create it there: aiohttp sessions are loop-bound)."""
    global _client
    if _client is None:
        _client = httpx2.AsyncClient(transport=_make_transport(), timeout=Timeouts().for_httpx())
        get_engine().on_shutdown(_close_client)
    return _client


async def _close_client() -> None:
    global _client
    client, _client = _client, None
    if client is not None:
        await client.aclose()
