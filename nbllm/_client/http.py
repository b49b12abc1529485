"""The HTTP layer of the engine loop: one small interface, two transports, chosen by measurement.

``post(url, headers, body, timeouts)`` (``body``: a JSON value, or bytes already encoded) is an async
context manager yielding a response with ``status``, case-insensitive ``headers``, ``aiter_bytes()`` and
``aread()``; transport failures come out as ``TransportTimeout`` (with ``kind``: connect / idle) or
``TransportBroken``. Nothing else in nbllm sees the HTTP library. The provider batch APIs also need
``get(url, headers, timeouts)`` (batch status, result files) and ``upload(url, headers, fields, file,
timeouts)`` (a multipart ``POST /v1/files``), which answer and fail the same way. Redirects are never
followed, by any method: a 3xx comes back as it is (see ``docs/ARCHITECTURE.md``, "Transport").

- ``aiohttp`` (default): aiohttp's client directly. The client-overhead benchmark
  (``benchmarks/bench_overhead.py``) measured httpx2's API over aiohttp (``httpx_aiohttp``) at about twice
  the CPU per request of plain aiohttp, and httpx2's own transport higher still; going direct is what
  brings nbllm near the aiohttp floor.
- ``httpx2``: httpx's API through its maintained fork, for environments that standardise on it
  (``pip install 'nbllm[httpx]'``).

Set ``NBLLM_TRANSPORT=httpx2`` to swap; the choice and its numbers are in ``docs/ARCHITECTURE.md``
("Transport").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any

from .._engine import get_engine
from .._exceptions import ConfigurationError
from .h1 import H1Transport
from .transport_types import HttpResponse, Timeouts, TransportBroken, TransportTimeout, UploadFile

__all__ = ["HttpResponse", "Timeouts", "TransportBroken", "TransportTimeout", "UploadFile", "get_transport"]

_MAX_CONNECTIONS = 1000
# json.dumps with an option builds a new encoder per call; one shared encoder gives the same bytes
# (``encode`` keeps no state between calls)
_JSON = json.JSONEncoder(ensure_ascii=False)


class _AiohttpResponse:
    __slots__ = ("_raw", "headers", "status")

    def __init__(self, raw: Any) -> None:
        self._raw, self.status, self.headers = raw, raw.status, raw.headers

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self._raw.content.iter_any()

    async def aread(self) -> bytes:
        return await self._raw.read()


class _AiohttpExchange:
    """One request as an async context manager: aiohttp's own, with its errors turned into ours on the
    way in and on the way out (an error while the body is read, too). A plain class, not
    ``contextlib.asynccontextmanager``: its generator cost a few µs of CPU on every request."""

    __slots__ = ("_aiohttp", "_data", "_headers", "_method", "_request", "_session", "_timeout", "_url")

    def __init__(self, aiohttp: Any, session: Callable[[], Any], method: str, url: str, headers: Mapping[str, str],
                 timeout: Any, data: Any) -> None:
        self._aiohttp, self._session = aiohttp, session
        # fields, not a dict of arguments: one object fewer alive for the whole request
        self._method, self._url, self._headers, self._timeout, self._data = method, url, headers, timeout, data
        self._request: Any = None

    async def __aenter__(self) -> HttpResponse:
        try:
            # made here, not in post(): the session is bound to the engine loop, and an exchange never
            # entered leaves no coroutine behind. Never follow a redirect: aiohttp drops Authorization on a
            # cross-origin hop but keeps custom headers such as x-api-key, so the key would go to whatever
            # host the answer names.
            self._request = self._session().request(
                self._method, self._url, headers=self._headers, timeout=self._timeout, allow_redirects=False,
                data=self._data)
            return _AiohttpResponse(await self._request.__aenter__())
        except Exception as error:  # noqa: BLE001 - an aiohttp error becomes ours, any other goes on as it is
            raise self._ours(error) from None

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        try:
            await self._request.__aexit__(exc_type, exc, tb)
        except Exception as error:  # noqa: BLE001 - as in __aenter__
            raise self._ours(error) from None
        if isinstance(exc, Exception):
            ours = self._ours(exc)
            if ours is not exc:
                raise ours from None
        return False

    def _ours(self, error: Exception) -> Exception:
        """The transport error an aiohttp error means; any other error as it is."""
        aiohttp = self._aiohttp
        if isinstance(error, aiohttp.ConnectionTimeoutError):
            return TransportTimeout("connect", str(error))
        if isinstance(error, aiohttp.ServerTimeoutError):
            return TransportTimeout("idle", str(error))
        if isinstance(error, aiohttp.ClientError):
            return TransportBroken(f"{type(error).__name__}: {error}")
        return error


class _AiohttpTransport:
    """aiohttp's ClientSession, created lazily on the engine loop (sessions are loop-bound)."""

    def __init__(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session: Any = None
        # aiohttp's ClientTimeout for each Timeouts seen (a call's are the same every time: no new one per request)
        self._timeouts: dict[Timeouts, Any] = {}

    def _get_session(self) -> Any:
        if self._session is None or self._session.closed:
            connector = self._aiohttp.TCPConnector(limit=_MAX_CONNECTIONS, keepalive_timeout=30, ttl_dns_cache=300)
            # trust_env re-reads the proxy variables and ~/.netrc on every request (measured: +568 µs of
            # CPU per request, 3.7x the bare request), so it is on only where a proxy is configured
            # no cookie jar: LLM APIs authenticate by header, and filtering cookies cost ~13 µs a request
            self._session = self._aiohttp.ClientSession(
                connector=connector, trust_env=_proxy_configured(), cookie_jar=self._aiohttp.DummyCookieJar()
            )
        return self._session

    def post(self, url: str, headers: Mapping[str, str], body: Any, timeouts: Timeouts) -> Any:
        """``POST`` a JSON body: an async context manager yielding the response (see module docstring)."""
        return self._send("POST", url, headers, timeouts, data=_encoded(body))

    def get(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> Any:
        """``GET url``: an async context manager yielding the response, as ``post`` does."""
        return self._send("GET", url, headers, timeouts)

    def upload(self, url: str, headers: Mapping[str, str], fields: Mapping[str, str], file: UploadFile,
               timeouts: Timeouts) -> Any:
        """A multipart/form-data ``POST`` of ``fields`` and ``file``, as ``post`` answers."""
        form = self._aiohttp.FormData()
        for name, value in fields.items():
            form.add_field(name, value)
        form.add_field(file.field, file.data, filename=file.filename, content_type=file.content_type)
        return self._send("POST", url, headers, timeouts, data=form)

    def _send(self, method: str, url: str, headers: Mapping[str, str], timeouts: Timeouts, data: Any = None) -> Any:
        aiohttp = self._aiohttp
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            timeout = self._timeouts[timeouts] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeouts.connect, sock_read=timeouts.idle)
        return _AiohttpExchange(aiohttp, self._get_session, method, url, headers, timeout, data)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _encoded(body: Any) -> bytes:
    """A JSON body as bytes; bytes are a body already encoded (a provider batch of up to 256 MB is encoded once)."""
    return body if isinstance(body, bytes) else _JSON.encode(body).encode()


class _DefaultTransport:
    """nbllm's HTTP/1.1 client (``h1.py``) for every ``POST`` it can send; aiohttp for the rest: a proxy in
    the environment (aiohttp reads it and ``NO_PROXY``), credentials in the URL, ``GET`` and uploads."""

    def __init__(self) -> None:
        self._aiohttp = _AiohttpTransport()
        self._h1: H1Transport | None = None
        self._proxied = _proxy_configured()

    def post(self, url: str, headers: Mapping[str, str], body: Any, timeouts: Timeouts) -> Any:
        """``POST`` a JSON body: an async context manager yielding the response (see module docstring)."""
        h1 = self._h1
        if h1 is None:  # made on first use, on the engine loop it belongs to
            if self._proxied:
                return self._aiohttp.post(url, headers, body, timeouts)
            h1 = self._h1 = H1Transport(asyncio.get_running_loop())
        origin = h1.origin(url)
        if origin is None:
            return self._aiohttp.post(url, headers, body, timeouts)
        return h1.post(origin, headers, _encoded(body), timeouts)

    def get(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> Any:
        """``GET url`` (through aiohttp): an async context manager yielding the response."""
        return self._aiohttp.get(url, headers, timeouts)

    def upload(self, url: str, headers: Mapping[str, str], fields: Mapping[str, str], file: UploadFile,
               timeouts: Timeouts) -> Any:
        """A multipart/form-data ``POST`` (through aiohttp), as ``post`` answers."""
        return self._aiohttp.upload(url, headers, fields, file, timeouts)

    async def aclose(self) -> None:
        if self._h1 is not None:
            await self._h1.aclose()
        await self._aiohttp.aclose()


def _proxy_configured() -> bool:
    import urllib.request

    return bool(urllib.request.getproxies())


class _Httpx2Response:
    __slots__ = ("_raw", "headers", "status")

    def __init__(self, raw: Any) -> None:
        self._raw, self.status, self.headers = raw, raw.status_code, raw.headers

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self._raw.aiter_bytes()

    async def aread(self) -> bytes:
        return await self._raw.aread()


class _Httpx2Transport:
    """httpx2's AsyncClient with its own connection pool."""

    def __init__(self) -> None:
        try:
            import httpx2
        except ImportError:
            raise ConfigurationError(
                "NBLLM_TRANSPORT=httpx2 needs httpx2: pip install 'nbllm[httpx]' (or unset NBLLM_TRANSPORT "
                "for the default aiohttp transport)."
            ) from None
        self._httpx = httpx2
        limits = httpx2.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=200, keepalive_expiry=30)
        self._client = httpx2.AsyncClient(limits=limits)

    def post(self, url: str, headers: Mapping[str, str], body: Any, timeouts: Timeouts) -> Any:
        """``POST`` a JSON body: an async context manager yielding the response (see module docstring)."""
        content = {"content": body} if isinstance(body, bytes) else {"json": body}
        return self._send("POST", url, headers, timeouts, **content)

    def get(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> Any:
        """``GET url``: an async context manager yielding the response, as ``post`` does."""
        return self._send("GET", url, headers, timeouts)

    def upload(self, url: str, headers: Mapping[str, str], fields: Mapping[str, str], file: UploadFile,
               timeouts: Timeouts) -> Any:
        """A multipart/form-data ``POST`` of ``fields`` and ``file``, as ``post`` answers."""
        files = {file.field: (file.filename, file.data, file.content_type)}
        return self._send("POST", url, headers, timeouts, data=dict(fields), files=files)

    @contextlib.asynccontextmanager
    async def _send(self, method: str, url: str, headers: Mapping[str, str], timeouts: Timeouts,
                    **kwargs: Any) -> AsyncIterator[HttpResponse]:
        httpx = self._httpx
        # pool=None: nbllm's own limits gate concurrency, a pool timeout would only fail healthy requests;
        # a large upload may take a while to write, so writes get the idle timeout too
        timeout = httpx.Timeout(connect=timeouts.connect, read=timeouts.idle, write=timeouts.idle, pool=None)
        try:
            # never follow a redirect (httpx2's default too; said here so it cannot change under us)
            async with self._client.stream(method, url, headers=dict(headers), timeout=timeout,
                                           follow_redirects=False, **kwargs) as raw:
                yield _Httpx2Response(raw)
        except httpx.ConnectTimeout as error:
            raise TransportTimeout("connect", str(error)) from None
        except httpx.TimeoutException as error:
            raise TransportTimeout("idle", str(error)) from None
        except httpx.TransportError as error:
            raise TransportBroken(f"{type(error).__name__}: {error}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


Transport = _DefaultTransport | _AiohttpTransport | _Httpx2Transport
_TRANSPORTS: dict[str, Callable[[], Transport]] = {
    "nbllm": _DefaultTransport, "aiohttp": _AiohttpTransport, "httpx2": _Httpx2Transport}
_transport: Transport | None = None


def get_transport() -> Transport:
    """The engine loop's shared transport, chosen by ``NBLLM_TRANSPORT``: ``nbllm`` (the default: nbllm's
    HTTP/1.1 client, aiohttp where it does not go), ``aiohttp`` or ``httpx2``."""
    global _transport
    if _transport is None:
        choice = os.environ.get("NBLLM_TRANSPORT", "").strip().lower() or "nbllm"
        make = _TRANSPORTS.get(choice)
        if make is None:
            raise ConfigurationError(f"NBLLM_TRANSPORT={choice!r} is not a transport nbllm has; use one of "
                                     f"{', '.join(_TRANSPORTS)} (or unset it for the default, nbllm).")
        _transport = make()
        get_engine().on_shutdown(_close_transport)
    return _transport


async def _close_transport() -> None:
    global _transport
    transport, _transport = _transport, None
    if transport is not None:
        await transport.aclose()
