"""A provider's batch object read into one shape for both providers. Pure: no I/O.

```python
state = read_status("openai", batch_object, requests=5_000)
state.status, state.ended      # "in_progress", False
state.counts                   # Counts(validating=0, in_progress=3_200, completed=1_790, failed=10)
```

The four counts are what the progress bar shows for either provider. OpenAI reports ``total`` /
``completed`` / ``failed`` (``total`` is 0 while validating); Anthropic reports ``processing`` /
``succeeded`` / ``errored`` / ``canceled`` / ``expired``, the last four only once the batch has ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["BatchState", "Counts", "parse_created", "read_status", "sum_counts"]

# OpenAI: validating → in_progress → finalizing → completed, or failed / expired / cancelling → cancelled
_OPENAI_ENDED = {"completed", "failed", "expired", "cancelled"}


@dataclass(frozen=True)
class Counts:
    """Requests of a batch by stage, the same four for both providers."""

    validating: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0

    @property
    def processed(self) -> int:
        """Requests the provider has finished (answered or failed)."""
        return self.completed + self.failed

    def as_dict(self) -> dict[str, int]:
        return {"validating": self.validating, "in_progress": self.in_progress,
                "completed": self.completed, "failed": self.failed}


def sum_counts(counts: Iterable[Counts]) -> Counts:
    """The counts of several batches together."""
    total = Counts()
    for c in counts:
        total = Counts(total.validating + c.validating, total.in_progress + c.in_progress,
                       total.completed + c.completed, total.failed + c.failed)
    return total


@dataclass(frozen=True)
class BatchState:
    """A batch as last seen: the provider's status word, whether it has ended, counts, result locations."""

    status: str
    ended: bool
    counts: Counts
    output_file_id: str | None = None
    error_file_id: str | None = None
    results_url: str | None = None
    problems: str = ""  # why a batch failed as a whole (OpenAI validation errors)


def read_status(wire_format: str, obj: Mapping[str, Any], requests: int) -> BatchState:
    """The state of an OpenAI ``batch`` or Anthropic ``message_batch`` object holding ``requests`` requests."""
    if wire_format == "anthropic":
        return _anthropic(obj, requests)
    return _openai(obj, requests)


def _openai(obj: Mapping[str, Any], requests: int) -> BatchState:
    status = str(obj.get("status") or "validating")
    raw = obj.get("request_counts") or {}
    completed, failed = int(raw.get("completed") or 0), int(raw.get("failed") or 0)
    total = int(raw.get("total") or 0) or requests
    if status == "validating":
        counts = Counts(validating=total)
    else:
        counts = Counts(in_progress=max(total - completed - failed, 0), completed=completed, failed=failed)
    errors = (obj.get("errors") or {}).get("data") or []
    problems = "; ".join(_problem_text(e) for e in errors[:5] if isinstance(e, Mapping))
    return BatchState(status, status in _OPENAI_ENDED, counts, obj.get("output_file_id"),
                      obj.get("error_file_id"), problems=problems)


def _problem_text(error: Mapping[str, Any]) -> str:
    line = f" (line {error['line']})" if error.get("line") else ""
    return f"{error.get('code') or 'error'}: {error.get('message') or ''}{line}"


def _anthropic(obj: Mapping[str, Any], requests: int) -> BatchState:
    status = str(obj.get("processing_status") or "in_progress")
    raw = obj.get("request_counts") or {}
    processing = int(raw.get("processing") or 0)
    succeeded = int(raw.get("succeeded") or 0)
    failed = sum(int(raw.get(k) or 0) for k in ("errored", "canceled", "expired"))
    if status != "ended" and not (processing or succeeded or failed):
        processing = requests
    counts = Counts(in_progress=processing, completed=succeeded, failed=failed)
    return BatchState(status, status == "ended", counts, results_url=obj.get("results_url"))


def parse_created(value: Any) -> float | None:
    """A batch's ``created_at`` as Unix seconds: OpenAI sends seconds, Anthropic an RFC 3339 string."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
