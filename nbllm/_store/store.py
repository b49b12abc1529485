"""The SQLite store: every finished answer (and every failure) is written as it arrives.

```python
with Store() as store:                      # ~/.cache/nbllm/store.sqlite3, or $NBLLM_STORE
    fp = request_fingerprint(request)
    store.record(fp, request, response, batch="b-1", index=0)
    store.lookup(fp)                        # -> Response(cached=True), or None
    store.to_dataframe(batch="b-1")
```

One row per attempt that finished, committed on its own, so a crash or ``kill -9`` loses nothing that
was answered; a rerun looks the fingerprints up and sends only what is missing. WAL mode lets several
kernels share the file. Keys are never written: every text that came from outside goes through
``redact()`` first, in case a provider echoed a key back.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .._exceptions import ConfigurationError
from .._secrets import redact
from .._types import Failure, Response, Usage
from .writer import GroupWriter

__all__ = ["Store", "default_store_path", "request_fingerprint"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    batch TEXT,
    item_index INTEGER,
    created_at REAL NOT NULL,
    provider TEXT,
    base_url TEXT,
    model TEXT,
    request_json TEXT,
    ok INTEGER NOT NULL,
    text TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency REAL,
    ttft REAL,
    key_alias TEXT,
    error_type TEXT,
    error_message TEXT
);
-- cache lookups: newest ok row of a fingerprint is the last entry of (fingerprint, ok) in this index
CREATE INDEX IF NOT EXISTS results_fingerprint ON results (fingerprint, ok, id);
CREATE INDEX IF NOT EXISTS results_batch ON results (batch, item_index);
"""

COLUMNS = (
    "id", "fingerprint", "batch", "item_index", "created_at", "provider", "base_url", "model",
    "request_json", "ok", "text", "finish_reason", "prompt_tokens", "completion_tokens", "latency",
    "ttft", "key_alias", "error_type", "error_message",
)
_INSERT = f"INSERT INTO results ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * (len(COLUMNS) - 1))})"
_RESPONSE_COLUMNS = (
    "id, fingerprint, text, model, provider, finish_reason, prompt_tokens, completion_tokens, "
    "latency, ttft, key_alias"
)
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


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def request_fingerprint(request: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a request dict.

    The dict is ``{"provider", "base_url", "model", "messages", "params", "sample"}``; ``sample`` tells
    apart identical prompts inside one batch. It must never contain a key.
    """
    return hashlib.sha256(_canonical_json(request).encode("utf-8")).hexdigest()


def _clean(text: Any) -> str | None:
    """Text from outside on its way to disk: stringified and scrubbed of anything key-shaped."""
    return None if text is None else redact(str(text))


def _answer_values(answer: Response | None) -> tuple[Any, ...]:
    """text, finish_reason, prompt_tokens, completion_tokens, latency, ttft (all None for a failure)."""
    if answer is None:
        return (None,) * 6
    return (
        _clean(answer.text), answer.finish_reason, answer.usage.prompt_tokens,
        answer.usage.completion_tokens, answer.latency, answer.time_to_first_token,
    )


def _row_values(
    fingerprint: str, request: Mapping[str, Any], response: Response | None,
    error: BaseException | None, batch: str | None, index: int | None, created_at: float,
) -> tuple[Any, ...]:
    """The values of one results row, in ``COLUMNS[1:]`` order."""
    answer = response if error is None else None
    request_json = _canonical_json({"messages": request.get("messages"), "params": request.get("params")})
    alias = answer.key_alias if answer is not None else getattr(error, "key_alias", None)
    return (
        fingerprint, batch, index, created_at,
        _clean(request.get("provider") or (answer.provider if answer else None)),
        _clean(request.get("base_url")),
        _clean(request.get("model") or (answer.model if answer else None)),
        redact(request_json),
        int(answer is not None),
        *_answer_values(answer),
        _clean(alias),
        type(error).__name__ if error is not None else None,
        _clean(error),
    )


def _response_from_row(row: tuple[Any, ...]) -> Response:
    """A cached Response from a tuple in ``_RESPONSE_COLUMNS`` order.

    Plain tuples, not ``sqlite3.Row``: lookups by column name dominated ``lookup_many`` at 100 000 rows.
    """
    _, _, text, model, provider, finish, prompt, completion, latency, ttft, alias = row
    return Response(
        text=text or "",
        usage=Usage(prompt or 0, completion or 0),
        model=model or "",
        finish_reason=finish,
        latency=latency or 0.0,
        time_to_first_token=ttft,
        key_alias=alias,
        provider=provider or "",
        cached=True,
    )


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(zip(row.keys(), row))
    out["ok"] = bool(out["ok"])
    return out


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

    def __init__(self, path: str | Path | None = None) -> None:
        self.path: Path | str = ":memory:" if path == ":memory:" else Path(path or default_store_path())
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, so each INSERT is its own committed transaction
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), timeout=30, check_same_thread=False, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        _retry_while_locked(lambda: self._conn.execute("PRAGMA journal_mode=WAL"))
        # WAL + NORMAL: a commit survives a process crash (kill -9); only a power cut can lose the
        # last few, and it saves an fsync per row
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._writer = GroupWriter(self._write_many)
        # rows still queued when the interpreter exits are written before it goes
        atexit.register(self._writer.close)

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
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

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
        """Wait until every recorded row is committed (reads do this themselves)."""
        return self._writer.flush(timeout)

    def _write_many(self, items: list[tuple[Any, ...]]) -> None:
        """On the writer thread: one transaction for a group of recorded items."""
        rows = [_row_values(*item) for item in items]
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN")
            try:
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

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
            f"SELECT {_RESPONSE_COLUMNS} FROM results WHERE fingerprint = ? AND ok = 1 "
            "ORDER BY id DESC LIMIT 1",
            (fingerprint,),
        )
        return _response_from_row(rows[0]) if rows else None

    def lookup_many(self, fingerprints: Iterable[str]) -> dict[str, Response]:
        """``lookup`` for many fingerprints at once; missing ones are absent from the result."""
        wanted = list(dict.fromkeys(fingerprints))
        newest: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            # one query per chunk, each under the lock on its own, so the writer is never stalled long
            rows = self._select(
                f"SELECT {_RESPONSE_COLUMNS} FROM results "
                f"WHERE ok = 1 AND fingerprint IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:  # several ok rows per fingerprint: the highest id is the newest
                seen = newest.get(row[1])
                if seen is None or row[0] > seen[0]:
                    newest[row[1]] = row
        return {fp: _response_from_row(row) for fp, row in newest.items()}

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
            yield from (_row_dict(row) for row in page)
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
