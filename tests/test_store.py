"""The SQLite store: round trips, cache lookups, exports, secrets on disk, crashes, two writers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from nbllm._exceptions import AuthenticationError, ConfigurationError, ServerError
from nbllm._secrets import register_secret
from nbllm._store.rows import RequestFingerprints
from nbllm._store.store import COLUMNS, Store, default_store_path, request_fingerprint
from nbllm._types import Failure, Response, Usage

ROOT = Path(__file__).resolve().parents[1]


def make_request(i: int = 0, content: str | None = None, sample: int = 0) -> dict:
    return {
        "provider": "openai",
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content or f"What is {i} + {i}?"}],
        "params": {"temperature": 0},
        "sample": sample,
    }


def make_response(text: str = "42") -> Response:
    return Response(
        text=text, usage=Usage(12, 3), model="gpt-4o-mini", finish_reason="stop", latency=0.75,
        time_to_first_token=0.25, key_alias="key-1", provider="openai",
    )


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.sqlite3") as s:
        yield s


def test_fingerprint_is_canonical() -> None:
    a = make_request(1)
    b = dict(reversed(list(a.items())))
    assert request_fingerprint(a) == request_fingerprint(b)
    assert len(request_fingerprint(a)) == 64
    assert request_fingerprint(a) != request_fingerprint(make_request(1, sample=1))
    assert request_fingerprint(make_request(content="héllo")) != request_fingerprint(make_request(content="hello"))


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_JSON_VALUES = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
_MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                            "content": st.text() | st.lists(_JSON_VALUES, max_size=2)}), max_size=3)


@given(provider=st.text(max_size=10), base_url=st.text(max_size=20), model=st.text(max_size=10),
       params=st.dictionaries(st.text(max_size=12), _JSON_VALUES, max_size=4), messages=_MESSAGES,
       sample=st.integers(min_value=0, max_value=10**6))
@example(provider="openai", base_url="http://h/v1", model="m", params={"z": 1, "a": {"é": "\u2028"}},
         messages=[{"role": "user", "content": "\"}{\\"}], sample=0)
def test_batch_fingerprints_equal_the_request_fingerprint(provider: str, base_url: str, model: str, params: dict,
                                                          messages: list, sample: int) -> None:
    """A batch encodes the shared part once (RequestFingerprints); the digest must stay the one a store
    written by any earlier version holds: request_fingerprint of the whole request."""
    whole = {"provider": provider, "base_url": base_url, "model": model, "messages": messages, "params": params,
             "sample": sample}
    assert RequestFingerprints(provider, base_url, model, params)(messages, sample) == request_fingerprint(whole)


def test_default_store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBLLM_STORE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "nbllm" / "store.sqlite3"
    assert (tmp_path / "xdg" / "nbllm").is_dir()
    monkeypatch.setenv("NBLLM_STORE", str(tmp_path / "a" / "b.db"))
    assert default_store_path() == tmp_path / "a" / "b.db"
    with Store() as s:
        assert s.path == tmp_path / "a" / "b.db"


def test_round_trip(store: Store) -> None:
    request = make_request(1)
    fp = request_fingerprint(request)
    store.record(fp, request, make_response(), batch="b1", index=0)
    (row,) = list(store.rows())
    assert list(row) == list(COLUMNS)
    assert row["fingerprint"] == fp and row["batch"] == "b1" and row["item_index"] == 0
    assert row["ok"] is True and row["text"] == "42" and row["finish_reason"] == "stop"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (12, 3)
    assert (row["latency"], row["ttft"], row["key_alias"]) == (0.75, 0.25, "key-1")
    assert (row["provider"], row["model"]) == ("openai", "gpt-4o-mini")
    assert json.loads(row["request_json"]) == {"messages": request["messages"], "params": {"temperature": 0}}
    assert row["error_type"] is None and row["created_at"] > 1.7e9
    cached = store.lookup(fp)
    assert cached == Response(**{**make_response().__dict__, "cached": True})


def test_lookup_newest_ok_row_ignores_failures(store: Store) -> None:
    fp = request_fingerprint(make_request(1))
    store.record(fp, make_request(1), make_response("old"))
    store.record(fp, make_request(1), make_response("new"))
    store.record(fp, make_request(1), error=ServerError("overloaded", status=529))
    store.record(fp, make_request(1), Failure(error=ServerError("again")))
    assert store.lookup(fp).text == "new"
    assert store.lookup_many([fp])[fp].text == "new"
    only_failed = request_fingerprint(make_request(2))
    store.record(only_failed, make_request(2), error=AuthenticationError("no", status=401, key_alias="key-2"))
    assert store.lookup(only_failed) is None
    assert store.lookup("0" * 64) is None
    failed = [row for row in store.rows() if not row["ok"]]
    assert [r["error_type"] for r in failed] == ["ServerError", "ServerError", "AuthenticationError"]
    assert failed[-1]["key_alias"] == "key-2" and failed[0]["error_message"] == "overloaded"
    with pytest.raises(ConfigurationError):
        store.record(fp, make_request(1))


def test_lookup_many_20000(store: Store) -> None:
    fps = [request_fingerprint(make_request(i)) for i in range(20_000)]
    for i, fp in enumerate(fps):  # the writer thread commits these in large groups
        if i % 4:  # every 4th item is missing from the store
            store.record(fp, make_request(i), make_response(str(i)), batch="big", index=i)
    found = store.lookup_many(fps + fps[:10])  # duplicates are harmless
    assert len(found) == 15_000
    assert found[fps[1]].text == "1" and found[fps[1]].cached
    assert fps[0] not in found and fps[4] not in found
    assert store.lookup_many([]) == {}


def test_batches_export_dataframe_clear(store: Store, tmp_path: Path) -> None:
    for i in range(3):
        store.record(request_fingerprint(make_request(i)), make_request(i), make_response(), batch="a", index=i)
    store.record("f" * 64, make_request(9), error=ServerError("boom"), batch="b", index=0)
    store.record("e" * 64, make_request(8), make_response())  # outside any batch
    batches = store.batches()
    assert [(b["batch"], b["rows"], b["ok"], b["failed"]) for b in batches] == [("a", 3, 3, 0), ("b", 1, 0, 1)]
    assert batches[0]["created"] > 0

    assert store.export_jsonl(tmp_path / "a.jsonl", batch="a") == 3
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text("utf-8").splitlines()]
    assert [line["item_index"] for line in lines] == [0, 1, 2] and lines[0]["ok"] is True
    assert store.export_jsonl(tmp_path / "all.jsonl") == 5

    df = store.to_dataframe()
    assert list(df.columns) == list(COLUMNS) and len(df) == 5
    assert df["ok"].tolist() == [True, True, True, False, True]
    assert len(store.to_dataframe(batch="b")) == 1

    store.clear(batch="a")
    assert store.count() == 2 and [b["batch"] for b in store.batches()] == ["b"]
    store.clear()
    assert store.count() == 0 and list(store.rows()) == []


def test_rows_pages_through_large_tables(store: Store) -> None:
    # no transaction held on the store's connection here: the writer thread groups the rows itself, and a
    # COMMIT from this thread could land inside one of its groups
    for i in range(2500):
        store.record(f"{i:064d}", make_request(i), make_response(), batch="x" if i % 2 else "y", index=i)
    assert [r["item_index"] for r in store.rows()] == list(range(2500))
    assert len(list(store.rows("x"))) == 1250


def test_to_dataframe_without_pandas(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigurationError, match="pip install pandas"):
        store.to_dataframe()


def test_repr_close_and_memory() -> None:
    s = Store(":memory:")
    s.record("a" * 64, make_request(), make_response())
    assert repr(s) == "<Store :memory: rows=1>"
    s.close()
    s.close()
    assert "closed" in repr(s)
    with pytest.raises(ConfigurationError, match="closed"):
        s.lookup("a" * 64)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(ConfigurationError, match="newer nbllm"):
        Store(path)


def test_wal_mode(store: Store) -> None:
    assert store._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _raw_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_keys_never_reach_the_file(tmp_path: Path) -> None:
    key = "sk-proj-NbllmTestSecretKey0123456789abcd"
    odd_key = "gsk_NotKeyShaped_Secret_42xy"  # does not look like sk-…, only registration catches it
    register_secret(key)
    register_secret(odd_key)
    path = tmp_path / "secret.sqlite3"
    store = Store(path)
    leaked_request = make_request(content=f"my key is {key} and {odd_key}")
    leaked_request["base_url"] = f"https://example.test/v1?key={odd_key}"
    store.record(request_fingerprint(leaked_request), leaked_request, make_response(f"you said {key}"))
    error = AuthenticationError(f"Incorrect API key provided: {key}. {odd_key}", status=401)
    store.record("b" * 64, make_request(), error=error)
    store.flush()
    raw = _raw_bytes(path)
    assert Path(str(path) + "-wal").exists() and b"sk-\xe2\x80\xa6abcd" in raw  # rows are there, masked
    for secret in (key, odd_key):
        assert secret.encode() not in raw
        assert secret[8:].encode() not in raw
    store.close()  # the checkpoint moves the pages into the main file
    assert key.encode() not in _raw_bytes(path) and odd_key.encode() not in _raw_bytes(path)


_WRITER = """
import os, sys, time
from nbllm._store.store import Store
from nbllm._types import Response, Usage
store = Store(sys.argv[1])
tag = sys.argv[2]
limit = int(sys.argv[3])
pace = float(sys.argv[4])
print("ready", flush=True)
while not os.path.exists(sys.argv[1] + ".go"):  # start line, so that writers really overlap
    time.sleep(0.005)
i = 0
while limit < 0 or i < limit:
    store.record(f"{tag}-{i}", {"messages": [], "params": {}}, Response(text=str(i), usage=Usage(1, 1)),
                 batch=tag, index=i)
    if i % 7 == 0:
        store.flush()  # the writer thread commits in groups; flush() waits for the commit
        print(i, flush=True)  # printed only after the row was committed
    i += 1
    if pace:
        time.sleep(pace)
"""


def _spawn_writer(path: Path, tag: str, limit: int, pace: float = 0.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), tag, str(limit), str(pace)],
        stdout=subprocess.PIPE, text=True, env=env,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_rows_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    proc = _spawn_writer(path, "crash", -1)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    Path(str(path) + ".go").touch()
    confirmed = -1  # the highest index the writer confirmed as committed
    while confirmed < 300:
        confirmed = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    with Store(path) as store:
        indexes = {row["item_index"] for row in store.rows("crash")}
    assert set(range(confirmed + 1)) <= indexes


@pytest.mark.parametrize(("rows", "pace"), [(1500, 0.0), (200, 0.001)])
def test_two_processes_write_at_once(tmp_path: Path, rows: int, pace: float) -> None:
    path = tmp_path / "shared.sqlite3"
    procs = [_spawn_writer(path, tag, rows, pace) for tag in ("p1", "p2")]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    Path(str(path) + ".go").touch()
    for proc in procs:
        proc.communicate(timeout=60)
        assert proc.returncode == 0  # no "database is locked" under full contention
    with Store(path) as store:
        assert sorted((b["batch"], b["rows"]) for b in store.batches()) == [("p1", rows), ("p2", rows)]
        assert store.lookup(f"p2-{rows - 1}").text == str(rows - 1)
        order = [row["batch"] for row in store.rows()]
    if pace:  # paced like real batches (the lock is mostly free), the writers' groups interleave
        assert sum(a != b for a, b in zip(order, order[1:])) > 2


def test_threads_share_one_store(store: Store) -> None:
    def write(tag: str) -> None:
        for i in range(200):
            store.record(f"{tag}-{i}", make_request(i), make_response(), batch=tag, index=i)
            if i % 50 == 0:
                list(store.rows(tag))  # a reader on another thread meanwhile

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 800
