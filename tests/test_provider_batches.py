"""``amap(mode="batch")`` end to end on the simulator: the same answers as online mode for both wire
formats, re-attaching after an interrupt or a SIGKILL instead of paying twice, follow-up batches and the
online fallback for errored and expired items, splitting, progress, listing and cancelling.

The simulator's batch clock is driven by hand (``Simulator(clock=...)``) and the poll schedule's sleep
moves it, so a batch that "takes" minutes runs in milliseconds; the SIGKILL test runs a real ``nbllm sim``
process on its own clock instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import anthropic
import httpx2
import openai
import pytest

import nbllm
from nbllm._batchapi import BatchAPIOptions, PollSchedule, batch_request
from nbllm._client import make_provider
from nbllm._pricing import rates
from nbllm._sim import Faults, SimConfig, Simulator
from nbllm._store import PartPlan, Store

KEY = "sk-batch-test-0123456789abcdef"
RIGHT = (1.0, 0.0, 0.0)
WIRES = ["openai", "anthropic"]


class ManualClock:
    """The simulator's batch clock, moved by hand or by the poll schedule's sleep."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def options(clock: ManualClock, on_poll=None, **kw) -> BatchAPIOptions:
    """Options whose polls move ``clock`` by the schedule's delay (no real waiting)."""

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if on_poll is not None:
            on_poll()
        await asyncio.sleep(0)

    return BatchAPIOptions(poll=PollSchedule(first=0.5, factor=1.5, longest=2.0, sleep=sleep), **kw)


def stalled(seconds: float = 0.01) -> BatchAPIOptions:
    """Options whose polls wait in real time without moving any clock: the batch never ends by itself."""
    return BatchAPIOptions(poll=PollSchedule(first=seconds, factor=1.0, longest=seconds))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def simulator(clock: ManualClock, **config) -> Simulator:
    config.setdefault("faults", Faults())
    return Simulator(SimConfig(ttft=0.0, tokens_per_second=0.0, batch_seconds=10.0, arithmetic_accuracy=RIGHT,
                               **config), clock=clock)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[Simulator]:
    with simulator(clock) as running:
        yield running


def llm_for(sim: Simulator, wire: str, **kw) -> nbllm.LLM:
    kw.setdefault("api_key", KEY)
    if wire == "anthropic":
        return nbllm.LLM("anthropic:claude-haiku-4-5", base_url=sim.base_url, **kw)
    return nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", **kw)


PROMPTS = [f"What is {i} + {2 * i}?" for i in range(10)] + [
    "Tell me about owls.", "Tell me about owls.", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
]


def fingerprints(llm: nbllm.LLM, prompts) -> list[str]:
    return [call.fingerprint for call in llm.amap(prompts, mode="batch")._prepare()]


# ---- the same answers as online mode ----------------------------------------------------------------

@pytest.mark.parametrize("wire", WIRES)
def test_batch_mode_returns_what_online_mode_returns(wire: str, sim: Simulator, clock: ManualClock) -> None:
    llm = llm_for(sim, wire)
    batch = llm.map(PROMPTS, mode="batch", progress="none", batch_api=options(clock))
    online = llm_for(sim, wire, store=False).map(PROMPTS, progress="none")
    assert all(r.ok and not r.cached for r in batch)
    assert [r.text for r in batch] == [r.text for r in online]
    assert [(r.usage, r.finish_reason, r.provider) for r in batch] == [(r.usage, r.finish_reason, r.provider) for r in online]
    assert {r.key_alias for r in batch} == {"key-1"}
    stats = sim.batch_stats()
    assert stats["batches_created"] == 1 and stats["batch_lines"] == len(PROMPTS)
    assert sim.stats()["total"]["requests"] == len(PROMPTS)  # only the online run made chat requests

    again = llm.map(PROMPTS, mode="batch", progress="none", batch_api=options(clock))
    assert all(r.cached for r in again) and [r.text for r in again] == [r.text for r in batch]
    assert sim.batch_stats()["batches_created"] == 1  # answers in the store are not sent at all


@pytest.mark.parametrize("wire", WIRES)
def test_awaited_and_iterated_batch_mode(wire: str, sim: Simulator, clock: ManualClock) -> None:
    llm = llm_for(sim, wire)

    async def main() -> tuple[list, list]:
        awaited = await llm.amap(PROMPTS[:5], mode="batch", progress="none", batch_api=options(clock))
        seen = [pair async for pair in llm.amap(PROMPTS[5:9], mode="batch", progress="none", batch_api=options(clock))]
        return awaited, seen

    awaited, seen = asyncio.run(main())
    assert all(r.ok for r in awaited) and llm.last_results is not None
    assert sorted(i for i, _ in seen) == [0, 1, 2, 3] and all(r.ok for _, r in seen)
    assert sim.batch_stats()["batches_created"] == 2


def test_online_and_batch_answers_serve_each_other(sim: Simulator, clock: ManualClock) -> None:
    llm = llm_for(sim, "openai")
    online = llm.map(PROMPTS[:6], progress="none")
    from_store = llm.map(PROMPTS[:6], mode="batch", progress="none", batch_api=options(clock))
    assert all(r.cached for r in from_store) and sim.batch_stats()["batches_created"] == 0
    batch = llm.map(PROMPTS[6:], mode="batch", progress="none", batch_api=options(clock))
    requests = sim.stats()["total"]["requests"]
    served = llm.map(PROMPTS[6:], progress="none")
    assert sim.stats()["total"]["requests"] == requests and all(r.cached for r in served)
    assert [r.text for r in from_store] == [r.text for r in online] and [r.text for r in served] == [r.text for r in batch]


# ---- limits -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wire", WIRES)
def test_a_job_over_the_limits_is_split_and_answered_in_order(wire: str, sim: Simulator, clock: ManualClock) -> None:
    llm = llm_for(sim, wire)
    by_count = llm.map(PROMPTS, mode="batch", progress="none", batch_api=options(clock, max_requests=4))
    assert sim.batch_stats()["batches_created"] == 4  # 13 prompts, at most 4 per batch
    line = len(batch_request(make_provider(wire, None), llm.runner.prepare("What is 1 + 1?", stream=False).spec, "x" * 64).line)
    prompts = [f"What is {i} + 1?" for i in range(20, 26)]
    by_size = llm.map(prompts, mode="batch", progress="none", batch_api=options(clock, max_bytes=2 * line + 40))
    assert sim.batch_stats()["batches_created"] == 7  # two lines fit in each
    online = llm_for(sim, wire, store=False).map(PROMPTS + prompts, progress="none")
    assert [r.text for r in by_count + by_size] == [r.text for r in online]
    parts = llm.store.provider_jobs.parts()
    assert [p.requests for p in parts] == [4, 4, 4, 1, 2, 2, 2] and all(p.status == "collected" for p in parts)


# ---- failures: follow-up batches and the online fallback ------------------------------------------

def test_errored_lines_go_into_a_follow_up_batch(sim: Simulator, clock: ManualClock) -> None:
    prompts = [f"What is {i} + 5?" + (" [[sim:500:once]]" if i % 3 == 0 else "") for i in range(9)]
    llm = llm_for(sim, "openai")
    results = llm.map(prompts, mode="batch", progress="none", batch_api=options(clock))
    assert all(r.ok for r in results)
    stats = sim.batch_stats()
    assert stats["batches_created"] == 2 and stats["batch_lines"] == 9 + 3  # the 3 errored lines, once more
    assert sim.stats()["total"]["requests"] == 0
    assert [p.requests for p in llm.store.provider_jobs.parts()] == [9, 3]
    failed_rows = [row for row in llm.store.rows() if not row["ok"]]
    assert len(failed_rows) == 3 and {row["error_type"] for row in failed_rows} == {"ServerError"}


@pytest.mark.parametrize("wire", WIRES)
def test_errored_lines_fall_back_to_online(wire: str, sim: Simulator, clock: ManualClock) -> None:
    prompts = [f"What is {i} + 7?" + (" [[sim:500:once]]" if i % 4 == 0 else "") for i in range(8)]
    results = llm_for(sim, wire).map(prompts, mode="batch", fallback="online", progress="none",
                                     batch_api=options(clock))
    assert all(r.ok for r in results)
    assert sim.batch_stats()["batches_created"] == 1
    assert sim.stats()["total"]["requests"] == 2  # the two errored items, answered online


def test_expired_items_go_into_follow_up_batches_then_fail_saying_so(clock: ManualClock) -> None:
    with simulator(clock, faults=Faults(batch_expire_rate=1.0)) as sim:  # every batch expires half way
        llm = llm_for(sim, "openai")
        results = llm.map([f"What is {i} + 3?" for i in range(40)], mode="batch", progress="none",
                          batch_api=options(clock, max_rounds=2))
        stats = sim.batch_stats()
        online = llm_for(sim, "openai", store=False).map([f"What is {i} + 3?" for i in range(40)], progress="none")
    parts = llm.store.provider_jobs.parts()
    assert stats["batches_created"] == 2 and len(parts) == 2
    first_round_ok = parts[0].counts["completed"]
    ok = [r for r in results if r.ok]
    assert 0 < first_round_ok < len(ok) < 40  # the follow-up batch answered some of the expired ones
    assert parts[1].requests == 40 - first_round_ok
    for result, expected in zip(results, online):
        if result.ok:
            assert result.text == expected.text
        else:
            assert isinstance(result.error, nbllm.ProviderBatchError) and result.error.fate == "expired"
            assert result.batch_rounds == 2 and "expired" in str(result.error) and "fallback='online'" in str(result.error)


def test_expired_items_fall_back_to_online(clock: ManualClock) -> None:
    with simulator(clock, faults=Faults(batch_expire_rate=1.0)) as sim:
        results = llm_for(sim, "anthropic").map([f"What is {i} + 4?" for i in range(20)], mode="batch",
                                                fallback="online", progress="none", batch_api=options(clock))
        assert all(r.ok for r in results)
        assert sim.batch_stats()["batches_created"] == 1
        assert 0 < sim.stats()["total"]["requests"] < 20  # only the expired half went online


def test_answers_the_check_rejects_are_repaired_online(sim: Simulator, clock: ManualClock) -> None:
    """The hook structured outputs plug into: a rejected batch answer is answered again online."""
    llm = llm_for(sim, "openai")
    run = llm.amap(PROMPTS[:6], mode="batch", progress="none", batch_api=options(clock))
    checked = []

    def check(call, response):
        checked.append(call.fingerprint)
        return None if call.spec.messages[-1]["content"].startswith(("What is 1 ", "What is 3 ")) else response

    run.check_answer = check
    results = run.run_blocking()
    assert all(r.ok for r in results) and len(checked) == 6
    assert sim.stats()["total"]["requests"] == 2 and sim.batch_stats()["batches_created"] == 1
    online = llm_for(sim, "openai", store=False).map(PROMPTS[:6], progress="none")
    assert [r.text for r in results] == [r.text for r in online]


def test_requests_the_provider_rejects_fail_at_once(sim: Simulator, clock: ManualClock) -> None:
    results = llm_for(sim, "openai").map(PROMPTS[:3], mode="batch", progress="none", batch_api=options(clock), n=2)
    assert [type(r.error).__name__ for r in results] == ["BadRequestError"] * 3
    assert all(r.batch_rounds == 1 for r in results) and sim.batch_stats()["batches_created"] == 1


# ---- progress -------------------------------------------------------------------------------------------

def test_progress_shows_the_providers_counts_and_the_batch_price(sim: Simulator, clock: ManualClock) -> None:
    llm = llm_for(sim, "openai")
    lines, positions = [], []
    run = None

    def seen() -> None:
        lines.append(run.progress.format_line())
        positions.append((run.progress.position, run.progress.done))

    run = llm.amap(PROMPTS, mode="batch", progress="none", batch_api=options(clock, on_poll=seen))
    results = run.run_blocking()
    lines.append(run.progress.format_line())
    assert lines[0].startswith("0/13") and "batch: validating 13 · in progress 0 · completed 0 · failed 0" in lines[0]
    completed = [int(re.search(r"completed (\d+)", line).group(1)) for line in lines]
    assert completed == sorted(completed) and len(set(completed)) > 3 and completed[-1] == 13
    assert any(position > done == 0 for position, done in positions)  # the bar moves before results arrive
    assert "in progress" in " ".join(lines) and "req/min" not in lines[0]
    prompt = sum(r.usage.prompt_tokens for r in results)
    completion = sum(r.usage.completion_tokens for r in results)
    assert run.progress.cost == pytest.approx(0.5 * rates("gpt-4o-mini").cost(prompt, completion))


# ---- interrupts, re-attaching, listing and cancelling -------------------------------------------------

def _submit_then_interrupt(llm: nbllm.LLM, prompts) -> None:
    """Start a batch run, wait until its provider batch exists, then interrupt the wait."""

    async def main() -> None:
        task = asyncio.ensure_future(llm.amap(prompts, mode="batch", progress="none", batch_api=stalled()))
        deadline = time.monotonic() + 20
        while not any(p.batch_id for p in llm.store.provider_jobs.parts()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.mark.parametrize("wire", WIRES)
def test_an_interrupted_wait_cancels_nothing_and_the_rerun_reattaches(wire: str, sim: Simulator, clock: ManualClock,
                                                                       capsys) -> None:
    llm = llm_for(sim, wire)
    _submit_then_interrupt(llm, PROMPTS)
    err, deadline = "", time.monotonic() + 5
    while "The provider batches keep running" not in err and time.monotonic() < deadline:
        time.sleep(0.02)  # the engine side reports once its task has been cancelled
        err += capsys.readouterr().err
    assert "The provider batches keep running" in err
    [part] = llm.store.provider_jobs.parts()
    assert part.open and sim.batch_stats()["batches_cancelled"] == 0
    clock.advance(3.0)
    results = llm.map(PROMPTS, mode="batch", progress="none", batch_api=options(clock))
    assert f"re-attached to provider batch {part.batch_id}" in capsys.readouterr().err
    assert all(r.ok for r in results) and sim.batch_stats()["batches_created"] == 1
    assert [r.text for r in results] == [r.text for r in llm_for(sim, wire, store=False).map(PROMPTS, progress="none")]


def test_provider_batches_lists_and_cancel_keeps_finished_answers(sim: Simulator, clock: ManualClock) -> None:
    llm = llm_for(sim, "openai")
    _submit_then_interrupt(llm, PROMPTS)
    [info] = nbllm.provider_batches()
    assert (info.provider, info.status, info.requests, info.key_alias, info.open) == ("openai", "validating", 13, "key-1", True)
    assert info.id.startswith("batch_") and info.created.year >= 2024
    assert info.id in repr(nbllm.provider_batches()) and "<table>" in nbllm.provider_batches()._repr_html_()
    clock.advance(5.0)  # half of the lines have run
    assert info.refresh(llm).counts["completed"] > 0
    cancelled = nbllm.cancel_provider_batch(info.id, llm=llm)
    assert cancelled.status == "cancelling" and sim.batch_stats()["batches_cancelled"] == 1
    clock.advance(2.0)
    results = llm.map(PROMPTS, mode="batch", progress="none", batch_api=options(clock))
    ok = [r for r in results if r.ok]
    assert 0 < len(ok) < len(PROMPTS) and sim.batch_stats()["batches_created"] == 1
    assert {r.error.fate for r in results if not r.ok} == {"cancelled"}
    assert nbllm.provider_batches()[0].status == "collected" and nbllm.provider_batches(open_only=True) == []


def test_reattaching_needs_the_key_that_created_the_batch(sim: Simulator, clock: ManualClock) -> None:
    creator = nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", keys=[{"key": KEY, "alias": "team-a"}])
    _submit_then_interrupt(creator, PROMPTS[:4])
    stranger = nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="sk-batch-other-0123456789")
    with pytest.raises(nbllm.ConfigurationError, match="'team-a'"):
        stranger.map(PROMPTS[:4], mode="batch", progress="none", batch_api=options(clock))
    with pytest.raises(nbllm.ConfigurationError, match="'team-a'"):
        nbllm.cancel_provider_batch(nbllm.provider_batches()[0].id, llm=stranger)
    nbllm.provider_batches()[0].forget()
    results = stranger.map(PROMPTS[:4], mode="batch", progress="none", batch_api=options(clock))
    assert all(r.ok for r in results) and sim.batch_stats()["batches_created"] == 2


def test_a_batch_the_server_forgot_is_sent_again(sim: Simulator, clock: ManualClock, capsys) -> None:
    llm = llm_for(sim, "openai")
    jobs = llm.store.provider_jobs
    [part] = jobs.plan("old-job", [PartPlan("openai", sim.base_url + "/v1", "x", "gpt-4o-mini", "key-1",
                                            fingerprints(llm, PROMPTS[:5]))])
    jobs.submitted(part.id, "batch_from_a_simulator_that_restarted", status="in_progress")
    results = llm.map(PROMPTS[:5], mode="batch", progress="none", batch_api=options(clock))
    assert all(r.ok for r in results) and sim.batch_stats()["batches_created"] == 1
    assert "no longer knows provider batch batch_from_a_simulator_that_restarted" in capsys.readouterr().err
    assert jobs.get(part.id).status == "gone"


@pytest.mark.parametrize("wire", WIRES)
def test_a_batch_whose_create_answer_was_lost_is_found_not_made_again(wire: str, sim: Simulator,
                                                                      clock: ManualClock) -> None:
    """Killed between the create call and recording its answer: the record has no batch id; the rerun
    finds the batch (OpenAI by its metadata tag, Anthropic by size and time) instead of paying again."""
    llm = llm_for(sim, wire)
    prints = fingerprints(llm, PROMPTS[:6])
    [part] = llm.store.provider_jobs.plan("lost-job", [PartPlan(wire, "", "x", "m", "key-1", prints)])
    provider = make_provider(wire, None)
    lines = [batch_request(provider, call.spec, call.fingerprint)
             for call in llm.amap(PROMPTS[:6], mode="batch")._prepare()]
    if wire == "openai":
        client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key=KEY)
        upload = client.files.create(file=("in.jsonl", b"".join(r.line + b"\n" for r in lines)), purpose="batch")
        made = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
                                     metadata={"nbllm_job": "lost-job", "nbllm_part": "0"})
    else:
        client = anthropic.Anthropic(base_url=sim.base_url, api_key=KEY)
        made = client.messages.batches.create(requests=[json.loads(r.line) for r in lines])
    results = llm.map(PROMPTS[:6], mode="batch", progress="none", batch_api=options(clock))
    assert all(r.ok for r in results) and sim.batch_stats()["batches_created"] == 1
    assert llm.store.provider_jobs.get(part.id).batch_id == made.id


def test_without_a_store_batch_mode_still_answers(sim: Simulator, clock: ManualClock) -> None:
    results = llm_for(sim, "openai", store=False).map(PROMPTS[:4], mode="batch", progress="none",
                                                      batch_api=options(clock))
    assert all(r.ok for r in results)


def test_the_key_is_never_in_the_store_or_the_job_record(sim: Simulator, clock: ManualClock, tmp_path) -> None:
    store = Store(tmp_path / "keys.sqlite3")
    llm = llm_for(sim, "anthropic", store=store)
    llm.map(PROMPTS + ["Hi [[sim:500]]"], mode="batch", progress="none", batch_api=options(clock, max_rounds=1))
    _submit_then_interrupt(llm, ["What is 99 + 1?"])
    rows = [json.dumps(r.__dict__, default=str) for r in store.provider_jobs.parts()]
    store.close()
    blobs = rows + [p.read_bytes().decode("latin-1") for p in tmp_path.glob("keys.sqlite3*")]
    assert KEY not in "".join(blobs) and "key-1" in "".join(rows)


# ---- SIGKILL while waiting, against a simulator in another process -----------------------------------

KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, nbllm
    from nbllm._batchapi import BatchAPIOptions, PollSchedule
    prompts = [f"What is {i} + {i}?" for i in range(int(os.environ["N"]))]
    llm = nbllm.LLM(os.environ["MODEL"], base_url=os.environ["BASE"], api_key=os.environ["KEY"])
    options = BatchAPIOptions(max_requests=int(os.environ["SPLIT"]), poll=PollSchedule(first=0.1, longest=0.3))
    results = llm.map(prompts, mode="batch", progress="none", batch_api=options)
    print("DONE", sum(r.ok for r in results))
    print(json.dumps([r.text for r in results]))
    """
)


def _provider_batch_ids(wire: str, url: str) -> set[str]:
    if wire == "openai":
        with openai.OpenAI(base_url=url + "/v1", api_key=KEY) as client:
            return {b.id for b in client.batches.list()}
    with anthropic.Anthropic(base_url=url, api_key=KEY) as client:
        return {b.id for b in client.messages.batches.list()}


@pytest.mark.parametrize("wire", WIRES)
def test_sigkill_while_waiting_then_rerun_creates_no_new_batch(wire: str, tmp_path) -> None:
    n, split = 30, 12
    command = [sys.executable, "-m", "nbllm._cli", "sim", "--port", "0", "--ttft", "0", "--batch-seconds", "4"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)
        model, base = ("gpt-4o-mini", url + "/v1") if wire == "openai" else ("anthropic:claude-haiku-4-5", url)
        env = {**os.environ, "N": str(n), "SPLIT": str(split), "MODEL": model, "BASE": base, "KEY": KEY,
               "NBLLM_STORE": str(tmp_path / "kill.sqlite3")}
        child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        store = Store(tmp_path / "kill.sqlite3")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = store.provider_jobs.parts()
            if len(parts) == 3 and all(p.batch_id for p in parts):
                break
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)  # while it waits for the provider
        child.wait(10)
        recorded = {p.batch_id for p in store.provider_jobs.parts()}
        assert len(recorded) == 3 and all(p.open for p in store.provider_jobs.parts())
        assert _provider_batch_ids(wire, url) == recorded
        assert httpx2.get(url + "/sim/stats").json()["batches"]["batches_created"] == 3

        rerun = subprocess.run([sys.executable, "-c", KILL_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0 and f"DONE {n}" in rerun.stdout, rerun.stderr
        assert rerun.stderr.count("re-attached to provider batch") == 3 and "submitted" not in rerun.stderr
        assert _provider_batch_ids(wire, url) == recorded
        assert httpx2.get(url + "/sim/stats").json()["batches"]["batches_created"] == 3
        texts = json.loads(rerun.stdout.strip().splitlines()[-1])
        online = nbllm.LLM(model, base_url=base, api_key=KEY, store=False).map(
            [f"What is {i} + {i}?" for i in range(n)], progress="none")
        assert texts == [r.text for r in online]
        assert not any(p.open for p in store.provider_jobs.parts())
        store.close()
    finally:
        server.terminate()
        server.wait(5)
        server.stdout.close()


# ---- structured answers through provider batches ----------------------------------------------------

@pytest.mark.parametrize("wire", WIRES)
def test_schema_composes_with_batch_mode_and_broken_answers_are_repaired_online(wire: str, clock: ManualClock) -> None:
    from pydantic import BaseModel, model_validator

    class Result(BaseModel):
        expression: str
        result: int

        @model_validator(mode="after")
        def arithmetic_is_right(self) -> "Result":
            left, right = self.expression.split("+")
            if int(left) + int(right) != self.result:
                raise ValueError(f"result must equal {self.expression}")
            return self

    prompts = [f'What is {i}+{3 * i}? Answer as JSON {{"expression": "{i}+{3 * i}", "result": ?}}' for i in range(40)]
    with simulator(clock, faults=Faults(broken_json=0.3)) as sim:
        rows = llm_for(sim, wire).map(prompts, mode="batch", schema=Result, progress="none", batch_api=options(clock))
        online_requests = sim.stats()["total"]["requests"]
        assert sim.batch_stats()["batches_created"] == 1
    assert all(r.ok for r in rows)
    assert [r.parsed.result for r in rows] == [4 * i for i in range(40)]
    repaired = [r for r in rows if len(r.attempts) > 1]
    # the broken batch answers, and only they, went online, each continuing from the batch's own answer
    # (every online request is one more attempt of a repaired item: none was sent again from scratch)
    assert repaired and sum(len(r.attempts) - 1 for r in repaired) == online_requests
    assert all(not r.attempts[0].cached and r.attempts[0].errors for r in repaired)
    assert rows.summary().repaired == len(repaired)
