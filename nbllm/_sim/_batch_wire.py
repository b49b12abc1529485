"""Batch objects as providers send them: OpenAI ``batch`` and ``file``, Anthropic ``message_batch``, pages. Pure.

Timestamps: a batch's events happen at clock readings; they are reported as wall time
``created_wall + (event - created)``, Unix seconds for OpenAI and RFC 3339 for Anthropic.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar

from ._batches import DAY, Batch, View

__all__ = ["anthropic_batch_object", "file_object", "openai_batch_object", "page", "rfc3339"]

T = TypeVar("T")

_OPENAI_EVENTS = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")


def rfc3339(wall: float) -> str:
    """Return a Unix time as Anthropic writes it: ``2026-01-02T03:04:05.678901Z``."""
    return datetime.fromtimestamp(wall, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wall(batch: Batch, clock: float) -> float:
    """Return the wall time of a clock reading on this batch's timeline."""
    return batch.created_wall + (clock - batch.created)


def _expires_wall(batch: Batch) -> float:
    """Return when the batch expires: its deadline, or 24 hours after creation."""
    return _wall(batch, batch.deadline) if batch.deadline is not None else batch.created_wall + DAY


def openai_batch_object(batch: Batch, seen: View) -> dict[str, Any]:
    """Return the OpenAI ``batch`` object for ``batch`` as it is at ``seen``."""
    total = 0 if seen.status in ("validating", "failed") else len(batch.lines)
    obj: dict[str, Any] = {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.extra["endpoint"],
        "model": batch.extra.get("model"),
        "errors": {"object": "list", "data": batch.errors} if batch.errors and seen.status == "failed" else None,
        "input_file_id": batch.extra["input_file_id"],
        "completion_window": batch.extra["completion_window"],
        "status": seen.status,
        "output_file_id": None,
        "error_file_id": None,
        "created_at": int(batch.created_wall),
        "expires_at": int(_expires_wall(batch)),
        "request_counts": {"total": total, "completed": seen.succeeded, "failed": seen.errored},
        "metadata": batch.extra.get("metadata"),
        "usage": None,
    }
    for event in _OPENAI_EVENTS:
        obj[f"{event}_at"] = int(_wall(batch, seen.times[event])) if event in seen.times else None
    if seen.ended and seen.status != "failed":
        if seen.succeeded:
            obj["output_file_id"] = batch.extra["output_file_id"]
        if seen.errored or seen.unfinished:
            obj["error_file_id"] = batch.extra["error_file_id"]
    return obj


def anthropic_batch_object(batch: Batch, seen: View, base_url: str) -> dict[str, Any]:
    """Return the Anthropic ``message_batch`` object; counts other than ``processing`` stay 0 until it ends."""
    counts = {"processing": len(batch.lines), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    status = "canceling" if seen.status == "cancelling" else "in_progress"
    ended_at = results_url = None
    if seen.ended:
        status = "ended"
        unfinished_as = "expired" if seen.status == "expired" else "canceled"
        counts = {"processing": 0, "succeeded": seen.succeeded, "errored": seen.errored, "canceled": 0, "expired": 0}
        counts[unfinished_as] = seen.unfinished
        end = next(seen.times[e] for e in ("completed", "cancelled", "expired") if e in seen.times)
        ended_at = rfc3339(_wall(batch, end))
        results_url = f"{base_url}/v1/messages/batches/{batch.id}/results"
    cancel = seen.times.get("cancelling")
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "ended_at": ended_at,
        "created_at": rfc3339(batch.created_wall),
        "expires_at": rfc3339(_expires_wall(batch)),
        "archived_at": None,
        "cancel_initiated_at": rfc3339(_wall(batch, cancel)) if cancel is not None else None,
        "results_url": results_url,
    }


def file_object(file_id: str, size: int, created_wall: float, filename: str, purpose: str) -> dict[str, Any]:
    """Return an OpenAI ``file`` object; batch files expire after 30 days, as OpenAI's do by default."""
    expires = int(created_wall + 30 * DAY) if purpose.startswith("batch") else None
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(created_wall),
        "expires_at": expires,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
    }


def page(
    items: Sequence[T], ident: Callable[[T], str], limit: int, after: str | None = None, before: str | None = None
) -> tuple[list[T], bool]:
    """Return one page of ``items`` (newest first) after / before the item with that id, and whether more follow.

    An unknown cursor (say, a batch deleted between two pages) gives an empty last page,
    so a client paging through never loops back to the start.
    """
    ids = [ident(item) for item in items]
    cursor = before if before is not None else after
    if cursor is not None and cursor not in ids:
        return [], False
    if before is not None:
        end = ids.index(before)
        return list(items[max(0, end - limit) : end]), end - limit > 0
    start = ids.index(after) + 1 if after is not None else 0
    return list(items[start : start + limit]), start + limit < len(items)
