"""The simulator's uploaded files and batches, in memory for as long as it runs, with counts for tests.

Routes run on the server's event loop while `Simulator.batch_stats()` comes from other
threads, so every access goes through one lock. Files and batches belong to the key that
created them (another key gets 404, as another organisation would).
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ._batches import Batch

__all__ = ["BatchStore", "StoredFile", "new_id"]


def new_id(prefix: str, length: int = 24) -> str:
    """Return ``prefix`` plus random hex: ``batch_…``, ``file-…``, ``msgbatch_…``."""
    return prefix + secrets.token_hex(length // 2)


@dataclass
class StoredFile:
    """An uploaded file, or a batch's output / error file whose bytes are built on first read."""

    id: str
    owner: str
    filename: str
    purpose: str
    created_wall: float
    data: bytes | None = None
    batch_id: str | None = None
    errors: bool = False
    """For a batch result file: True for the error file, False for the output file."""


class BatchStore:
    """Thread-safe registry of files and batches by id, plus what was created, for `Simulator.batch_stats()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._batches: dict[str, Batch] = {}  # in creation order
        self._counts: Counter[str] = Counter()
        self._by_key: Counter[str] = Counter()

    def add_file(self, record: StoredFile, uploaded: bool = True) -> StoredFile:
        """Keep a file; count it when a client uploaded it."""
        with self._lock:
            self._files[record.id] = record
            if uploaded:
                self._counts["files_uploaded"] += 1
            return record

    def file(self, owner: str, file_id: str) -> StoredFile | None:
        """Return the owner's file with that id, or None."""
        with self._lock:
            record = self._files.get(file_id)
            return record if record is not None and record.owner == owner else None

    def files(self, owner: str) -> list[StoredFile]:
        """Return the owner's files, newest first."""
        with self._lock:
            return [f for f in reversed(self._files.values()) if f.owner == owner]

    def delete_file(self, owner: str, file_id: str) -> bool:
        """Delete the owner's file; False when there is none."""
        with self._lock:
            record = self._files.get(file_id)
            if record is None or record.owner != owner:
                return False
            del self._files[file_id]
            return True

    def add_batch(self, batch: Batch, key_name: str) -> Batch:
        """Keep a new batch and count it (per provider and per key name)."""
        with self._lock:
            self._batches[batch.id] = batch
            self._counts["batches_created"] += 1
            self._counts[f"{batch.provider}_batches"] += 1
            self._counts["batch_lines"] += len(batch.lines)
            self._by_key[key_name] += 1
            return batch

    def batch(self, owner: str, batch_id: str, provider: str) -> Batch | None:
        """Return the owner's batch of that provider, or None."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.owner != owner or batch.provider != provider:
                return None
            return batch

    def batches(self, owner: str, provider: str) -> list[Batch]:
        """Return the owner's batches of one provider, newest first (as both list endpoints order them)."""
        with self._lock:
            return [b for b in reversed(self._batches.values()) if b.owner == owner and b.provider == provider]

    def cancel(self, batch: Batch, now: float) -> None:
        """Record a cancel request at clock reading ``now`` (the first one counts)."""
        with self._lock:
            if batch.cancel_at is None:
                batch.cancel_at = now
                self._counts["batches_cancelled"] += 1

    def delete_batch(self, batch_id: str) -> None:
        """Forget a batch (Anthropic ``DELETE``)."""
        with self._lock:
            self._batches.pop(batch_id, None)
            self._counts["batches_deleted"] += 1

    def publish_results(self, batch: Batch) -> None:
        """Register an ended OpenAI batch's output and error files (bytes built on first read); idempotent."""
        with self._lock:
            for key, errors in (("output_file_id", False), ("error_file_id", True)):
                file_id = batch.extra[key]
                if file_id not in self._files:
                    name = f"batch_{batch.id}_{'error' if errors else 'output'}.jsonl"
                    self._files[file_id] = StoredFile(
                        file_id, batch.owner, name, "batch_output", batch.created_wall, None, batch.id, errors
                    )

    def stats(self) -> dict[str, Any]:
        """Return counts: batches_created (also per provider and per key), batch_lines, files_uploaded,
        batches_cancelled, batches_deleted."""
        with self._lock:
            out: dict[str, Any] = {
                name: self._counts[name]
                for name in (
                    "batches_created", "openai_batches", "anthropic_batches", "batch_lines",
                    "files_uploaded", "batches_cancelled", "batches_deleted",
                )
            }
            out["by_key"] = dict(sorted(self._by_key.items()))
            return out
