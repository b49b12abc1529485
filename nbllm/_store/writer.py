"""A writer thread that commits store rows in groups, off the engine loop.

Committing one SQLite transaction per answer cost ~50 µs of the engine loop's time per answer (the WAL
write), which the scale benchmark measured at 12 % of a 10 000-prompt batch. Here the loop only hands
the finished item to a queue; this thread writes whatever has queued up since its last write in one
transaction, so a busy batch commits many answers at once (each within ~30 ms) and a quiet one still
commits each answer within a few milliseconds of its arrival. ``flush()`` waits until everything handed
over is committed, and the writer then writes at once.

Items are written in the order they were handed over, so a count of items handed over so far
(``submitted``) is a ticket: ``when_written(ticket, callback)`` calls back once everything up to it is
written. A batch waits on its own ticket, not for the writer to go idle — with ten batches finishing
together, waiting for idle waited for all of them, each in a thread of its own.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["GroupWriter"]

# The most items one transaction takes; keeps a single commit short while a batch floods the queue.
MAX_GROUP = 2000
# After the first item arrives, the writer waits this long for others to join its transaction: one commit
# for many answers, and no thread hand-off per answer. It bounds how long an answer waits for its commit.
GATHER_SECONDS = 0.005
# ... and this long while a batch floods it (the last group had BUSY_GROUP items or more): a row costs
# ~35 µs of CPU in groups of 10 and ~25 µs in groups of 100 (commits and index pages are shared), measured
# by the client-overhead benchmark's store; an answer still reaches the disk within ~30 ms.
BUSY_GATHER_SECONDS = 0.025
BUSY_GROUP = 8


class GroupWriter:
    """``submit(item)`` from any thread; a daemon thread calls ``write(items)`` with what queued up."""

    def __init__(self, write: Callable[[list[Any]], None], name: str = "nbllm-store") -> None:
        self._write = write
        self._cond = threading.Condition(threading.Lock())  # never taken twice: a plain lock is cheaper
        # items handed over and not yet written, oldest first
        self._pending: list[Any] = []
        self._writing = 0  # items of the group being written now
        self._last_group = 0  # items of the last group written: a big one means a busy batch
        self._flushers = 0  # threads waiting in flush(): the writer then writes at once, without gathering
        self.submitted = 0  # items handed over so far (the ticket of the last one)
        self._written = 0  # items written so far (or given up on, row by row: see ``write``)
        self._watchers: list[tuple[int, Callable[[], Any]]] = []  # (ticket, callback) not written yet
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the store is closed")
            self._pending.append(item)
            self.submitted += 1
            if len(self._pending) == 1:  # the writer sleeps only when nothing is pending
                self._cond.notify_all()

    def pending(self) -> int:
        """Items handed over and not yet written (waiting, or in the group being written)."""
        with self._cond:
            return len(self._pending) + self._writing

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted item is written; False if ``timeout`` passed first."""
        if threading.current_thread() is self._thread:
            return True
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._pending and not self._writing, timeout)
            finally:
                self._flushers -= 1

    def when_written(self, ticket: int, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` (on the writer thread, or here if already so) once the items up to
        ``ticket`` are written; the writer writes at once rather than gathering more."""
        with self._cond:
            if self._written < ticket:
                self._watchers.append((ticket, callback))
                self._cond.notify_all()
                return
        callback()

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is pending, then stop the thread (idempotent)."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _take(self) -> list[Any] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closed)
            if not self._pending:
                return None
            gather = BUSY_GATHER_SECONDS if self._last_group >= BUSY_GROUP else GATHER_SECONDS
            # gather others into this transaction, unless someone waits for the writes (flush, close)
            self._cond.wait_for(lambda: self._closed or self._flushers > 0 or bool(self._watchers), gather)
            group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            self._writing = self._last_group = len(group)
            return group

    def _run(self) -> None:
        while (group := self._take()) is not None:
            try:
                self._write(group)
            except Exception as error:  # noqa: BLE001 - ``write`` handles what it can; the rest is said
                print(f"nbllm: could not write {len(group)} answers to the store: {error}", file=sys.stderr)
            finally:
                self._written_group(len(group))

    def _written_group(self, size: int) -> None:
        with self._cond:
            self._writing = 0
            self._written += size
            due = [callback for ticket, callback in self._watchers if ticket <= self._written]
            if due:
                self._watchers = [(t, c) for t, c in self._watchers if t > self._written]
            self._cond.notify_all()
        for callback in due:
            callback()
