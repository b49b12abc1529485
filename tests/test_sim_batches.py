"""Provider batch APIs in the simulator: the state machine on a hand-driven clock, input checks, and both SDKs."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time

import anthropic
import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbllm._sim import Faults, KeyProfile, SimConfig, Simulator, _batch_lines
from nbllm._sim._batch_lines import (
    line_error,
    read_anthropic_requests,
    read_openai_file,
)
from nbllm._sim._batch_routes import OpenAIBatchRoutes
from nbllm._sim._batch_wire import page
from nbllm._sim._batches import (
    Line,
    LineError,
    Timing,
    deadline_for,
    new_batch,
    outcomes,
    view,
)
from nbllm._sim._msgbatch_routes import AnthropicBatchRoutes
from nbllm._sim._requests import parse_openai
from nbllm._sim._respond import respond

FAST = dict(ttft=0.0, tokens_per_second=0.0)
ALWAYS_RIGHT = (1.0, 0.0, 0.0)
ENDPOINT = "/v1/chat/completions"
KEY, OTHER = "sk-batch-aaaaaaaaaaaa", "sk-other-bbbbbbbbbbbb"


class ManualClock:
    """The simulator's batch clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _lines(n: int, errors: set[int] = frozenset()) -> list[Line]:
    return [Line(f"r{i}", {}, LineError(500, "server_error", "boom") if i in errors else None) for i in range(n)]


def _batch(n: int = 10, *, errors: set[int] = frozenset(), problems: list | None = None, deadline: float | None = None):
    return new_batch(
        "batch_x", "openai", "k", _lines(n, errors), created=0.0, wall=1_700_000_000.0, timing=Timing.of(10.0),
        deadline=deadline, errors=problems or [], extra={}, seed=0,
    )


# ---------------------------------------------------------------- pure: the state machine


@pytest.mark.parametrize(
    ("now", "status", "succeeded", "unfinished"),
    [
        (0.0, "validating", 0, 10),
        (0.99, "validating", 0, 10),
        (1.0, "in_progress", 0, 10),
        (1.8, "in_progress", 1, 9),
        (5.0, "in_progress", 5, 5),
        (8.99, "in_progress", 9, 1),
        (9.0, "finalizing", 10, 0),
        (10.0, "completed", 10, 0),
        (1e6, "completed", 10, 0),
    ],
)
def test_timeline(now: float, status: str, succeeded: int, unfinished: int) -> None:
    seen = view(_batch(), now)
    assert (seen.status, seen.succeeded, seen.errored, seen.unfinished) == (status, succeeded, 0, unfinished)
    assert seen.ended == (status == "completed")


def test_event_times_and_failed_validation() -> None:
    assert view(_batch(), 10.0).times == {"in_progress": 1.0, "finalizing": 9.0, "completed": 10.0}
    failed = _batch(problems=[{"code": "duplicate_custom_id"}])
    assert view(failed, 0.5).status == "validating"
    seen = view(failed, 1.0)
    assert (seen.status, seen.ended, seen.times) == ("failed", True, {"failed": 1.0})


def test_errored_lines_count_in_finishing_order() -> None:
    batch = _batch(errors={0, 1, 2})
    seen = view(batch, 10.0)
    assert (seen.succeeded, seen.errored) == (7, 3)
    first_three = [batch.order[k] for k in range(3)]
    assert view(batch, 1.0 + 0.8 * 3).errored == sum(i in {0, 1, 2} for i in first_three)


def test_cancel_keeps_finished_lines() -> None:
    batch = _batch()
    batch.cancel_at = 5.0
    assert view(batch, 4.0).status == "in_progress"
    cancelling = view(batch, 5.5)
    assert (cancelling.status, cancelling.succeeded, cancelling.unfinished) == ("cancelling", 5, 5)
    done = view(batch, 6.0)
    assert (done.status, done.ended, done.times["cancelled"]) == ("cancelled", True, 6.0)
    kinds = [kind for _line, kind in outcomes(batch)]
    assert kinds == ["succeeded"] * 5 + ["cancelled"] * 5


def test_cancel_while_validating_runs_nothing() -> None:
    batch = _batch()
    batch.cancel_at = 0.5
    seen = view(batch, 2.0)
    assert (seen.status, seen.succeeded, "in_progress" in seen.times) == ("cancelled", 0, False)


def test_deadline_expires_unfinished_lines() -> None:
    batch = _batch(deadline=5.0)
    assert view(batch, 4.9).status == "in_progress"
    seen = view(batch, 5.0)
    assert (seen.status, seen.succeeded, seen.unfinished, seen.ended) == ("expired", 5, 5, True)
    assert [kind for _l, kind in outcomes(batch)].count("expired") == 5
    assert view(_batch(deadline=50.0), 10.0).status == "completed"


def test_deadline_for_knobs() -> None:
    timing = Timing.of(10.0)
    assert deadline_for(0.0, timing, None, 0.0, 0, "b") is None
    assert deadline_for(0.0, timing, 3.0, 0.0, 0, "b") == 3.0
    assert deadline_for(0.0, timing, None, 1.0, 0, "b") == 5.0  # half way through processing
    picked = sum(deadline_for(0.0, timing, None, 0.3, 0, f"b{i}") is not None for i in range(1000))
    assert 240 <= picked <= 360


def test_results_order_is_shuffled_and_seeded() -> None:
    batch = _batch(40)
    order = [line.custom_id for line, _kind in outcomes(batch)]
    assert sorted(order) == sorted(f"r{i}" for i in range(40)) and order != [f"r{i}" for i in range(40)]
    assert order == [line.custom_id for line, _kind in outcomes(_batch(40))]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 60),
    steps=st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=20),
    cancel=st.one_of(st.none(), st.floats(0, 12)),
    deadline=st.one_of(st.none(), st.floats(0, 12)),
)
def test_views_only_move_forward(n: int, steps: list[float], cancel: float | None, deadline: float | None) -> None:
    batch = _batch(n, errors={i for i in range(n) if i % 7 == 3}, deadline=deadline)
    batch.cancel_at = cancel
    rank = {"validating": 0, "in_progress": 1, "finalizing": 2, "cancelling": 2}
    now, last = 0.0, None
    for step in steps:
        now += step
        seen = view(batch, now)
        assert seen.succeeded + seen.errored + seen.unfinished == n
        if last is not None:
            assert seen.succeeded >= last.succeeded and seen.errored >= last.errored
            assert not last.ended or seen.status == last.status
            if not seen.ended and not last.ended:
                assert rank[seen.status] >= rank[last.status]
        last = seen


# ---------------------------------------------------------------- pure: input checks and line fates


def _jsonl(*items: object) -> bytes:
    return "\n".join(item if isinstance(item, str) else json.dumps(item) for item in items).encode()


def _line(custom_id: str, prompt: str = "Hello", **body: object) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT,
            "body": {"model": "gpt-x", "messages": [{"role": "user", "content": prompt}], **body}}


@pytest.mark.parametrize(
    ("data", "codes"),
    [
        (_jsonl(_line("a"), _line("b")), []),
        (_jsonl(_line("a"), "{not json"), ["invalid_json_line"]),
        (_jsonl(_line("a"), {"custom_id": "b", "method": "POST", "url": ENDPOINT}), ["missing_required_parameter"]),
        (_jsonl(_line("a"), {**_line("b"), "url": "/v1/embeddings"}), ["invalid_url"]),
        (_jsonl(_line("a"), _line("a")), ["duplicate_custom_id"]),
        (_jsonl(_line("a"), {**_line("b"), "method": "GET"}), ["invalid_method"]),
        (_jsonl(_line("a"), _line("b", temperature=0.5)), []),
        (_jsonl(_line("a"), {**_line("b"), "body": {"model": "other", "messages": []}}), ["mismatched_model"]),
        (b"", ["empty_file"]),
        (b"\xff\xfe", ["invalid_file_format"]),
    ],
)
def test_read_openai_file(data: bytes, codes: list[str]) -> None:
    _entries, errors = read_openai_file(data, ENDPOINT)
    assert [e["code"] for e in errors] == codes
    if codes and codes[0] in ("invalid_json_line", "duplicate_custom_id"):
        assert errors[0]["line"] == 2


def test_openai_file_request_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batch_lines, "OPENAI_MAX_REQUESTS", 3)
    _entries, errors = read_openai_file(_jsonl(*(_line(f"r{i}") for i in range(4))), ENDPOINT)
    assert errors[0]["code"] == "too_many_requests"
    assert read_openai_file(_jsonl(*(_line(f"r{i}") for i in range(3))), ENDPOINT)[1] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"requests": []}, "at least 1 item"),
        ({"requests": [{"custom_id": "has space", "params": {}}]}, "String should match pattern"),
        ({"requests": [{"custom_id": "x" * 65, "params": {}}]}, "String should match pattern"),
        ({"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]}, "Duplicate custom_id"),
        ({"requests": [{"custom_id": "a"}]}, "params: Field required"),
    ],
)
def test_read_anthropic_requests_rejects(body: dict, message: str) -> None:
    with pytest.raises(_batch_lines.BadRequest) as info:
        read_anthropic_requests(body)
    assert message in info.value.message


def test_anthropic_request_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batch_lines, "ANTHROPIC_MAX_REQUESTS", 2)
    with pytest.raises(_batch_lines.BadRequest) as info:
        read_anthropic_requests({"requests": [{"custom_id": f"r{i}", "params": {}} for i in range(3)]})
    assert "at most 2 items" in info.value.message
    assert len(read_anthropic_requests({"requests": [{"custom_id": f"r{i}", "params": {}} for i in range(2)]})) == 2


@pytest.mark.parametrize(
    ("after", "before", "limit", "expected", "more"),
    [
        (None, None, 2, ["e", "d"], True),
        ("d", None, 2, ["c", "b"], True),
        ("b", None, 2, ["a"], False),
        (None, "b", 2, ["d", "c"], True),
        (None, "d", 5, ["e"], False),
        ("gone", None, 2, [], False),
        (None, None, 9, ["e", "d", "c", "b", "a"], False),
    ],
)
def test_page(after: str | None, before: str | None, limit: int, expected: list[str], more: bool) -> None:
    assert page(list("edcba"), lambda item: item, limit, after, before) == (expected, more)


def test_line_errors_from_params_directives_and_dice() -> None:
    config = SimConfig()
    claimed: set[str] = set()

    def claim(key: str) -> bool:
        fresh = key not in claimed
        claimed.add(key)
        return fresh

    good = _line("a")["body"]
    assert line_error("openai", good, config, "b", "a", claim) is None
    assert line_error("openai", {"model": "m"}, config, "b", "a", claim).status == 400
    assert line_error("anthropic", {"model": "c", "messages": good["messages"]}, config, "b", "a", claim).status == 400
    assert line_error("openai", _line("a", "Hi [[sim:500]]")["body"], config, "b", "a", claim).status == 500
    once = _line("a", "Hi [[sim:529:once]]")["body"]
    assert line_error("openai", once, config, "b", "a", claim).status == 503
    assert line_error("openai", once, config, "b2", "a", claim) is None  # a resubmission succeeds
    dice = SimConfig(faults=Faults(batch_line_error_rate=0.25))
    failed = sum(line_error("openai", good, dice, "b", f"r{i}", claim) is not None for i in range(800))
    assert 150 <= failed <= 250


# ---------------------------------------------------------------- the official SDKs against the server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock):
    keys = {KEY: KeyProfile(alias="batcher", rpm=1), OTHER: KeyProfile(alias="other"), "sk-gone-ccccccccccc": KeyProfile(revoked=True)}
    config = SimConfig(keys=keys, arithmetic_accuracy=ALWAYS_RIGHT, batch_seconds=10.0, **FAST)
    with Simulator(config, clock=clock) as running:
        yield running


@pytest.fixture
def oai(sim: Simulator):
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key=KEY, max_retries=0)
    yield client
    client.close()


@pytest.fixture
def claude(sim: Simulator):
    client = anthropic.Anthropic(base_url=sim.base_url, api_key=KEY, max_retries=0)
    yield client
    client.close()


PROMPTS = [f"What is {i} + {i * 3}?" for i in range(12)] + ["Tell me about owls.", "Hello, how are you?"]


def _upload(client: openai.OpenAI, lines: list[dict]) -> str:
    return client.files.create(file=("input.jsonl", io.BytesIO(_jsonl(*lines))), purpose="batch").id


def _results(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()] if file_id else []


def test_openai_batch_life_cycle_matches_online_answers(oai: openai.OpenAI, clock: ManualClock, sim: Simulator) -> None:
    lines = [_line(f"p{i}", prompt) for i, prompt in enumerate(PROMPTS)] + [{**_line("bad"), "body": {"model": "gpt-x"}}]
    file_id = _upload(oai, lines)
    assert oai.files.retrieve(file_id).purpose == "batch"
    batch = oai.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h", metadata={"run": "1"})
    assert (batch.status, batch.metadata, batch.output_file_id) == ("validating", {"run": "1"}, None)
    seen = []
    for _ in range(12):
        clock.advance(1.0)
        batch = oai.batches.retrieve(batch.id)
        seen.append((batch.status, batch.request_counts.completed + batch.request_counts.failed))
    statuses = [status for status, _done in seen]
    assert statuses[0] == "in_progress" and "finalizing" in statuses and statuses[-1] == "completed"
    done = [count for _status, count in seen]
    assert done == sorted(done) and len(set(done)) > 4 and done[-1] == len(lines)
    assert batch.request_counts.total == len(lines) and batch.request_counts.failed == 1
    assert batch.completed_at >= batch.finalizing_at >= batch.in_progress_at >= batch.created_at
    output = _results(oai, batch.output_file_id)
    assert [o["custom_id"] for o in output] != [f"p{i}" for i in range(len(PROMPTS))]  # shuffled
    online = openai.OpenAI(base_url=sim.base_url + "/v1", api_key=OTHER, max_retries=0)
    for item in output:
        prompt = PROMPTS[int(item["custom_id"][1:])]
        assert item["response"]["status_code"] == 200 and item["error"] is None
        reply = online.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": prompt}])
        assert item["response"]["body"]["choices"][0]["message"]["content"] == reply.choices[0].message.content
    online.close()
    [error] = _results(oai, batch.error_file_id)
    assert (error["custom_id"], error["response"]["status_code"]) == ("bad", 400)
    assert oai.files.retrieve(batch.output_file_id).bytes == len(oai.files.content(batch.output_file_id).content)
    assert sim.stats().get("batcher", {}).get("requests", 0) == 0  # batch lines are not chat requests


def test_openai_cancel_keeps_partial_results(oai: openai.OpenAI, clock: ManualClock) -> None:
    batch = oai.batches.create(
        input_file_id=_upload(oai, [_line(f"c{i}") for i in range(10)]), endpoint=ENDPOINT, completion_window="24h"
    )
    clock.advance(5.0)  # 1 s validating, then half of the 8 s of processing
    cancelled = oai.batches.cancel(batch.id)
    assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
    clock.advance(2.0)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "cancelled" and batch.request_counts.completed == 5
    errors = _results(oai, batch.error_file_id)
    assert len(_results(oai, batch.output_file_id)) == 5 and len(errors) == 5
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"} and all(e["response"] is None for e in errors)
    assert oai.batches.cancel(batch.id).status == "cancelled"  # cancelling twice is harmless
    finished = oai.batches.create(input_file_id=_upload(oai, [_line("z")]), endpoint=ENDPOINT, completion_window="24h")
    clock.advance(20.0)
    with pytest.raises(openai.ConflictError):
        oai.batches.cancel(finished.id)


def test_openai_failed_validation_list_and_scoping(oai: openai.OpenAI, sim: Simulator, clock: ManualClock) -> None:
    failed = oai.batches.create(
        input_file_id=_upload(oai, [_line("a"), _line("a")]), endpoint=ENDPOINT, completion_window="24h"
    )
    clock.advance(1.0)
    failed = oai.batches.retrieve(failed.id)
    assert failed.status == "failed" and failed.errors.data[0].code == "duplicate_custom_id"
    assert failed.errors.data[0].line == 2 and failed.output_file_id is None
    ids = [failed.id] + [
        oai.batches.create(input_file_id=_upload(oai, [_line("x")]), endpoint=ENDPOINT, completion_window="24h").id
        for _ in range(3)
    ]
    first = oai.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    assert [b.id for b in oai.batches.list(limit=2, after=ids[2]).data] == ids[1::-1]
    assert [b.id for b in oai.batches.list(limit=2)] == ids[::-1]  # iterating fetches every page
    stranger = openai.OpenAI(base_url=sim.base_url + "/v1", api_key=OTHER, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        stranger.batches.retrieve(ids[0])
    assert stranger.batches.list().data == []
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=sim.base_url + "/v1", api_key="sk-gone-ccccccccccc", max_retries=0).batches.list()
    stranger.close()
    stats = sim.batch_stats()
    assert stats["openai_batches"] == 4 and stats["by_key"] == {"batcher": 4} and stats["files_uploaded"] == 4


def test_openai_file_routes_and_limits(oai: openai.OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    file_id = _upload(oai, [_line("a")])
    assert oai.files.content(file_id).content == _jsonl(_line("a"))
    assert [f.id for f in oai.files.list()] == [file_id]
    assert oai.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(file_id)
    with pytest.raises(openai.BadRequestError):
        oai.batches.create(input_file_id=_upload(oai, [_line("a")]), endpoint="/v1/embeddings", completion_window="24h")
    monkeypatch.setattr(OpenAIBatchRoutes, "max_file_bytes", 100)
    with pytest.raises(openai.BadRequestError) as info:
        _upload(oai, [_line(f"r{i}") for i in range(5)])
    assert info.value.param == "file" and "too large" in info.value.message


def test_openai_fifty_thousand_and_one_lines_fail(oai: openai.OpenAI, clock: ManualClock) -> None:
    lines = [{"custom_id": f"{i}", "method": "POST", "url": ENDPOINT, "body": {}} for i in range(50_001)]
    batch = oai.batches.create(input_file_id=_upload(oai, lines), endpoint=ENDPOINT, completion_window="24h")
    clock.advance(1.0)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "failed" and batch.errors.data[0].code == "too_many_requests"


def test_structured_and_faulty_lines_in_a_batch(oai: openai.OpenAI, clock: ManualClock) -> None:
    schema = {"type": "object", "properties": {"expression": {"type": "string"}, "result": {"type": "integer"}},
              "required": ["expression", "result"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "Math", "schema": schema, "strict": True}}
    lines = [_line("json", "What is 6 x 7?", response_format=fmt), _line("boom", "Hi [[sim:500]]")]
    batch = oai.batches.create(input_file_id=_upload(oai, lines), endpoint=ENDPOINT, completion_window="24h")
    clock.advance(20.0)
    batch = oai.batches.retrieve(batch.id)
    [ok] = _results(oai, batch.output_file_id)
    assert json.loads(ok["response"]["body"]["choices"][0]["message"]["content"]) == {"expression": "6 x 7", "result": 42}
    [boom] = _results(oai, batch.error_file_id)
    assert boom["response"]["status_code"] == 500 and boom["response"]["body"]["error"]["type"] == "server_error"


def _requests(n: int, prefix: str = "q") -> list[dict]:
    return [
        {"custom_id": f"{prefix}{i}", "params": {"model": "claude-x", "max_tokens": 100,
                                               "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}}
        for i in range(n)
    ]


def test_anthropic_batch_life_cycle(claude: anthropic.Anthropic, clock: ManualClock, sim: Simulator) -> None:
    tool = {"name": "record", "input_schema": {"type": "object", "properties": {"result": {"type": "integer"}},
                                              "required": ["result"]}}
    requests = _requests(6) + [
        {"custom_id": "tool", "params": {"model": "claude-x", "max_tokens": 100, "tools": [tool],
                                         "tool_choice": {"type": "tool", "name": "record"},
                                         "messages": [{"role": "user", "content": "What is 6 x 7?"}]}},
        {"custom_id": "bad", "params": {"model": "claude-x", "messages": []}},
    ]
    batch = claude.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    clock.advance(5.0)
    batch = claude.messages.batches.retrieve(batch.id)
    assert batch.request_counts.processing == 8 and batch.request_counts.succeeded == 0 and batch.results_url is None
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.batches.delete(batch.id)
    clock.advance(5.0)
    batch = claude.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.ended_at is not None
    assert (batch.request_counts.succeeded, batch.request_counts.errored) == (7, 1)
    assert batch.results_url == f"{sim.base_url}/v1/messages/batches/{batch.id}/results"
    results = {item.custom_id: item.result for item in claude.messages.batches.results(batch.id)}
    online = anthropic.Anthropic(base_url=sim.base_url, api_key=OTHER, max_retries=0)
    for request in requests[:6]:
        reply = online.messages.create(**request["params"])
        assert results[request["custom_id"]].message.content[0].text == reply.content[0].text
    online.close()
    assert results["tool"].message.content[0].input == {"result": 42} and results["tool"].message.stop_reason == "tool_use"
    assert results["bad"].type == "errored" and results["bad"].error.error.type == "invalid_request_error"
    assert claude.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve(batch.id)


def test_anthropic_cancel_expire_list_and_limits(
    claude: anthropic.Anthropic, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = claude.messages.batches.create(requests=_requests(10))
    clock.advance(4.5)  # half of the 9 s of processing
    assert claude.messages.batches.cancel(batch.id).processing_status == "canceling"
    clock.advance(1.0)
    batch = claude.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.cancel_initiated_at is not None
    assert (batch.request_counts.succeeded, batch.request_counts.canceled) == (5, 5)
    kinds = [item.result.type for item in claude.messages.batches.results(batch.id)]
    assert sorted(kinds) == ["canceled"] * 5 + ["succeeded"] * 5
    ids = [batch.id] + [claude.messages.batches.create(requests=_requests(1)).id for _ in range(3)]
    page = claude.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more and page.last_id == ids[2]
    assert [b.id for b in claude.messages.batches.list(limit=2)] == ids[::-1]  # iterating fetches every page
    assert [b.id for b in claude.messages.batches.list(limit=2, before_id=ids[1]).data] == ids[2:4][::-1]
    for bad in ([{"custom_id": "no spaces please", "params": {}}], _requests(1) * 2):
        with pytest.raises(anthropic.BadRequestError):
            claude.messages.batches.create(requests=bad)
    monkeypatch.setattr(AnthropicBatchRoutes, "max_body_bytes", 1000)
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.batches.create(requests=_requests(20))
    assert info.value.status_code == 413 and "request_too_large" in str(info.value.body)


def test_expiring_batches_and_line_errors() -> None:
    clock = ManualClock()
    faults = Faults(batch_expire_rate=1.0, batch_line_error_rate=1.0)
    with Simulator(SimConfig(faults=faults, batch_seconds=10.0, **FAST), clock=clock) as sim:
        claude = anthropic.Anthropic(base_url=sim.base_url, api_key="k", max_retries=0)
        batch = claude.messages.batches.create(requests=_requests(10))
        clock.advance(4.5)
        batch = claude.messages.batches.retrieve(batch.id)
        assert batch.processing_status == "ended" and batch.request_counts.expired == 5
        assert batch.request_counts.errored == 5  # every line that ran failed
        errored = [i.result for i in claude.messages.batches.results(batch.id) if i.result.type == "errored"]
        assert {e.error.error.type for e in errored} == {"api_error"}
        client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0)
        job = client.batches.create(input_file_id=_upload(client, [_line(f"e{i}") for i in range(4)]),
                                    endpoint=ENDPOINT, completion_window="24h")
        clock.advance(5.0)
        job = client.batches.retrieve(job.id)
        assert job.status == "expired" and job.expired_at is not None and job.output_file_id is None
        codes = [e["error"]["code"] if e["error"] else e["response"]["status_code"] for e in _results(client, job.error_file_id)]
        assert sorted(map(str, codes)) == ["500", "500", "batch_expired", "batch_expired"]
        claude.close()
        client.close()


def test_standalone_sim_process_runs_batches() -> None:
    command = [sys.executable, "-m", "nbllm._cli", "sim", "--port", "0", "--ttft", "0", "--batch-seconds", "0.3"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        batch = client.batches.create(input_file_id=_upload(client, [_line("a", "What is 2 + 3?")]),
                                      endpoint=ENDPOINT, completion_window="24h")
        deadline = time.monotonic() + 10
        while client.batches.retrieve(batch.id).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)  # a separate process runs on its own clock
        [line] = _results(client, client.batches.retrieve(batch.id).output_file_id)
        assert "5" in line["response"]["body"]["choices"][0]["message"]["content"]
        stats = httpx2.get(url + "/sim/stats").json()
        assert stats["batches"]["batches_created"] == 1 and stats["batches"]["by_key"] == {"…k": 1}
        client.close()
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def test_batch_text_equals_respond_for_the_same_call() -> None:
    config = SimConfig(arithmetic_accuracy=ALWAYS_RIGHT)
    body = _line("a", "Tell me about tea.")["body"]
    batch = new_batch("b", "openai", "k", [Line("a", body)], created=0.0, wall=0.0, timing=Timing.of(0.0),
                      deadline=None, errors=[], extra={}, seed=0)
    to_errors, out = _batch_lines.openai_result(batch, batch.lines[0], "succeeded", config, lambda key: True)
    expected = respond(parse_openai(body), config, lambda key: True).done.text
    assert not to_errors and out["response"]["body"]["choices"][0]["message"]["content"] == expected
