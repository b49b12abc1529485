"""What every transport shares: the timeouts a call sets, a file to upload, the two failures a transport
raises, and the shape of a response (``http.py`` says which transports there are)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from .._exceptions import ConfigurationError

__all__ = ["HttpResponse", "Timeouts", "TransportBroken", "TransportTimeout", "UploadFile"]


@dataclass(frozen=True)
class Timeouts:
    """``connect``: to open a connection; ``idle``: the longest silence between two chunks of an answer;
    ``total``: the whole call, retries excluded (None: no limit)."""

    connect: float = 10.0
    idle: float = 120.0
    total: float | None = 600.0

    def __post_init__(self) -> None:
        for name in ("connect", "idle", "total"):
            value = getattr(self, name)
            if value is None and name == "total":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                limit = " or None for no limit" if name == "total" else ""
                raise ConfigurationError(f"Timeouts.{name} must be a positive number of seconds{limit}, got {value!r}.")


@dataclass(frozen=True)
class UploadFile:
    """The file part of a multipart upload: form field name, file name, bytes and media type."""

    field: str
    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


class TransportTimeout(Exception):
    """Connect or idle timeout inside the transport (mapped to RequestTimeoutError by the client)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind


class TransportBroken(Exception):
    """The connection could not be made or broke (mapped by the client)."""


class HttpResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes: ...
