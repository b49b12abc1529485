"""One connection of nbllm's HTTP/1.1 client (``h1.py``): an ``asyncio.Protocol`` that parses the answer to
the request in flight with llhttp (``httptools``) and hands it over as it arrives.

It keeps the answer's status, headers (names lower-cased, a repeated header joined into one list) and body
chunks (gzip/deflate decoded), pauses reading while more than ``READ_BUFFER`` bytes wait unread, and fails
with ``TransportBroken`` on anything it cannot trust: an invalid response, headers beyond
``MAX_HEADER_BYTES``, an unknown compression, a close before the answer is complete, bytes on an idle
connection.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import httptools

from .transport_types import TransportBroken

__all__ = ["KEEPALIVE_SECONDS", "MAX_HEADER_BYTES", "READ_BUFFER", "Connection"]

KEEPALIVE_SECONDS = 30.0
READ_BUFFER = 1 << 20  # unread body beyond this pauses reading (a slow consumer of a fast stream)
MAX_HEADER_BYTES = 256 * 1024  # response headers beyond this are a broken or hostile server


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the answer to the request in flight on it, parsed by llhttp."""

    __slots__ = ("_header_bytes", "_loop", "_parser", "_paused", "_transport", "_waiter", "_writable", "busy",
                 "chunks", "closed", "complete", "decoder", "error", "head", "headers", "idle_since",
                 "keep_alive", "last_activity", "reused", "status", "unread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self.closed = self.reused = self.busy = False
        self.idle_since = self.last_activity = loop.time()
        self._reset()

    def _reset(self) -> None:
        """Ready for the next answer on this connection."""
        self.status, self.headers, self.chunks, self.unread = 0, {}, [], 0
        self.head = self.complete = self.keep_alive = False
        self.error: BaseException | None = None
        self.decoder: Any = None
        self._header_bytes = 0

    # ---- asyncio callbacks ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:  # bytes nobody asked for: this connection cannot be trusted again
            self.keep_alive = False
            self.close()
            return
        self.last_activity = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            # a callback below that refused what it got raised a TransportBroken, which llhttp wraps
            refused = error.__context__
            self._fail(refused if isinstance(refused, TransportBroken)
                       else TransportBroken(f"the server sent an invalid HTTP response ({error})"))

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head and not self.complete and self._reads_until_close():
            self.complete = True  # a body without a length ends when the connection does
        elif not self.complete and self.error is None:
            why = f": {exc}" if exc else ""
            self.error = TransportBroken(f"the server closed the connection before the answer was complete{why}")
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        self.last_activity = self._loop.time()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # ---- llhttp callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # a second answer in the same packet, to a request never sent: never reuse this
            self.keep_alive = False
            raise TransportBroken("the server sent more than one answer to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise TransportBroken(f"the server sent more than {MAX_HEADER_BYTES // 1024} KB of response headers")
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        seen = self.headers.get(key)
        self.headers[key] = text if seen is None else f"{seen}, {text}"  # a repeated header is one list

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self.decoder = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or zlib header, detected
        elif encoding != "identity":
            raise TransportBroken(f"the server compressed its answer with {encoding!r} although asked not to")
        self.head = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.decoder is not None:
            try:
                body = self.decoder.decompress(body)
            except zlib.error as error:
                raise TransportBroken(f"the server's compressed answer is corrupt ({error})") from None
        self.chunks.append(body)
        self.unread += len(body)
        if self.unread > READ_BUFFER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status < 200:
            self._reset()
            return
        if self.decoder is not None:
            self.chunks.append(self.decoder.flush())
        self.complete, self.keep_alive = True, self._parser.should_keep_alive()
        self._wake()

    # ---- used by the exchange -----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        assert self._transport is not None
        self.busy = True
        self.last_activity = self._loop.time()
        self._transport.write(data)

    async def drained(self) -> None:
        """Wait while the kernel's send buffer is full (a large body)."""
        while self._writable is not None and not self.closed:
            await self._writable
        if self.error is not None:
            raise self.error

    def take(self) -> list[bytes]:
        """The body read so far, handed over (reading resumes if it was paused)."""
        chunks, self.chunks, self.unread = self.chunks, [], 0
        if self._paused and self._transport is not None and not self.closed:
            self._paused = False
            self.last_activity = self._loop.time()  # the pause was ours, not the server's silence
            self._transport.resume_reading()
        return chunks

    async def wait(self) -> None:
        """Until something new arrives (head, body, end) or the connection fails."""
        if self.error is not None:
            raise self.error
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    def fail(self, error: BaseException) -> None:
        """Give up on this connection: ``error`` for whoever waits, and close it."""
        self._fail(error)

    def close(self) -> None:
        if not self.closed and self._transport is not None:
            self.closed = True
            self._transport.abort()  # nothing more will be read: do not wait for a clean TLS close

    def usable(self, now: float) -> bool:
        return not self.closed and now - self.idle_since < KEEPALIVE_SECONDS

    def idle_again(self) -> None:
        self._reset()
        self.busy = False
        self.idle_since = self._loop.time()

    def _reads_until_close(self) -> bool:
        headers = self.headers
        return ("content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")
                and self.status not in (204, 304))

    def _fail(self, error: BaseException) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self._wake()
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
