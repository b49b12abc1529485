"""nbllm's own HTTP/1.1 client for the one request every answer makes: ``POST`` a JSON body, read the answer.

Why by hand (docs/ARCHITECTURE.md, "Transport chosen by measurement"): on the client-overhead benchmark a
request through aiohttp's ``ClientSession`` costs ~110 µs of CPU, through aiosonic about the same, through
httpx2 ~670 µs, while an ``asyncio.Protocol`` with the llhttp parser (``httptools``, the parser of Node.js
and uvicorn) costs ~45 µs; nbllm end to end (pool, progress, store) went from ~210 to ~110 µs per answer.
The hard part of HTTP — parsing what the server sends, chunked bodies included — stays a library's; what
is written here is the framing of one request, a keep-alive pool and the timeouts.

Scope, kept small on purpose: HTTP/1.1 ``POST`` to ``http://`` or ``https://`` (TLS from the standard
library, certificates verified against the system's store, ``SSL_CERT_FILE`` honoured), keep-alive
connections reused for 30 s, answers as they arrive (``aiter_bytes``) or whole (``aread``), gzip/deflate
decoded if a server compresses although asked not to. Never a redirect, cookie or proxy: ``http.py`` sends
through aiohttp whatever needs more (a proxy, credentials in the URL, ``GET``, multipart uploads).

Failures are the transport interface's: ``TransportTimeout("connect" | "idle")`` and ``TransportBroken``.
A request that was cancelled, failed or not read to its end closes its connection: only a connection
whose answer is complete goes back to the pool.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

from .._exceptions import ConfigurationError
from .h1_connection import Connection
from .transport_types import TransportBroken, TransportTimeout

__all__ = ["H1Transport", "Origin", "plain_origin"]

_USER_AGENT = "nbllm"
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # characters a request target keeps as they are (RFC 3986 pchar + "/")
_QUERY_SAFE = _PATH_SAFE + "?"


class Origin:
    """Where a URL's requests go and the first lines of each: parsed once per URL (``H1Transport.origin``)."""

    __slots__ = ("host", "key", "port", "prefix", "tls")

    def __init__(self, scheme: str, host: str, port: int, host_header: str, target: str) -> None:
        self.host, self.port, self.tls = host, port, scheme == "https"
        self.key = (scheme, host, port)
        self.prefix = (f"POST {target} HTTP/1.1\r\nhost: {host_header}\r\nuser-agent: {_USER_AGENT}\r\n"
                       "accept-encoding: identity\r\n")


def plain_origin(url: str) -> Origin | None:
    """The ``Origin`` of ``url``, or None if this client does not send there (another scheme, or
    credentials in the URL): those go through aiohttp."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number: aiohttp says what is wrong with the URL
        return None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == (443 if parts.scheme == "https" else 80) else f"{shown}:{port}"
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_QUERY_SAFE)
    return Origin(parts.scheme, host, port, host_header, target)


class _H1Response:
    """The answer on a connection: ``status`` and ``headers`` (names lower-cased) at once, the body as it
    arrives (``aiter_bytes``) or whole (``aread``)."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: Connection) -> None:
        self._conn, self.status, self.headers = conn, conn.status, _Headers(conn.headers)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            for chunk in conn.take():
                if chunk:
                    yield chunk
            if conn.complete:
                return
            await conn.wait()

    async def aread(self) -> bytes:
        conn = self._conn
        while not conn.complete:
            await conn.wait()
        return b"".join(conn.take())


class _Headers(dict):  # type: ignore[type-arg]
    """Response headers by lower-case name; looked up in any case, as aiohttp's and httpx's are."""

    __slots__ = ()

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name.lower() if isinstance(name, str) else name)


class _Exchange:
    """One request as an async context manager (the transport interface's ``post``)."""

    __slots__ = ("_conn", "_data", "_headers", "_idle", "_origin", "_pool", "_timeouts", "_timer")

    def __init__(self, pool: H1Transport, origin: Origin, headers: Mapping[str, str], data: bytes,
                 timeouts: Any) -> None:
        self._pool, self._origin, self._headers, self._data, self._timeouts = pool, origin, headers, data, timeouts
        self._conn: Connection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle = timeouts.idle

    async def __aenter__(self) -> _H1Response:
        head = _request_head(self._origin, self._headers, len(self._data))
        conn = self._conn = await self._pool.connection(self._origin, self._timeouts.connect)
        try:
            conn.send(head + self._data if len(self._data) < 65536 else head)
            if len(self._data) >= 65536:  # a large body: written as the kernel takes it, not copied
                conn.send(self._data)
            self._arm()
            await conn.drained()
            while not conn.head:
                await conn.wait()
            return _H1Response(conn)
        except BaseException:
            self._end(reuse=False)
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        conn = self._conn
        self._end(reuse=exc is None and conn is not None and conn.complete and conn.keep_alive)
        return False

    def _arm(self) -> None:
        """The idle timeout: one timer per request, moved on when it fires early (not reset per chunk)."""
        loop = self._pool.loop
        self._timer = loop.call_at(loop.time() + self._idle, self._check_idle)

    def _check_idle(self) -> None:
        conn = self._conn
        if conn is None or conn.complete or conn.closed:
            return
        loop = self._pool.loop
        silent_until = conn.last_activity + self._idle
        if silent_until > loop.time():
            self._timer = loop.call_at(silent_until, self._check_idle)
            return
        conn.fail(TransportTimeout("idle", f"no data from the server for {self._idle:g}s"))

    def _end(self, reuse: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if reuse and not conn.closed:
            self._pool.release(self._origin, conn)
        else:
            conn.close()


def _request_head(origin: Origin, headers: Mapping[str, str], length: int) -> bytes:
    lines = [origin.prefix]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ConfigurationError(f"The HTTP header {name.strip()!r} has a line break or colon where none may "
                                     "be (an API key or header value read with its newline?); remove it.")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {length}\r\n\r\n")
    return "".join(lines).encode("utf-8")


class H1Transport:
    """Keep-alive connections by origin, opened on the engine loop as requests need them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._origins: dict[str, Origin | None] = {}
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._open: set[Connection] = set()  # to close on aclose(); pruned of closed ones as it grows
        self._prune_at = 64
        self._tls: ssl.SSLContext | None = None

    def origin(self, url: str) -> Origin | None:
        """``plain_origin(url)``, remembered (a call's URL is the same on every request)."""
        try:
            return self._origins[url]
        except KeyError:
            if len(self._origins) > 1024:  # URLs that vary per request: do not keep them all
                self._origins.clear()
            found = self._origins[url] = plain_origin(url)
            return found

    def post(self, origin: Origin, headers: Mapping[str, str], data: bytes, timeouts: Any) -> _Exchange:
        return _Exchange(self, origin, headers, data, timeouts)

    async def connection(self, origin: Origin, connect_timeout: float) -> Connection:
        """A kept-alive connection to ``origin`` if one is free, else a new one."""
        idle = self._idle.get(origin.key)
        if idle:
            now = self.loop.time()
            while idle:
                conn = idle.pop()  # the most recently used: the least likely to have been closed meanwhile
                if conn.usable(now):
                    conn.reused = True
                    return conn
                conn.close()
        return await self._connect(origin, connect_timeout)

    def release(self, origin: Origin, conn: Connection) -> None:
        conn.idle_again()
        self._idle.setdefault(origin.key, []).append(conn)

    async def _connect(self, origin: Origin, connect_timeout: float) -> Connection:
        loop = self.loop
        tls = self._tls_context() if origin.tls else None
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop), origin.host, origin.port, ssl=tls,
                    server_hostname=origin.host if tls else None, happy_eyeballs_delay=0.25)
        except TimeoutError:
            raise TransportTimeout(
                "connect", f"no connection to {origin.host}:{origin.port} within {connect_timeout:g}s") from None
        except (OSError, ssl.SSLError) as error:
            raise TransportBroken(f"cannot connect to {origin.host}:{origin.port}: {error}") from None
        if len(self._open) >= self._prune_at:
            self._open = {c for c in self._open if not c.closed}
            self._prune_at = max(64, 2 * len(self._open))
        self._open.add(conn)
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:  # ~1 ms to load the system's certificates: once
            self._tls = ssl.create_default_context()
        return self._tls

    async def aclose(self) -> None:
        for conn in self._open:
            conn.close()
        self._open.clear()
        self._idle.clear()
