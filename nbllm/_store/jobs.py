"""The job record of provider batches, in the store's SQLite file: what was sent, where, with which key.

```python
jobs = store.provider_jobs
[part] = jobs.plan("job-1", [PartPlan("openai", base_url, "default", "gpt-4o-mini", "key-1", fingerprints)])
# ... only now is anything sent ...
jobs.submitted(part.id, "batch_abc", input_file_id="file-xyz")
jobs.seen(part.id, "in_progress", {"completed": 10, ...})
jobs.open_parts_with(fingerprints)     # after a restart: the batches still holding these prompts
jobs.collected(part.id)                # its answers are in the results table: nothing left to wait for
```

A job is one ``amap(..., mode="batch")`` call; a part is one provider batch of it (a job over the
providers' limits has several). Parts are written, with the fingerprint of every prompt they hold,
*before* the first byte is sent, and committed at once (not through the group writer): a crash at any
point leaves a record that a rerun finds, so a batch is never paid twice. Only the key's alias is kept.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JOBS_SCHEMA", "PartPlan", "PartRecord", "ProviderJobs"]

JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS provider_batches (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    part INTEGER NOT NULL,
    created_at REAL NOT NULL,
    wire_format TEXT NOT NULL,
    base_url TEXT,
    endpoint TEXT,
    model TEXT,
    key_alias TEXT NOT NULL,
    requests INTEGER NOT NULL,
    batch_id TEXT,
    input_file_id TEXT,
    status TEXT NOT NULL,
    counts_json TEXT,
    updated_at REAL,
    closed_at REAL
);
CREATE INDEX IF NOT EXISTS provider_batches_batch_id ON provider_batches (batch_id);
CREATE TABLE IF NOT EXISTS provider_batch_items (
    part_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS provider_batch_items_fingerprint ON provider_batch_items (fingerprint, part_id);
CREATE INDEX IF NOT EXISTS provider_batch_items_part ON provider_batch_items (part_id);
"""

# status words nbllm itself writes (the provider's own words are stored as they come)
SUBMITTING = "submitting"  # recorded, create not yet answered
COLLECTED = "collected"    # answers are in the results table
GONE = "gone"              # the server no longer knows the batch
FORGOTTEN = "forgotten"    # the user let it go (its key is gone, say)
_CLOSED = (COLLECTED, GONE, FORGOTTEN)
_COLUMNS = ("id, job, part, created_at, wire_format, base_url, endpoint, model, key_alias, requests, "
            "batch_id, input_file_id, status, counts_json, updated_at, closed_at")
_CHUNK = 900  # host parameters per query, far below every SQLite build's limit


@dataclass(frozen=True)
class PartPlan:
    """A provider batch about to be created: where it goes, with which key alias, holding which prompts."""

    wire_format: str
    base_url: str
    endpoint: str
    model: str
    key_alias: str
    fingerprints: Sequence[str]


@dataclass(frozen=True)
class PartRecord:
    """One provider batch as recorded."""

    id: int
    job: str
    part: int
    created_at: float
    wire_format: str
    base_url: str | None
    endpoint: str | None
    model: str | None
    key_alias: str
    requests: int
    batch_id: str | None
    input_file_id: str | None
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    updated_at: float | None = None
    closed_at: float | None = None

    @property
    def open(self) -> bool:
        """Still to be waited for: not collected, gone or forgotten."""
        return self.closed_at is None


def _record(row: Sequence[Any]) -> PartRecord:
    values = list(row)
    values[13] = json.loads(values[13]) if values[13] else {}
    return PartRecord(*values)


class ProviderJobs:
    """The job record (see module docstring). ``connect`` yields the store's connection under its lock."""

    def __init__(self, connect: Callable[[], AbstractContextManager[sqlite3.Connection]]) -> None:
        self._connect = connect

    def plan(self, job: str, parts: Sequence[PartPlan]) -> list[PartRecord]:
        """Record a job's parts and their prompts in one committed transaction; returns the records."""
        now = time.time()
        ids = []
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for number, plan in enumerate(parts):
                    cursor = conn.execute(
                        "INSERT INTO provider_batches (job, part, created_at, wire_format, base_url, endpoint, model, "
                        "key_alias, requests, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (job, number, now, plan.wire_format, plan.base_url, plan.endpoint, plan.model,
                         plan.key_alias, len(plan.fingerprints), SUBMITTING, now),
                    )
                    ids.append(cursor.lastrowid)
                    conn.executemany("INSERT INTO provider_batch_items (part_id, fingerprint) VALUES (?, ?)",
                                     ((cursor.lastrowid, fp) for fp in plan.fingerprints))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return [self.get(i) for i in ids]  # type: ignore[misc]

    def _update(self, part_id: int, **values: Any) -> None:
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._connect() as conn:
            conn.execute(f"UPDATE provider_batches SET {assignments} WHERE id = ?", (*values.values(), part_id))

    def submitted(self, part_id: int, batch_id: str, *, status: str, input_file_id: str | None = None) -> None:
        """The provider created the batch: remember its id (and the input file's)."""
        self._update(part_id, batch_id=batch_id, input_file_id=input_file_id, status=status)

    def seen(self, part_id: int, status: str, counts: dict[str, int]) -> None:
        """What the last poll said."""
        self._update(part_id, status=status, counts_json=json.dumps(counts))

    def collected(self, part_id: int) -> None:
        """Every result of the batch is in the results table."""
        self._update(part_id, closed_at=time.time(), status=COLLECTED)

    def gone(self, part_id: int) -> None:
        """The server does not know the batch (any more): its prompts must be sent again."""
        self._update(part_id, closed_at=time.time(), status=GONE)

    def forget(self, part_id: int) -> None:
        """Stop waiting for this batch (a rerun sends its prompts again)."""
        self._update(part_id, closed_at=time.time(), status=FORGOTTEN)

    def get(self, part_id: int) -> PartRecord | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM provider_batches WHERE id = ?", (part_id,)).fetchone()
        return _record(row) if row else None

    def find(self, batch_id: str) -> PartRecord | None:
        """The newest record of the provider batch ``batch_id``."""
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM provider_batches WHERE batch_id = ? ORDER BY id DESC LIMIT 1",
                               (batch_id,)).fetchone()
        return _record(row) if row else None

    def parts(self) -> list[PartRecord]:
        """Every recorded provider batch, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM provider_batches ORDER BY id").fetchall()
        return [_record(row) for row in rows]

    def fingerprints(self, part_id: int) -> list[str]:
        """The prompts a provider batch holds, in the order they were recorded."""
        with self._connect() as conn:
            rows = conn.execute("SELECT fingerprint FROM provider_batch_items WHERE part_id = ? ORDER BY rowid",
                                (part_id,)).fetchall()
        return [row[0] for row in rows]

    def open_parts_with(self, fingerprints: Iterable[str]) -> dict[int, list[str]]:
        """{part id: the given fingerprints it holds} over open parts; a fingerprint held by several open
        parts is given to the newest."""
        wanted = list(dict.fromkeys(fingerprints))
        owner: dict[str, int] = {}
        with self._connect() as conn:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start:start + _CHUNK]
                rows = conn.execute(
                    "SELECT i.fingerprint, i.part_id FROM provider_batch_items i JOIN provider_batches b "
                    f"ON b.id = i.part_id WHERE b.closed_at IS NULL AND i.fingerprint IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for fingerprint, part_id in rows:
                    owner[fingerprint] = max(part_id, owner.get(fingerprint, part_id))
        held: dict[int, list[str]] = {}
        for fingerprint, part_id in owner.items():
            held.setdefault(part_id, []).append(fingerprint)
        return held
