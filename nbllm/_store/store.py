"""The SQLite store: every finished answer (and every failure) is written as it arrives.

```python
with Store() as store:                      # ~/.cache/nbllm/store.sqlite3, or $NBLLM_STORE
    fp = request_fingerprint(request)
    store.record(fp, request, response, batch="b-1", index=0)
    store.lookup(fp)                        # -> Response(cached=True), or None
    store.to_dataframe(batch="b-1")
```

One row per attempt that finished, committed within milliseconds, so a crash or ``kill -9`` loses
(almost) nothing that was answered; a rerun looks the fingerprints up and sends only what is missing.
WAL mode lets several kernels share the file. Keys are never written: every text that came from outside
goes through ``redact()`` first, in case a provider echoed a key back.

Writes never fail silently: a lock held by another process is waited out (never dropped), and a row
that cannot be written (a value SQLite refuses) costs only itself — a row saying why takes its place and
``store.unstored(batch)`` counts it, so a batch can say which answers a rerun will send again.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .._exceptions import ConfigurationError
from .._secrets import redact
from .._types import Failure, Response
from .jobs import JOBS_SCHEMA, ProviderJobs
from .rows import (
    COLUMNS,
    HEDGES_COLUMN,
    INSERT,
    RESPONSE_COLUMNS,
    SCHEMA,
    request_fingerprint,
    response_from_row,
    row_dict,
    row_values,
    unstored_row_values,
)
from .writer import GroupWriter

__all__ = ["COLUMNS", "Store", "default_store_path", "request_fingerprint"]

# 2: the provider batch job record (jobs.py); a version-1 file gets the new tables, its rows stay
# 3: results.hedges (requests raced beside an answer); older rows read NULL there
SCHEMA_VERSION = 3
# Another process's write lock is waited out: SQLite's busy timeout first, then these pauses (doubling),
# for as long as it takes; an answer handed to the store is never dropped because the file was busy.
LOCK_RETRY_FIRST = 0.05
LOCK_RETRY_MAX = 1.0
# What inserting a bad value raises (a list as text, an int beyond 64 bits, a lone surrogate…)
_ROW_ERRORS = (sqlite3.Error, ValueError, TypeError, OverflowError)

# SQLite allows 32 766 host parameters since 3.32; stay far below for old builds (limit was 999)
_CHUNK = 900
# rows() pages through the table so no lock or read transaction is held while the caller iterates
_PAGE = 1000


def default_store_path() -> Path:
    """``$NBLLM_STORE``, else ``$XDG_CACHE_HOME/nbllm/store.sqlite3`` (``~/.cache`` by default)."""
    env = os.environ.get("NBLLM_STORE")
    if env:
        path = Path(env).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(cache).expanduser() / "nbllm" / "store.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _is_locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


def _reason(error: BaseException) -> str:
    """Why a row could not be written, safe to write itself (no key, no lone surrogate)."""
    text = redact(f"{type(error).__name__}: {error}")[:300]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _retry_while_locked(statement: Any, attempts: int = 100) -> None:
    """Run ``statement``, waiting out another process that holds the lock.

    Switching a new file to WAL needs an exclusive lock that SQLite's busy timeout does not wait for, so
    two processes opening the same new store at once would otherwise fail with "database is locked".
    """
    for attempt in range(attempts):
        try:
            statement()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class Store:
    """A results file shared by every batch: a durable log of answers that doubles as a cache.

    Thread-safe (one connection behind a lock) and safe across processes (WAL, 30 s busy timeout).
    ``record`` hands the row to a writer thread that commits what has queued up in one transaction
    (``_store_writer``); every read first waits for those writes, so reads see every recorded row.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float = 30.0) -> None:
        self.path: Path | str = ":memory:" if path == ":memory:" else Path(path or default_store_path())
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # per batch (None: single calls): answers handed over that could not be written, and the last reason
        self._unstored: collections.Counter[str | None] = collections.Counter()
        self.last_write_error: str | None = None
        # isolation_level=None: autocommit, so each INSERT is its own committed transaction
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), timeout=busy_timeout, check_same_thread=False, isolation_level=None
        )
        try:
            self._open()
        except sqlite3.DatabaseError as error:  # not a database, damaged, unreadable
            self._conn.close()
            raise ConfigurationError(
                f"The store {self.path} cannot be used: {error}. If the file is damaged or not an nbllm store, "
                "move it away or delete it (its cached answers are lost, nothing else), or set NBLLM_STORE "
                "(or store=) to another file."
            ) from None
        self._writer = GroupWriter(self._write_many)
        self.provider_jobs = ProviderJobs(self._locked)  # provider batches: what was sent, where, with which key
        # rows still queued when the interpreter exits are written before it goes
        atexit.register(self._writer.close)

    def _open(self) -> None:
        assert self._conn is not None
        self._conn.row_factory = sqlite3.Row
        _retry_while_locked(lambda: self._conn.execute("PRAGMA journal_mode=WAL"))
        # WAL + NORMAL: a commit survives a process crash (kill -9); only a power cut can lose the
        # last few, and it saves an fsync per row
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        conn = self._db()
        # IMMEDIATE takes the write lock first, so two processes opening a new file don't race
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"The store {self.path} was written by a newer nbllm (schema {version}, this one "
                    f"knows {SCHEMA_VERSION}). Upgrade nbllm or set NBLLM_STORE to another file."
                )
            if version < SCHEMA_VERSION:
                for statement in (SCHEMA + JOBS_SCHEMA).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                if "hedges" not in {row[1] for row in conn.execute("PRAGMA table_info(results)")}:
                    conn.execute(HEDGES_COLUMN)  # a file made before schema 3
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, held under the lock (the job record commits its own writes, at once)."""
        with self._lock:
            yield self._db()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigurationError(f"The store {self.path} is closed.")
        return self._conn

    def record(
        self,
        fingerprint: str,
        request: Mapping[str, Any],
        response: Response | None = None,
        error: BaseException | None = None,
        *,
        batch: str | None = None,
        index: int | None = None,
    ) -> None:
        """Record one finished attempt (an answer, or an error); committed within milliseconds."""
        if isinstance(response, Failure):  # tolerate a batch result passed as is
            response, error = None, error or response.error
        if response is None and error is None:
            raise ConfigurationError("Store.record needs a response or an error.")
        self._db()  # a closed store refuses at once, not later in the writer
        self._writer.submit((fingerprint, request, response, error, batch, index, time.time()))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every recorded row is committed (reads do this themselves); False if ``timeout``
        passed first (another process holds the write lock: the rows wait, they are not dropped)."""
        return self._writer.flush(timeout)

    def pending(self) -> int:
        """Recorded rows not committed yet."""
        return self._writer.pending()

    @property
    def recorded(self) -> int:
        """How many rows were recorded so far: the ticket of the latest (see ``settled``)."""
        return self._writer.submitted

    async def settled(self, ticket: int, timeout: float | None = None) -> bool:
        """Wait, without blocking the loop, until the rows recorded up to ``ticket`` (a ``recorded``
        count) are committed; False if ``timeout`` passed first (another process holds the write lock)."""
        loop = asyncio.get_running_loop()
        written = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
                loop.call_soon_threadsafe(written.set_result, None)  # called once: only this resolves it

        self._writer.when_written(ticket, wake)
        done, _ = await asyncio.wait({written}, timeout=timeout)
        return bool(done)

    def unstored(self, batch: str | None = None) -> int:
        """How many recorded answers (of ``batch``, or of all) could not be written; each has a row with
        ``ok=0`` and the reason in its place (``last_write_error`` has the latest)."""
        return self._unstored[batch] if batch is not None else sum(self._unstored.values())

    def _write_many(self, items: list[tuple[Any, ...]]) -> None:
        """On the writer thread: one transaction for a group of recorded items; if the group fails, row
        by row, so that a row that cannot be written costs only itself."""
        rows = []
        for item in items:
            try:
                rows.append((item, row_values(*item)))
            except Exception as error:  # noqa: BLE001 - a value that cannot even become a row
                self._write_unstored(item, error)
        try:
            self._insert([values for _, values in rows])
        except _ROW_ERRORS:
            for item, values in rows:
                try:
                    self._insert([values])
                except _ROW_ERRORS as error:
                    self._write_unstored(item, error)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` in one transaction, waiting out another process's lock however long it is held."""
        pause = LOCK_RETRY_FIRST
        while True:
            with self._lock:
                conn = self._db()
                try:
                    conn.execute("BEGIN")
                    conn.executemany(INSERT, rows)
                    conn.execute("COMMIT")
                    return
                except BaseException as error:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if not _is_locked(error):
                        raise
            time.sleep(pause)  # outside the lock: reads and close() are not held up
            pause = min(pause * 2, LOCK_RETRY_MAX)

    def _write_unstored(self, item: tuple[Any, ...], error: BaseException) -> None:
        """Count an answer that could not be written, and write a row saying why in its place."""
        fingerprint, _, _, _, batch, index, created_at = item
        self.last_write_error = _reason(error)
        self._unstored[batch] += 1
        try:
            self._insert([unstored_row_values(fingerprint, batch, index, created_at, self.last_write_error)])
        except _ROW_ERRORS:
            pass  # counted and kept in last_write_error: the batch reports it

    def _select(self, sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        """Run a query under the lock and return plain tuples."""
        self._writer.flush()
        with self._lock:
            cursor = self._db().cursor()
            cursor.row_factory = None
            return cursor.execute(sql, tuple(params)).fetchall()

    def lookup(self, fingerprint: str) -> Response | None:
        """The newest successful answer for ``fingerprint`` (``cached=True``), or ``None``."""
        rows = self._select(
            f"SELECT {RESPONSE_COLUMNS} FROM results WHERE fingerprint = ? AND ok = 1 "
            "ORDER BY id DESC LIMIT 1",
            (fingerprint,),
        )
        return response_from_row(rows[0]) if rows else None

    def lookup_many(self, fingerprints: Iterable[str]) -> dict[str, Response]:
        """``lookup`` for many fingerprints at once; missing ones are absent from the result."""
        wanted = list(dict.fromkeys(fingerprints))
        newest: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            # one query per chunk, each under the lock on its own, so the writer is never stalled long
            rows = self._select(
                f"SELECT {RESPONSE_COLUMNS} FROM results "
                f"WHERE ok = 1 AND fingerprint IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:  # several ok rows per fingerprint: the highest id is the newest
                seen = newest.get(row[1])
                if seen is None or row[0] > seen[0]:
                    newest[row[1]] = row
        return {fp: response_from_row(row) for fp, row in newest.items()}

    def completion_tokens(self, model: str, limit: int = 200) -> list[int]:
        """Completion tokens of the newest ``limit`` answers of ``model``: how long its answers run."""
        rows = self._select("SELECT completion_tokens FROM results WHERE ok = 1 AND model = ? "
                            "AND completion_tokens IS NOT NULL ORDER BY id DESC LIMIT ?", (model, limit))
        return [row[0] for row in rows]

    def batches(self) -> list[dict[str, Any]]:
        """One dict per batch, oldest first: ``batch, created, rows, ok, failed``."""
        self._writer.flush()
        with self._lock:
            rows = self._db().execute(
                "SELECT batch, min(created_at) AS created, count(*) AS rows, sum(ok) AS ok, "
                "count(*) - sum(ok) AS failed FROM results WHERE batch IS NOT NULL "
                "GROUP BY batch ORDER BY min(id)"
            ).fetchall()
        return [dict(zip(row.keys(), row)) for row in rows]

    def rows(self, batch: str | None = None) -> Iterator[dict[str, Any]]:
        """Every row (of one batch, or all) as a dict of ``COLUMNS``, oldest first."""
        self._writer.flush()
        where = "id > ?" + (" AND batch = ?" if batch is not None else "")
        last = 0
        while True:
            params: tuple[Any, ...] = (last, batch) if batch is not None else (last,)
            with self._lock:
                page = self._db().execute(
                    f"SELECT * FROM results WHERE {where} ORDER BY id LIMIT {_PAGE}", params
                ).fetchall()
            yield from (row_dict(row) for row in page)
            if len(page) < _PAGE:
                return
            last = page[-1]["id"]

    def export_jsonl(self, path: str | Path, batch: str | None = None) -> int:
        """Write the rows as JSON Lines (one row per line); returns the number of rows written."""
        count = 0
        with open(path, "w", encoding="utf-8") as out:
            for row in self.rows(batch):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        return count

    def to_dataframe(self, batch: str | None = None) -> Any:
        """The rows as a pandas DataFrame (one column per ``COLUMNS``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigurationError("pandas is not installed: pip install pandas") from None
        return pd.DataFrame(list(self.rows(batch)), columns=list(COLUMNS))

    def clear(self, batch: str | None = None) -> None:
        """Delete the rows of one batch, or every row."""
        self._writer.flush()
        with self._lock:
            if batch is None:
                self._db().execute("DELETE FROM results")
            else:
                self._db().execute("DELETE FROM results WHERE batch = ?", (batch,))

    def count(self) -> int:
        """Number of rows in the store."""
        self._writer.flush()
        with self._lock:
            return self._db().execute("SELECT count(*) FROM results").fetchone()[0]

    def close(self) -> None:
        """Write what is queued, then close the file; safe to call twice."""
        self._writer.close()
        atexit.unregister(self._writer.close)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._conn is None:
            return f"<Store {self.path} (closed)>"
        return f"<Store {self.path} rows={self.count()}>"
