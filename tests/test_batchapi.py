"""The provider batch core: lines and splitting at the providers' real limits, result lines, statuses,
the poll schedule, the job record in the store, the transport's GET and upload on every transport, and
hostile servers (a lost create answer, a flaky status endpoint)."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile import Canned, ScriptedServer, scripted_server  # noqa: F401 - the fixture is used below

import nbllm
from nbllm._batchapi import (
    BatchAPIOptions,
    BatchLimits,
    BatchRequest,
    Counts,
    PollSchedule,
    batch_cost,
    batch_request,
    connect,
    limits_for,
    payload,
    read_line,
    read_status,
    split_requests,
    unanswered,
)
from nbllm._client import CallSpec, make_provider
from nbllm._keys import ApiKey
from nbllm._pricing import rates
from nbllm._progress import BatchProgress
from nbllm._sim import SimConfig, Simulator
from nbllm._sim._batch_lines import read_anthropic_requests, read_openai_file
from nbllm._store import PartPlan, Store

MB = 1024 * 1024
OPENAI, ANTHROPIC = make_provider("openai", None), make_provider("anthropic", None)


def spec(prompt: str = "Hi", **kw) -> CallSpec:
    return CallSpec(model=kw.pop("model", "gpt-4o-mini"), messages=[{"role": "user", "content": prompt}], **kw)


def requests(n: int, size: int = 10, model: str = "m") -> list[BatchRequest]:
    line = b"x" * size  # one bytes object shared by every request: 200 MB of them cost no memory
    return [BatchRequest(f"id{i}", model, line) for i in range(n)]


# ---- lines ----------------------------------------------------------------------------------------------

def test_openai_line_is_the_online_body_without_streaming() -> None:
    call = spec("What is 2 + 2?", temperature=0, max_tokens=20, stop=["\n"], stream=True, extra={"top_p": 0.5})
    line = json.loads(batch_request(OPENAI, call, "f" * 64).line)
    online = OPENAI.build_request(CallSpec(**{**call.__dict__, "stream": False}), None).body
    assert line == {"custom_id": "f" * 64, "method": "POST", "url": "/v1/chat/completions", "body": online}
    assert "stream" not in line["body"] and line["body"]["top_p"] == 0.5


def test_anthropic_line_is_the_online_body_without_streaming() -> None:
    call = spec("Hello", model="claude-haiku-4-5", stream=True)
    call.messages.insert(0, {"role": "system", "content": "Be brief."})
    line = json.loads(batch_request(ANTHROPIC, call, "a" * 64).line)
    assert line["custom_id"] == "a" * 64 and "stream" not in line["params"]
    assert line["params"]["system"] == "Be brief." and line["params"]["max_tokens"] == 1024


def test_payloads_pass_the_simulators_input_checks() -> None:
    openai_part = [batch_request(OPENAI, spec(f"q{i}"), f"{i:064x}") for i in range(3)]
    entries, errors = read_openai_file(payload(openai_part, "openai"), "/v1/chat/completions")
    assert errors == [] and [e[0] for e in entries] == [r.custom_id for r in openai_part]
    anthropic_part = [batch_request(ANTHROPIC, spec(f"q{i}", model="claude-x"), f"{i:064x}") for i in range(3)]
    assert len(read_anthropic_requests(json.loads(payload(anthropic_part, "anthropic")))) == 3


# ---- splitting --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("wire", "n", "sizes"), [
    ("openai", 50_000, [50_000]), ("openai", 50_001, [50_000, 1]), ("openai", 120_000, [50_000, 50_000, 20_000]),
    ("anthropic", 100_000, [100_000]), ("anthropic", 100_001, [100_000, 1]),
])
def test_split_at_the_providers_request_limits(wire: str, n: int, sizes: list[int]) -> None:
    assert [len(p) for p in split_requests(requests(n), limits_for(wire))] == sizes


@pytest.mark.parametrize(("wire", "limit"), [("openai", 200 * MB), ("anthropic", 256 * MB)])
def test_split_at_the_providers_byte_limits(wire: str, limit: int) -> None:
    parts = split_requests(requests(600, size=MB), limits_for(wire))
    sizes = [sum(len(r.line) + 1 for r in part) for part in parts]
    assert sum(len(p) for p in parts) == 600 and all(size <= limit for size in sizes)
    assert all(size + MB + 1 > limit - 64 for size in sizes[:-1])  # each full part had no room for one more


def test_one_model_per_openai_file_any_mix_for_anthropic() -> None:
    mixed = [BatchRequest(f"r{i}", "a" if i % 2 else "b", b"{}") for i in range(6)]
    assert [[r.custom_id for r in p] for p in split_requests(mixed, limits_for("openai"))] == [
        ["r0", "r2", "r4"], ["r1", "r3", "r5"]]
    assert len(split_requests(mixed, limits_for("anthropic"))) == 1


def test_a_request_larger_than_a_batch_is_refused() -> None:
    with pytest.raises(nbllm.ConfigurationError, match="mode='online'"):
        split_requests(requests(1, size=300), limits_for("openai").tightened(max_bytes=200))


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 50), st.sampled_from("abc")), max_size=60),
    max_requests=st.integers(1, 8), max_bytes=st.integers(70, 200), one_model=st.booleans(),
)
def test_split_keeps_order_fits_the_limits_and_fills_each_part(sizes, max_requests, max_bytes, one_model) -> None:
    items = [BatchRequest(f"r{i}", model, b"x" * size) for i, (size, model) in enumerate(sizes)]
    limits = BatchLimits(max_requests, max_bytes, one_model)
    parts = split_requests(items, limits)
    assert all(part for part in parts)
    groups = {}
    for item in items:
        groups.setdefault(item.model if one_model else "", []).append(item)
    assert [r for p in parts for r in p] == [r for g in groups.values() for r in g]  # order within a model
    for part, following in zip(parts, parts[1:] + [None]):
        size = 15 + sum(len(r.line) + 1 for r in part)
        assert len(part) <= max_requests and size <= max_bytes
        if one_model:
            assert len({r.model for r in part}) == 1
        if following and (not one_model or following[0].model == part[0].model):
            assert len(part) == max_requests or size + len(following[0].line) + 1 > max_bytes  # greedy


# ---- result lines -----------------------------------------------------------------------------------------

COMPLETION = {"model": "gpt-4o-mini", "choices": [{"message": {"content": "4"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 1}}
MESSAGE = {"model": "claude-x", "content": [{"type": "text", "text": "Hi!"}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 5, "output_tokens": 2}}


def _error_body(kind: str, message: str) -> dict:
    return {"error": {"message": message, "type": kind, "code": None}}


@pytest.mark.parametrize(("provider", "line", "fate", "error", "retryable"), [
    (OPENAI, {"custom_id": "c", "response": {"status_code": 200, "body": COMPLETION}, "error": None},
     "succeeded", None, False),
    (OPENAI, {"custom_id": "c", "response": {"status_code": 500, "body": _error_body("server_error", "boom")}},
     "errored", "ServerError", True),
    (OPENAI, {"custom_id": "c", "response": {"status_code": 429, "body": _error_body("requests", "slow down")}},
     "errored", "RateLimitError", True),
    (OPENAI, {"custom_id": "c", "response": {"status_code": 400, "body": _error_body("invalid_request_error", "n")}},
     "errored", "BadRequestError", False),
    (OPENAI, {"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "late"}},
     "expired", "ProviderBatchError", True),
    (OPENAI, {"custom_id": "c", "response": None, "error": {"code": "batch_cancelled", "message": "x"}},
     "cancelled", "ProviderBatchError", False),
    (OPENAI, {"custom_id": "c", "response": None, "error": {"code": "weird", "message": "odd"}},
     "failed", "ProviderBatchError", False),
    (ANTHROPIC, {"custom_id": "c", "result": {"type": "succeeded", "message": MESSAGE}}, "succeeded", None, False),
    (ANTHROPIC, {"custom_id": "c", "result": {"type": "errored", "error": {"type": "error", "error": {
        "type": "api_error", "message": "Internal server error"}}}}, "errored", "ServerError", True),
    (ANTHROPIC, {"custom_id": "c", "result": {"type": "errored", "error": {"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}}}, "errored", "ServerError", True),
    (ANTHROPIC, {"custom_id": "c", "result": {"type": "errored", "error": {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: Field required"}}}}, "errored", "BadRequestError", False),
    (ANTHROPIC, {"custom_id": "c", "result": {"type": "expired"}}, "expired", "ProviderBatchError", True),
    (ANTHROPIC, {"custom_id": "c", "result": {"type": "canceled"}}, "cancelled", "ProviderBatchError", False),
], ids=lambda v: v if isinstance(v, str) else None)
def test_result_lines(provider, line, fate, error, retryable) -> None:
    outcome = read_line(provider, line, key_alias="key-7", batch_id="batch_1", latency=3.0)
    assert (outcome.custom_id, outcome.fate, outcome.retryable) == ("c", fate, retryable)
    if error is None:
        response = outcome.response
        assert outcome.ok and response.text in ("4", "Hi!") and response.key_alias == "key-7" and response.latency == 3.0
        assert response.usage.total_tokens in (10, 7) and response.provider == provider.name and not response.cached
    else:
        assert type(outcome.error).__name__ == error and not outcome.ok
        assert isinstance(outcome.error, nbllm.NbllmError)


def test_a_key_echoed_in_a_line_error_is_redacted() -> None:
    key = "sk-echoed-in-error-0123456789abcdef"
    ApiKey(key)  # registered, as every key nbllm is given
    line = {"custom_id": "c", "result": {"type": "errored", "error": {"type": "error", "error": {
        "type": "authentication_error", "message": f"Incorrect API key provided: {key}"}}}}
    assert key not in str(read_line(ANTHROPIC, line, key_alias="k", batch_id="b").error)


@pytest.mark.parametrize("fate", ["expired", "cancelled", "missing", "gone", "failed"])
def test_unanswered_requests_say_what_happened(fate: str) -> None:
    error = unanswered("c", fate, "batch_9", "invalid_json_line: bad").error
    assert error.fate == fate and error.batch_id == "batch_9" and "batch_9" in str(error)
    assert error.retryable == (fate in ("expired", "missing", "gone"))


# ---- statuses -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("wire", "obj", "status", "ended", "counts"), [
    ("openai", {"status": "validating", "request_counts": {"total": 0, "completed": 0, "failed": 0}},
     "validating", False, Counts(validating=10)),
    ("openai", {"status": "in_progress", "request_counts": {"total": 10, "completed": 6, "failed": 1}},
     "in_progress", False, Counts(in_progress=3, completed=6, failed=1)),
    ("openai", {"status": "finalizing", "request_counts": {"total": 10, "completed": 9, "failed": 1}},
     "finalizing", False, Counts(completed=9, failed=1)),
    ("openai", {"status": "completed", "request_counts": {"total": 10, "completed": 10, "failed": 0},
                "output_file_id": "file-o"}, "completed", True, Counts(completed=10)),
    ("openai", {"status": "expired", "request_counts": {"total": 10, "completed": 4, "failed": 0}},
     "expired", True, Counts(in_progress=6, completed=4)),
    ("openai", {"status": "cancelling", "request_counts": {"total": 10, "completed": 4, "failed": 0}},
     "cancelling", False, Counts(in_progress=6, completed=4)),
    ("openai", {"status": "failed", "errors": {"data": [{"code": "mismatched_model", "message": "one model"}]}},
     "failed", True, Counts(in_progress=10)),
    ("anthropic", {"processing_status": "in_progress", "request_counts": {"processing": 10}},
     "in_progress", False, Counts(in_progress=10)),
    ("anthropic", {"processing_status": "in_progress", "request_counts": {}}, "in_progress", False, Counts(in_progress=10)),
    ("anthropic", {"processing_status": "ended", "results_url": "http://h/r", "request_counts": {
        "processing": 0, "succeeded": 6, "errored": 1, "canceled": 2, "expired": 1}},
     "ended", True, Counts(completed=6, failed=4)),
])
def test_batch_statuses(wire, obj, status, ended, counts) -> None:
    state = read_status(wire, obj, requests=10)
    assert (state.status, state.ended, state.counts) == (status, ended, counts)
    if status == "failed":
        assert "mismatched_model" in state.problems


# ---- schedule, options, cost ---------------------------------------------------------------------------

@pytest.mark.parametrize(("polls", "delay"), [(0, 1.0), (1, 1.5), (2, 2.25), (10, 57.665), (13, 180.0), (10**6, 180.0)])
def test_poll_backoff_goes_from_seconds_to_minutes(polls: int, delay: float) -> None:
    assert PollSchedule().delay(polls) == pytest.approx(delay, rel=1e-3)


@pytest.mark.parametrize("kw", [dict(first=0), dict(factor=0.5), dict(first=5, longest=1)])
def test_poll_schedule_is_checked(kw) -> None:
    with pytest.raises(nbllm.ConfigurationError):
        PollSchedule(**kw)


def test_options_lower_the_limits_and_never_raise_them() -> None:
    options = BatchAPIOptions(max_requests=10, max_bytes=10**12)
    assert options.limits("openai") == BatchLimits(10, 200 * MB, True)
    assert BatchAPIOptions().limits("anthropic") == BatchLimits(100_000, 256 * MB, False)
    with pytest.raises(nbllm.ConfigurationError):
        BatchAPIOptions(max_rounds=0)
    with pytest.raises(nbllm.ConfigurationError):
        BatchAPIOptions(max_requests=0).limits("openai")


def test_batch_price_is_half_the_list_price() -> None:
    list_price = rates("gpt-4o-mini").cost(10**6, 10**6)
    assert batch_cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.5 * list_price)
    assert batch_cost("unknown-model", 10, 10) is None


def test_progress_line_with_provider_counts() -> None:
    now = [0.0]
    progress = BatchProgress(10, model="gpt-4o-mini", clock=lambda: now[0], batch_prices=True)
    progress.set_provider_counts(Counts(in_progress=6, completed=3, failed=1).as_dict(), 4)
    assert progress.position == 4 and progress.done == 0
    line = progress.format_line()
    assert "batch: validating 0 · in progress 6 · completed 3 · failed 1" in line and "req/min" not in line
    progress.item_done(ok=True, prompt_tokens=1_000_000, completion_tokens=0)
    assert progress.cost == pytest.approx(0.075) and progress.format_dict()["batch"].startswith("validating 0")


# ---- the job record ----------------------------------------------------------------------------------

def test_job_record_round_trip(tmp_path) -> None:
    with Store(tmp_path / "jobs.sqlite3") as store:
        jobs = store.provider_jobs
        first, second = jobs.plan("job-1", [PartPlan("openai", "http://x/v1", "default", "m", "key-1", ["a", "b"]),
                                            PartPlan("openai", "http://x/v1", "default", "m", "key-1", ["c"])])
        assert (first.status, first.requests, first.batch_id, first.open, second.part) == ("submitting", 2, None, True, 1)
        [newer] = jobs.plan("job-2", [PartPlan("anthropic", "http://y", "e", "m", "key-2", ["b", "c", "d"])])
        assert jobs.open_parts_with(["a", "b", "c", "zzz"]) == {first.id: ["a"], newer.id: ["b", "c"]}
        jobs.submitted(first.id, "batch_1", status="validating", input_file_id="file-1")
        jobs.seen(first.id, "in_progress", {"completed": 1})
        record = jobs.find("batch_1")
        assert (record.status, record.counts, record.input_file_id) == ("in_progress", {"completed": 1}, "file-1")
        jobs.collected(newer.id)
        assert jobs.open_parts_with(["b", "c"]) == {first.id: ["b"], second.id: ["c"]}
        jobs.gone(second.id)
        jobs.forget(first.id)
        assert jobs.open_parts_with(["a", "b", "c"]) == {} and jobs.fingerprints(newer.id) == ["b", "c", "d"]
        assert [p.status for p in jobs.parts()] == ["forgotten", "gone", "collected"]


def test_a_version_1_store_gains_the_job_record_and_keeps_its_rows(tmp_path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE results (id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, batch TEXT, "
                      "item_index INTEGER, created_at REAL NOT NULL, provider TEXT, base_url TEXT, model TEXT, "
                      "request_json TEXT, ok INTEGER NOT NULL, text TEXT, finish_reason TEXT, prompt_tokens INTEGER, "
                      "completion_tokens INTEGER, latency REAL, ttft REAL, key_alias TEXT, error_type TEXT, "
                      "error_message TEXT); PRAGMA user_version=1;")
    old.execute("INSERT INTO results (fingerprint, created_at, ok, text) VALUES ('fp', 1.0, 1, 'kept')")
    old.commit()
    old.close()
    with Store(path) as store:
        assert store.lookup("fp").text == "kept"
        store.provider_jobs.plan("j", [PartPlan("openai", "u", "e", "m", "k", ["fp"])])
        assert len(store.provider_jobs.parts()) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3  # 3: results.hedges (hedging)
    assert "hedges" in {row[1] for row in conn.execute("PRAGMA table_info(results)")}


# ---- connection and transports --------------------------------------------------------------------------

@pytest.mark.parametrize(("base", "url", "same"), [
    ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages/batches/x/results", True),
    ("https://api.anthropic.com", "https://evil.example/v1/results", False),
    ("https://api.anthropic.com", "http://api.anthropic.com/v1/results", False),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8001/v1/results", False),
    ("http://127.0.0.1:8000", "relative/path", False),
])
def test_the_key_goes_only_to_the_same_origin(base: str, url: str, same: bool) -> None:
    assert connect("anthropic", base, ApiKey("sk-origin-0123456789abcd")).same_origin(url) is same


def test_management_headers_authenticate_as_online_calls_do() -> None:
    key = ApiKey("sk-headers-0123456789abcd")
    assert connect("openai", None, key).headers() == {"authorization": f"Bearer {key.value}"}
    anthropic_headers = connect("anthropic", None, key, "x-api-key").headers()
    assert anthropic_headers == {"anthropic-version": "2023-06-01", "x-api-key": key.value}


@pytest.fixture(params=["nbllm", "aiohttp", "httpx2"])
def transport(request, monkeypatch) -> str:
    from nbllm._client import http

    monkeypatch.setenv("NBLLM_TRANSPORT", request.param)
    monkeypatch.setattr(http, "_transport", None)  # chosen again on first use
    return request.param


def test_get_and_upload_on_every_transport(transport: str) -> None:
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=0.0)) as sim:
        conn = connect("openai", sim.base_url + "/v1", ApiKey("sk-transport-0123456789abcd"))

        async def main() -> tuple[dict, bytes]:
            from nbllm._client import UploadFile

            made = await conn.request_json("POST", conn.url("/files"), fields={"purpose": "batch"},
                                           upload=UploadFile("file", "in.jsonl", b'{"a": 1}\n{"b": 2}\n'))
            lines = [line async for line in conn.json_lines(conn.url(f"/files/{made['id']}/content"))]
            return made, lines

        made, lines = nbllm._engine.run_sync(main())
    assert made["purpose"] == "batch" and made["bytes"] == 18 and lines == [{"a": 1}, {"b": 2}]


def test_batch_mode_on_every_transport(transport: str) -> None:
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=0.0, batch_seconds=0.2)) as sim:
        llm = nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="sk-transport-0123456789abcd")
        options = BatchAPIOptions(poll=PollSchedule(first=0.05, longest=0.1))
        results = llm.map([f"What is {i} + 1?" for i in range(5)], mode="batch", progress="none", batch_api=options)
        assert all(r.ok for r in results) and sim.batch_stats()["batches_created"] == 1


# ---- hostile servers -----------------------------------------------------------------------------------

def _completed(n: int) -> dict:
    return {"id": "batch_lost", "object": "batch", "status": "completed", "output_file_id": "file-out",
            "error_file_id": None, "request_counts": {"total": n, "completed": n, "failed": 0}}


def test_a_lost_create_answer_is_found_by_its_tag_not_created_again(scripted_server: ScriptedServer) -> None:
    seen: dict = {}

    def uploaded(body: bytes) -> dict:
        seen["ids"] = re.findall(rb'"custom_id":"([0-9a-f]{64})"', body)
        return {"id": "file-in", "object": "file", "bytes": len(body), "purpose": "batch"}

    def create_fails(body: bytes) -> dict:
        seen["tag"] = json.loads(body)["metadata"]  # the server made the batch, but its answer is lost
        return {"error": {"message": "upstream timeout", "type": "server_error"}}

    def listing(_: bytes) -> dict:
        return {"object": "list", "data": [{**_completed(3), "metadata": seen["tag"], "created_at": int(time.time())}],
                "has_more": False, "last_id": "batch_lost"}

    def output(_: bytes) -> bytes:
        body = {"model": "gpt-4o-mini", "choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
        return b"".join(json.dumps({"custom_id": i.decode(), "response": {"status_code": 200, "body": body}}).encode()
                        + b"\n" for i in seen["ids"])

    scripted_server.script("/v1/files", [Canned(body=uploaded)])
    scripted_server.script("/v1/batches", [Canned(500, create_fails), Canned(body=listing)])
    scripted_server.script("/v1/batches/batch_lost", [Canned(body=_completed(3))])
    scripted_server.script("/v1/files/file-out/content", [Canned(body=output)])
    llm = nbllm.LLM("gpt-4o-mini", base_url=scripted_server.url("/v1"), api_key="sk-hostile-batch-0001")
    results = llm.map(["a", "b", "c"], mode="batch", progress="none",
                      batch_api=BatchAPIOptions(poll=PollSchedule(first=0.01, longest=0.01)))
    assert [r.text for r in results] == ["fine"] * 3
    assert scripted_server.hits["/v1/batches"] == 2  # the failed create, then the listing: no second create
    assert llm.store.provider_jobs.parts()[0].batch_id == "batch_lost"


def test_a_flaky_status_endpoint_is_polled_again(scripted_server: ScriptedServer, capsys) -> None:
    seen: dict = {}

    def uploaded(body: bytes) -> dict:
        seen["ids"] = re.findall(rb'"custom_id":"([0-9a-f]{64})"', body)
        return {"id": "file-in", "object": "file"}

    def output(_: bytes) -> bytes:
        return b"".join(json.dumps({"custom_id": i.decode(), "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": "ok"}}]}}}).encode() + b"\n" for i in seen["ids"])

    unavailable = Canned(503, {"error": {"message": "unavailable", "type": "server_error"}})
    scripted_server.script("/v1/files", [Canned(body=uploaded)])
    scripted_server.script("/v1/batches", [Canned(body={"id": "batch_lost", "status": "validating"})])
    scripted_server.script("/v1/batches/batch_lost", [unavailable] * 7 + [Canned(body=_completed(2))])
    scripted_server.script("/v1/files/file-out/content", [Canned(body=output)])
    llm = nbllm.LLM("gpt-4o-mini", base_url=scripted_server.url("/v1"), api_key="sk-hostile-batch-0002")
    llm.retry = nbllm.RetryPolicy(initial_delay=0.001, max_delay=0.002)
    results = llm.map(["a", "b"], mode="batch", progress="none",
                      batch_api=BatchAPIOptions(poll=PollSchedule(first=0.01, longest=0.01)))
    assert [r.text for r in results] == ["ok", "ok"] and scripted_server.hits["/v1/batches/batch_lost"] == 8
    assert capsys.readouterr().err.count("asking again at the next poll") == 1

