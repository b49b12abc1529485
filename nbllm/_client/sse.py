"""Server-sent events: the one place that turns a streamed response into events.

```python
async for event in aiter_sse(response):  # check response.status_code first
    if event.data == "[DONE]":
        break
```

Why not ``httpx2.EventSource``: the plan was a thin shell over it, but ``tests/test_sse.py`` runs our
table of spec cases through it as well (``test_httpx2_eventsource_spec_gaps``, httpx2 2.16.2) and it
gets these wrong:

- a UTF-8 BOM at the start of the stream is kept, so the first field reads ``\\ufeffdata`` and the
  first event is silently lost (the spec says to skip one leading BOM);
- a stream ending in a lone CR (``data: x\\r`` then EOF) dispatches an event that has no blank line
  after it; the spec discards it (and httpx2 does, after a lone LF);
- ``retry:`` values like ``+5`` or ``1_000`` are accepted (``int()``); the spec wants ASCII digits only;
- an event with no ``data:`` line (``event: ping\\n\\n``) is dispatched; the spec dispatches nothing.

It also holds back an event terminated by CR until the next chunk arrives, to see whether an LF
follows (``test_event_ended_by_cr_is_not_held_back``). That is only latency, but a decoder can end
the line at the CR and skip one LF at the start of the next chunk instead. Both tests mark these
cases ``xfail(strict=True)`` for httpx2, so they start failing once httpx2 fixes them.

So ``SSEDecoder`` below follows the WHATWG "event stream interpretation" on bytes: lines end at
CR, LF or CRLF only (a CRLF may be split across chunks), so U+2028, U+0085, VT, FF and the like inside
JSON never split a line; a line is decoded as UTF-8 only once complete, so multi-byte characters may
be split anywhere. Like httpx2 it caps one event at 1 MiB (``SSEError``), so a server that never
ends a line cannot fill memory. ``ServerSentEvent`` and ``SSEError`` are defined here, with the same
fields and meaning as httpx2's, so that ``import nbllm`` does not need httpx2 at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .headers import media_type

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "SSEError", "ServerSentEvent", "aiter_sse"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its type (``"message"`` unless an ``event:`` field said otherwise), its
    ``data:`` lines joined by newlines, the last event id, and the ``retry:`` value it carried, if any."""

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.data)


class SSEError(ValueError):
    """The response is not an event stream, or one event outgrew the size cap."""


class EventStreamResponse(Protocol):
    """What ``aiter_sse`` reads: nbllm's transport responses, or an httpx2 response."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")
DEFAULT_MAX_EVENT_SIZE = 1024 * 1024  # the same bound httpx2.EventSource uses


class SSEDecoder:
    """Incremental, byte-level SSE decoder: ``feed(chunk) -> events``, then ``close()``.

    ``close()`` always returns an empty list: an event without its terminating blank line is
    incomplete and the spec discards it. It exists so that a caller never has to know that.
    """

    __slots__ = (
        "_buffer",
        "_data",
        "_event",
        "_event_size",
        "_last_id",
        "_max_event_size",
        "_retry",
        "_skip_lf",
        "_started",
    )

    def __init__(self, max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._max_event_size = max_event_size
        self._reset()

    def _reset(self) -> None:
        self._buffer = b""  # bytes of the line that has not ended yet
        self._skip_lf = False  # the last chunk ended in CR: an LF at the next start is its CRLF half
        self._started = False  # the leading BOM (if any) has been dealt with
        self._data: list[str] = []  # data lines of the event being built
        self._event_size = 0  # bytes of the field lines of the event being built
        self._event = ""
        self._last_id = ""  # persists across events, as the spec's "last event ID" does
        self._retry: int | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Decode the next chunk of the stream; returns the events it completed."""
        if self._skip_lf and data:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        if b"\r" not in data and b"\n" not in data:
            self._buffer += data  # fast path: the middle of a long line
            self._check_size()
            return []
        lines = _LINE_END.split(self._buffer + data)
        self._buffer = lines.pop()
        # split() leaves b"" after a final CR: remember to drop the LF that may start the next chunk.
        self._skip_lf = data.endswith(b"\r")
        events = []
        for line in lines:
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        self._check_size()
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: drop the unfinished line and event, and reset for reuse."""
        self._reset()
        return []

    def _process_line(self, raw: bytes) -> ServerSentEvent | None:
        if not self._started:
            self._started = True
            raw = raw.removeprefix(_BOM)
        line = raw.decode("utf-8", errors="replace")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment, e.g. OpenRouter's ": OPENROUTER PROCESSING"
        self._event_size += len(raw)
        self._check_size()
        name, _, value = line.partition(":")
        self._set_field(name, value.removeprefix(" "))
        return None

    def _check_size(self) -> None:
        limit = self._max_event_size
        if limit is not None and self._event_size + len(self._buffer) > limit:
            raise SSEError(f"Server-sent event exceeded the {limit} byte limit.")

    def _set_field(self, name: str, value: str) -> None:
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if _DIGITS.fullmatch(value):
                self._retry = int(value)
        # any other field name is ignored, as the spec requires

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._event_size = [], "", 0
        if not data:
            return None  # a block without data lines is not an event; keep retry for the next one
        self._retry = None
        return ServerSentEvent(
            event=event or "message", data="\n".join(data), id=self._last_id, retry=retry
        )


def _check_content_type(response: EventStreamResponse) -> None:
    content_type = media_type(response.headers)
    if content_type != "text/event-stream":
        raise SSEError(f"Expected response with content type 'text/event-stream', got {content_type!r}.")


async def aiter_sse(
    response: EventStreamResponse, *, max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE
) -> AsyncIterator[ServerSentEvent]:
    """Yield the events of a streamed ``text/event-stream`` response.

    Raises ``SSEError`` if the content type is not ``text/event-stream``. The caller checks the status
    first: error responses are JSON bodies, not event streams.
    """
    _check_content_type(response)
    decoder = SSEDecoder(max_event_size)
    async for chunk in response.aiter_bytes():
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
