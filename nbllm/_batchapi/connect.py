"""A ``Connection`` for one key at one server, as both a running job and ``cancel`` need one."""

from __future__ import annotations

from .._client import RetryPolicy, Timeouts, make_provider
from .._keys import ApiKey
from .http import Connection

__all__ = ["connect"]


def connect(wire_format: str, base_url: str | None, key: ApiKey, auth_header: str = "bearer",
            timeouts: Timeouts | None = None, retry: RetryPolicy | None = None) -> Connection:
    """The connection for ``key`` at ``base_url`` (None: the provider's public API) in ``wire_format``."""
    provider = make_provider(wire_format, base_url, auth_header)
    return Connection(provider, key, timeouts or Timeouts(), retry or RetryPolicy())
