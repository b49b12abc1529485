"""The management calls of a batch — upload, create, poll, download, cancel — on nbllm's transport.

```python
conn = Connection(provider, key, Timeouts(), RetryPolicy())
batch = await conn.request_json("GET", conn.url("/batches/batch_abc"))
async for line in conn.json_lines(conn.url("/files/file-xyz/content")):
    ...                                    # one parsed JSON line at a time, never the whole file
```

Failures are the errors an online call raises (the provider's error mapping, ``RequestTimeoutError``,
``APIConnectionError``) and are retried by the same rule: 408/409/429/5xx, timeouts and broken
connections, with backoff, honouring ``retry-after``. A download that breaks part way is fetched again
and the lines already delivered are skipped (result files do not change once written).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .._client import (
    CallSpec,
    Provider,
    RetryPolicy,
    Timeouts,
    TransportBroken,
    TransportTimeout,
    UploadFile,
    backoff_delay,
    get_transport,
    is_retryable_status,
    make_provider,
    parse_retry_after,
)
from .._exceptions import (
    APIConnectionError,
    NbllmError,
    ProviderError,
    RequestTimeoutError,
)
from .._keys import ApiKey
from .._secrets import redact

__all__ = ["Connection", "connect"]

T = TypeVar("T")
# a line longer than this is not a result line: a broken or hostile server
_MAX_LINE = 64 * 1024 * 1024


@dataclass
class Connection:
    """One key at one server: every management call of a batch goes through one of these."""

    provider: Provider
    key: ApiKey
    timeouts: Timeouts
    retry: RetryPolicy

    @property
    def wire_format(self) -> str:
        return self.provider.name

    def url(self, path: str) -> str:
        """``path`` under the provider's base URL (OpenAI's includes ``/v1``, Anthropic's does not)."""
        return self.provider.base_url + path

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is on this server, so the key may be sent to it."""
        base = self.provider.base_url.split("://", 1)
        other = url.split("://", 1)
        return len(other) == 2 and base[0] == other[0] and other[1].split("/", 1)[0] == base[1].split("/", 1)[0]

    def headers(self) -> dict[str, str]:
        """The authentication (and version) headers an online call with this key sends."""
        probe = self.provider.build_request(CallSpec(model="", messages=[], stream=False), self.key.value)
        return {k: v for k, v in probe.headers.items() if k not in ("content-type", "accept")}

    async def request_json(self, method: str, url: str, body: Any = None, *, fields: Mapping[str, str] | None = None,
                           upload: UploadFile | None = None, retry: bool = True) -> Any:
        """Send one request (JSON body, multipart upload, or GET); return the JSON answer.

        ``retry=False`` for a request that must not be repeated blindly (creating a batch: if its answer
        was lost, the caller first looks for the batch it may have created).
        """
        if not retry:
            return await self._once(method, url, body, fields, upload)
        return await self._with_retries(lambda: self._once(method, url, body, fields, upload))

    async def _once(self, method: str, url: str, body: Any, fields: Mapping[str, str] | None,
                    upload: UploadFile | None) -> Any:
        transport, headers = get_transport(), self.headers()
        if upload is not None:
            exchange = transport.upload(url, headers, fields or {}, upload, self.timeouts)
        elif method == "GET":
            exchange = transport.get(url, headers, self.timeouts)
        else:
            exchange = transport.post(url, {**headers, "content-type": "application/json"}, body or {}, self.timeouts)
        async with self._mapped_errors():
            async with exchange as response:
                if response.status != 200:
                    raise await self._status_error(response)
                raw = await response.aread()
        try:
            return json.loads(raw)
        except ValueError:
            raise APIConnectionError(f"{url} answered something that is not JSON; check base_url.") from None

    async def json_lines(self, url: str) -> AsyncIterator[dict[str, Any]]:
        """GET a JSONL file and yield its lines parsed, streaming; a broken download resumes after the
        lines already yielded."""
        delivered, errors = 0, 0
        while True:
            seen = 0
            try:
                async with self._mapped_errors():
                    async with get_transport().get(url, self.headers(), self.timeouts) as response:
                        if response.status != 200:
                            raise await self._status_error(response)
                        async for line in _split_lines(response.aiter_bytes()):
                            seen += 1
                            if seen > delivered:
                                delivered = seen
                                yield json.loads(line)
                return
            except NbllmError as error:
                delay = self._retry_delay(error, errors)
                if delay is None:
                    raise
                errors += 1
                await asyncio.sleep(delay)

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        errors = 0
        while True:
            try:
                return await attempt()
            except NbllmError as error:
                delay = self._retry_delay(error, errors)
                if delay is None:
                    raise
                errors += 1
                await asyncio.sleep(delay)

    def _retry_delay(self, error: NbllmError, errors: int) -> float | None:
        if not error.retryable:
            return None
        return backoff_delay(errors, self.retry, getattr(error, "retry_after", None), random.random())

    def _mapped_errors(self) -> Any:
        return _TransportErrors(self.timeouts)

    async def _status_error(self, response: Any) -> ProviderError:
        text = (await response.aread()).decode("utf-8", "replace")
        error = self.provider.error_from_response(response.status, text, parse_retry_after(response.headers, time.time()))
        error.retryable = is_retryable_status(response.status, response.headers)
        error.key_alias = self.key.alias
        return error


def connect(wire_format: str, base_url: str | None, key: ApiKey, auth_header: str = "bearer",
            timeouts: Timeouts | None = None, retry: RetryPolicy | None = None) -> Connection:
    """The connection for ``key`` at ``base_url`` (None: the provider's public API) in ``wire_format``."""
    provider = make_provider(wire_format, base_url, auth_header)
    return Connection(provider, key, timeouts or Timeouts(), retry or RetryPolicy())


class _TransportErrors:
    """Turns the transport's failures into the errors an online call raises (and bounds the total time)."""

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self._deadline: Any = None

    async def __aenter__(self) -> None:
        self._deadline = asyncio.timeout(self.timeouts.total)
        await self._deadline.__aenter__()

    async def __aexit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        try:
            await self._deadline.__aexit__(kind, error, tb)
        except TimeoutError:
            raise RequestTimeoutError(
                f"No complete answer within {self.timeouts.total:g}s; raise timeouts.total.", kind="overall"
            ) from None
        if isinstance(error, TransportTimeout):
            raise RequestTimeoutError(f"The batch API did not answer in time ({error.kind} timeout).",
                                      kind=error.kind) from None
        if isinstance(error, TransportBroken):
            raise APIConnectionError(
                f"Could not reach the batch API ({redact(str(error))[:200]}). Check base_url and the network."
            ) from None
        return False


async def _split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Non-empty lines of a byte stream, split on LF (JSON text never holds a raw newline)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > _MAX_LINE:
            raise APIConnectionError("A result line exceeded 64 MB; the server is not sending JSON Lines.")
        for line in lines:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
