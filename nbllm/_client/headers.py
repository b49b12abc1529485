"""Small helpers for HTTP headers, shared by the parts of the client that read them. Pure."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["lowercase_names", "media_type"]


def lowercase_names(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with lower-case names: HTTP names are case-insensitive, plain dicts (tests, other
    clients) are not."""
    return {name.lower(): value for name, value in headers.items()}


def media_type(headers: Mapping[str, str]) -> str:
    """``"Text/Event-Stream; charset=utf-8"`` -> ``"text/event-stream"`` (``""`` when absent)."""
    return headers.get("content-type", "").partition(";")[0].strip().lower()
