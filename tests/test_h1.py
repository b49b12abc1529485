"""nbllm's HTTP/1.1 client (``nbllm._client.h1``) against small servers on real sockets that write exactly
the bytes each test needs: lengths, chunks, bodies that end with the connection, kept-alive and dropped
connections, stalls, garbage, TLS. The rest of the suite runs every call through it too (the default
transport); ``tests/test_hostile.py`` and ``tests/test_batchapi.py`` compare it with the other transports.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from nbllm._client import h1_connection
from nbllm._client.h1 import H1Transport, plain_origin
from nbllm._client.transport_types import Timeouts, TransportBroken, TransportTimeout
from nbllm._exceptions import ConfigurationError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "RawServer"], Awaitable[None]]
OK = b'{"ok": true}'


class RawServer:
    """A loopback server running ``handler`` on every connection; counts connections and keeps requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler, self.connections, self.requests = handler, 0, []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        body = await reader.readexactly(length)
        self.requests.append((head, body))
        return head, body


def answer(body: bytes = OK, status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{headers}\r\n".encode() + body


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
    while True:
        await server.read_request(reader)
        writer.write(answer())
        await writer.drain()


async def post(transport: H1Transport, url: str, body: Any = None, *, stream: bool = False,
               timeouts: Timeouts | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    origin = transport.origin(url)
    assert origin is not None
    data = json.dumps(body if body is not None else {"q": 1}).encode()
    async with transport.post(origin, headers or {"authorization": "Bearer sk-h1-test-000000"}, data,
                              timeouts or Timeouts()) as response:
        if stream:
            chunks = [chunk async for chunk in response.aiter_bytes()]
            return response.status, response.headers, b"|".join(chunks)
        return response.status, response.headers, await response.aread()


@pytest.fixture
async def transport() -> Any:
    client = H1Transport(asyncio.get_running_loop())
    yield client
    await client.aclose()


# ---- what a request looks like, and answers of every framing ------------------------------------------
async def test_a_request_is_framed_and_an_answer_read_by_its_length(transport: H1Transport) -> None:
    async with RawServer(keep_answering) as server:
        status, headers, body = await post(transport, server.url + "?a=b c", {"messages": ["héllo"]})
    assert (status, body) == (200, OK)
    assert headers["Content-Type"] == headers.get("content-type") == "application/json" and "CONTENT-LENGTH" in headers
    head, sent = server.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions?a=b%20c HTTP/1.1"
    assert f"host: 127.0.0.1:{server.port}" in lines and "accept-encoding: identity" in lines
    assert "authorization: Bearer sk-h1-test-000000" in lines and f"content-length: {len(sent)}" in lines
    assert json.loads(sent) == {"messages": ["héllo"]}


async def test_a_chunked_answer_streams_as_it_is_written(transport: H1Transport) -> None:
    release = asyncio.Event()

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"6\r\ndata: \r\n")
        await writer.drain()
        await release.wait()  # the second chunk only once the client has read the first
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()

    async with RawServer(chunked) as server:
        origin = transport.origin(server.url)
        assert origin is not None
        async with transport.post(origin, {}, b"{}", Timeouts()) as response:
            chunks = response.aiter_bytes()
            assert await anext(chunks) == b"data: "
            release.set()
            assert [chunk async for chunk in chunks] == [b"hello"]


async def test_an_answer_without_a_length_ends_with_its_connection(transport: H1Transport) -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n" + OK)
        await writer.drain()

    async with RawServer(until_close) as server:
        assert await post(transport, server.url) == (200, {"content-type": "application/json"}, OK)
        assert (await post(transport, server.url))[2] == OK
    assert server.connections == 2  # that connection could not be used again


async def test_a_gzipped_answer_is_decoded(transport: H1Transport) -> None:
    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(answer(gzip.compress(OK * 100), headers="content-encoding: gzip\r\n"))
        await writer.drain()

    async with RawServer(gzipped) as server:
        assert (await post(transport, server.url))[2] == OK * 100


async def test_an_interim_answer_is_skipped(transport: H1Transport) -> None:
    async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + answer(status="201 Created"))
        await writer.drain()

    async with RawServer(early_hints) as server:
        status, headers, body = await post(transport, server.url)
    assert (status, body, "link" in headers) == (201, OK, False)


# ---- connections: kept alive, given up when they cannot be trusted ------------------------------------
async def test_connections_are_kept_alive_and_reused(transport: H1Transport) -> None:
    async with RawServer(keep_answering) as server:
        for _ in range(3):
            assert (await post(transport, server.url))[2] == OK
        await asyncio.gather(*(post(transport, server.url) for _ in range(4)))
    assert server.connections == 4  # the first reused twice; then four at once need three more
    assert len(server.requests) == 7


async def test_connection_close_from_the_server_is_honoured(transport: H1Transport) -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(answer(headers="connection: close\r\n"))
        await writer.drain()
        await reader.read()  # keep it open: the client must not send here again anyway

    async with RawServer(closing) as server:
        await post(transport, server.url)
        await post(transport, server.url)
    assert server.connections == 2


async def test_a_kept_alive_connection_the_server_closed_is_not_used(transport: H1Transport) -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(answer())
        await writer.drain()  # then the handler returns: the server closes this idle connection

    async with RawServer(one_then_close) as server:
        await post(transport, server.url)
        await asyncio.sleep(0.05)  # the close reaches the client while its connection idles in the pool
        assert (await post(transport, server.url))[2] == OK
    assert server.connections == 2


async def test_bytes_nobody_asked_for_retire_the_connection(transport: H1Transport) -> None:
    async def extra_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(answer())
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(answer(b'{"ok": "forged"}'))  # an answer to a request not sent yet
        await writer.drain()
        await keep_answering(reader, writer, server)

    async with RawServer(extra_bytes) as server:
        await post(transport, server.url)
        await asyncio.sleep(0.06)
        assert (await post(transport, server.url))[2] == OK  # from a new connection, not the forged answer
    assert server.connections == 2


async def test_a_second_answer_in_the_same_packet_retires_the_connection(transport: H1Transport) -> None:
    async def two_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(answer() + answer(b'{"ok": "forged"}'))  # one write: the forged answer rides along
        await writer.drain()
        await keep_answering(reader, writer, server)

    async with RawServer(two_answers) as server:
        assert (await post(transport, server.url))[2] == OK  # the real answer is kept
        assert (await post(transport, server.url))[2] == OK  # and the next comes from a new connection
    assert server.connections == 2


async def test_a_request_cancelled_mid_answer_does_not_leave_its_connection_in_the_pool(transport: H1Transport) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        while True:
            await server.read_request(reader)
            if len(server.requests) == 1:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                await writer.drain()
                await reader.read()
                return
            writer.write(answer())
            await writer.drain()

    async with RawServer(slow) as server:
        first = asyncio.ensure_future(post(transport, server.url))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert (await post(transport, server.url))[2] == OK
    assert server.connections == 2


# ---- failures: what they raise ------------------------------------------------------------------------
async def test_a_server_that_closes_without_answering_is_a_broken_transport(transport: H1Transport) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)

    async with RawServer(hang_up) as server:
        with pytest.raises(TransportBroken, match="closed the connection before the answer was complete"):
            await post(transport, server.url)


async def test_a_body_cut_short_is_a_broken_transport(transport: H1Transport) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()

    async with RawServer(cut) as server:
        with pytest.raises(TransportBroken):
            await post(transport, server.url)


@pytest.mark.parametrize("garbage", [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 2\r\n\r\nxx"])
async def test_an_invalid_answer_is_a_broken_transport(transport: H1Transport, garbage: bytes) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(garbage)
        await writer.drain()
        await reader.read()

    async with RawServer(bad) as server:
        with pytest.raises(TransportBroken):
            await post(transport, server.url)


async def test_endless_headers_are_refused(transport: H1Transport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h1_connection, "MAX_HEADER_BYTES", 4096)

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(1000):
            writer.write(f"x-filler-{i}: {'y' * 50}\r\n".encode())
        await writer.drain()
        await reader.read()

    async with RawServer(endless) as server:
        with pytest.raises(TransportBroken, match="KB of response headers"):
            await post(transport, server.url)


async def test_a_stalled_answer_times_out_after_the_idle_limit(transport: H1Transport) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await writer.drain()
        for _ in range(3):  # data keeps coming for a while: silence is what times out, not duration
            await asyncio.sleep(0.1)
            writer.write(b"2\r\nhi\r\n")
            await writer.drain()
        await reader.read()

    loop = asyncio.get_running_loop()
    async with RawServer(stall) as server:
        started = loop.time()
        with pytest.raises(TransportTimeout) as caught:
            await post(transport, server.url, stream=True, timeouts=Timeouts(idle=0.25))
    assert caught.value.kind == "idle"
    assert 0.5 < loop.time() - started < 2  # three chunks 0.1 s apart, then 0.25 s of silence


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(transport: H1Transport) -> None:
    async with RawServer(keep_answering) as server:
        with pytest.raises(ConfigurationError, match="line break"):
            await post(transport, server.url, headers={"authorization": "Bearer sk-abc\r\nx-evil: 1"})
    assert server.requests == []


async def test_a_refused_connection_is_a_broken_transport(transport: H1Transport) -> None:
    async with RawServer(keep_answering) as server:
        url = server.url
    with pytest.raises(TransportBroken, match="cannot connect"):
        await post(transport, url)


# ---- large bodies both ways -----------------------------------------------------------------------------
async def test_large_bodies_go_and_come_whole(transport: H1Transport) -> None:
    big = "x" * (6 << 20)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        _, body = await server.read_request(reader)
        writer.write(answer(body))
        await writer.drain()

    async with RawServer(echo) as server:
        status, _, body = await post(transport, server.url, {"big": big}, stream=True)
    assert status == 200 and json.loads(body.replace(b"|", b"")) == {"big": big}


# ---- TLS ------------------------------------------------------------------------------------------------
async def test_tls_is_verified_against_the_trusted_authorities(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    server = await asyncio.start_server(lambda r, w: keep_answering(r, w, RawServer(keep_answering)), "127.0.0.1",
                                        0, ssl=server_context)
    url = f"https://localhost:{server.sockets[0].getsockname()[1]}/v1"
    try:
        untrusting = H1Transport(asyncio.get_running_loop())
        with pytest.raises(TransportBroken, match="certificate"):
            await post(untrusting, url)
        await untrusting.aclose()
        authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        trusting = H1Transport(asyncio.get_running_loop())
        assert await post(trusting, url) == (200, {"content-type": "application/json", "content-length": "12"}, OK)
        await trusting.aclose()
    finally:
        server.close()


# ---- which URLs this client sends to (pure) -------------------------------------------------------------
@pytest.mark.parametrize(("url", "key", "first_line"), [
    ("http://h/v1/chat/completions", ("http", "h", 80), "POST /v1/chat/completions HTTP/1.1\r\nhost: h\r\n"),
    ("https://api.openai.com/v1/x", ("https", "api.openai.com", 443), "POST /v1/x HTTP/1.1\r\nhost: api.openai.com\r\n"),
    ("http://h:8000", ("http", "h", 8000), "POST / HTTP/1.1\r\nhost: h:8000\r\n"),
    ("https://h:443/a?b=c d", ("https", "h", 443), "POST /a?b=c%20d HTTP/1.1\r\nhost: h\r\n"),
    ("http://[::1]:11434/v1/ä", ("http", "::1", 11434), "POST /v1/%C3%A4 HTTP/1.1\r\nhost: [::1]:11434\r\n"),
    ("http://user:secret@h/v1", None, None),
    ("ftp://h/v1", None, None),
    ("http://h:port/v1", None, None),
])
def test_which_urls_it_sends_to(url: str, key: tuple[str, str, int] | None, first_line: str | None) -> None:
    origin = plain_origin(url)
    if key is None:
        assert origin is None  # aiohttp sends there, or says what is wrong with the URL
        return
    assert origin is not None and origin.key == key and origin.prefix.startswith(first_line or "")


# ---- the default transport: this client where it can, aiohttp where it cannot -------------------------------
async def test_with_a_proxy_in_the_environment_posts_go_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbllm._client import http

    async with RawServer(keep_answering) as proxy:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        default = http._DefaultTransport()
        try:
            async with default.post("http://api.example.invalid/v1/chat/completions", {}, {"q": 1},
                                    Timeouts()) as response:
                assert (response.status, await response.aread()) == (200, OK)
        finally:
            await default.aclose()
    assert proxy.requests[0][0].startswith(b"POST http://api.example.invalid/v1/chat/completions HTTP/1.1")


def test_an_unknown_transport_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbllm._client import http

    monkeypatch.setenv("NBLLM_TRANSPORT", "curl")
    monkeypatch.setattr(http, "_transport", None)
    with pytest.raises(ConfigurationError, match="nbllm, aiohttp, httpx2"):
        http.get_transport()
