"""Hedging the tail: the pure decision and budget on a controlled clock, the race shell with fake
attempts, and a batch against the simulator whose stalled requests are raced on another key."""

from __future__ import annotations

import asyncio
import math
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbllm
from nbllm import KeyPool
from nbllm._api.hedging import (
    BUSY_RECHECK_SECONDS,
    DEFAULT_SHARE,
    RECHECK_SECONDS,
    HedgeBudget,
    Hedger,
    HedgeView,
    hedge_share,
    hedge_wait,
    tail_threshold,
)
from nbllm._client import Race
from nbllm._exceptions import ConfigurationError
from nbllm._keys.state import choose_key
from nbllm._sim import Faults, KeyProfile, SimConfig, Simulator
from nbllm._sim._hashing import stable_hash
from nbllm._sim._pacing import draw_latency
from nbllm._store.store import Store
from nbllm._types import Response

MODEL = "gpt-4o-mini"


# ---- the decision (pure) -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("view", "now", "expected"),
    [
        (HedgeView(started=10.0, threshold=2.0), 12.0, 0.0),  # exactly at the p95: hedge
        (HedgeView(started=10.0, threshold=2.0), 15.0, 0.0),
        (HedgeView(started=10.0, threshold=2.0), 11.5, 0.5),  # not yet: look again when due
        (HedgeView(started=10.0, threshold=2.0, idle=False), 15.0, BUSY_RECHECK_SECONDS),  # capacity in use
        (HedgeView(started=10.0, threshold=None), 99.0, RECHECK_SECONDS),  # too few answers to know the tail
        (HedgeView(started=None, threshold=2.0), 99.0, RECHECK_SECONDS),  # waiting for a key / between retries
        (HedgeView(started=10.0, threshold=2.0, answering=True), 99.0, math.inf),  # a stream already answers
    ],
)
def test_hedge_wait_table(view, now, expected):
    assert hedge_wait(view, now) == pytest.approx(expected)


@given(started=st.floats(0, 1e6), threshold=st.floats(0, 1e3), elapsed=st.floats(0, 2e3), idle=st.booleans())
def test_hedge_only_past_the_threshold_and_only_when_idle(started, threshold, elapsed, idle):
    now = started + elapsed
    wait = hedge_wait(HedgeView(started, threshold, idle=idle), now)
    due = now >= started + threshold
    assert (wait == 0.0) == (due and idle)
    if not due:  # the next look is no later than the moment it becomes due
        assert 0 < wait <= started + threshold - now + 1e-9


@pytest.mark.parametrize(("p95", "left", "limit", "running", "threshold"), [
    (2.0, 12, 12, 30, 2.0), (2.0, 6, 12, 30, 2.0), (2.0, 3, 12, 30, 3.0), (2.0, 0, 12, 30, 4.0),
    (2.0, 3, 12, 3, 2.0),  # enough budget left for every request still running: no need to save it
    (None, 5, 12, 30, None), (2.0, 0, 0, 30, 2.0),
])
def test_the_threshold_rises_as_the_budget_runs_out(p95, left, limit, running, threshold):
    assert tail_threshold(p95, left, limit, running) == threshold


@given(p95=st.floats(0, 100), limit=st.integers(1, 1000), running=st.integers(0, 2000), data=st.data())
def test_the_threshold_is_between_p95_and_twice_it_and_never_falls_as_budget_is_spent(p95, limit, running, data):
    left = data.draw(st.integers(0, limit))
    assert p95 <= tail_threshold(p95, left, limit, running) <= 2 * p95
    if left:
        assert tail_threshold(p95, left - 1, limit, running) >= tail_threshold(p95, left, limit, running)


@pytest.mark.parametrize(("items", "share", "limit"), [
    (240, 0.05, 12), (450, 0.05, 23), (10, 0.05, 1), (1, 0.05, 1), (0, 0.05, 0), (100, 0.0, 0), (100, 1.0, 100),
])
def test_budget_is_a_share_of_the_batch_rounded_up_and_at_least_one(items, share, limit):
    assert HedgeBudget.for_items(items, share).limit == limit


@given(items=st.integers(0, 10_000), share=st.floats(0.001, 1.0), tries=st.integers(0, 20_000))
def test_budget_never_gives_more_than_its_limit(items, share, tries):
    budget = HedgeBudget.for_items(items, share)
    granted = sum(budget.take() for _ in range(tries))
    assert granted == min(tries, budget.limit) and budget.left == budget.limit - granted
    if granted:
        budget.refund()  # a hedge that never got a key does not count
        assert budget.take()


@pytest.mark.parametrize(("hedge", "guarded", "share"), [
    (None, False, DEFAULT_SHARE), (None, True, 0.0), (True, True, DEFAULT_SHARE), (False, False, 0.0),
    (0.2, False, 0.2),
])
def test_hedge_share(hedge, guarded, share):
    assert hedge_share(hedge, guarded) == share


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, "yes"])
def test_hedge_share_refuses_nonsense(bad):
    with pytest.raises(ConfigurationError):
        hedge_share(bad)


def test_race_settles_once():
    race = Race()
    first, second = race.watch(lambda: 0.0), race.watch(lambda: 0.0, avoid={"a"})
    assert not first.may_fail()  # the other attempt still runs: this error is dropped
    assert second.won() and not first.won()
    race = Race()
    first, second = race.watch(lambda: 0.0), race.watch(lambda: 0.0)
    assert second.won() and not first.may_fail()  # after an answer no error settles anything
    race = Race()
    first, second = race.watch(lambda: 0.0), race.watch(lambda: 0.0)
    assert not first.may_fail() and second.may_fail()  # both failed: the last error is the outcome


def test_choose_key_avoids_the_keys_it_is_told_to():
    pool = KeyPool([{"key": "sk-a-000000000001", "alias": "a", "rpm": 600},
                    {"key": "sk-b-000000000002", "alias": "b", "rpm": 60}])
    states = [pool.key_state("a"), pool.key_state("b")]
    assert choose_key(states, "openai", MODEL, 10, 0.0).state.alias == "a"  # the larger key is less loaded
    assert choose_key(states, "openai", MODEL, 10, 0.0, frozenset({"a"})).state.alias == "b"
    assert choose_key(states, "openai", MODEL, 10, 0.0, frozenset({"a", "b"})).state is None


async def test_a_lease_records_time_to_first_token_and_a_stream_is_judged_by_it():
    clock = Clock()
    pool = KeyPool([{"key": "sk-a-000000000001", "alias": "a"}, {"key": "sk-b-000000000002", "alias": "b"}],
                   clock=clock)
    lease = await pool.acquire("openai", MODEL, 10, avoid={"b"})
    assert lease.alias == "a" and pool.waiting == 0
    clock.now += 0.25
    lease.first_token()
    clock.now += 2.0
    lease.succeeded(10)
    state = pool.key_state("a")
    assert state.first_token_of(MODEL).quantile(0.5, minimum=1) == 0.25
    assert state.latency_of(MODEL).quantile(0.5, minimum=1) == 2.25
    for _ in range(19):
        state.first_token_of(MODEL).add(0.25)
        state.latency_of(MODEL).add(2.25)
    for stream, threshold in ((True, 0.25), (False, 2.25)):
        hedger = Hedger(pool, MODEL, stream, HedgeBudget(4), left=0)
        watch = Race().watch(clock)
        watch.leased("a", clock.now)
        assert hedger.view(watch).threshold == threshold


# ---- the race shell, with fake attempts on a controlled clock --------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tailed_pool(clock: Clock) -> KeyPool:
    """Two keys whose answers took 1 s each (20 of them): the p95 is 1 s."""
    pool = KeyPool([{"key": "sk-a-000000000001", "alias": "a"}, {"key": "sk-b-000000000002", "alias": "b"}],
                   clock=clock)
    for alias in ("a", "b"):
        for _ in range(20):
            pool.key_state(alias).latency_of(MODEL).add(1.0)
    return pool


def fake_send(clock: Clock, script: dict[str, str], release: dict[str, asyncio.Event], sent: list):
    """An attempt as run_call reports it: a key (the primary gets 'a' 5 s ago, past its p95), then the
    scripted outcome once released: 'answer', 'fail', or 'hang'."""
    async def send(watch):
        alias = "b" if watch.avoid else "a"
        watch.leased(alias, clock.now - (5.0 if alias == "a" else 0.0))
        sent.append(alias)
        await release[alias].wait()
        if script[alias] == "fail":
            assert watch.may_fail() is (alias == "b")  # not the outcome while the other attempt runs
            raise RuntimeError(f"{alias} failed")
        if not watch.won():
            raise asyncio.CancelledError
        return Response(text=alias, key_alias=alias, hedges=watch.race.extra)
    return send


async def race(script: dict[str, str], budget: int = 1, release_first: str = "b"):
    clock = Clock()
    pool = tailed_pool(clock)
    sent_hedges: list[int] = []
    hedger = Hedger(pool, MODEL, False, HedgeBudget(budget), left=0, on_sent=lambda: sent_hedges.append(1))
    release = {"a": asyncio.Event(), "b": asyncio.Event()}
    sent: list[str] = []
    task = asyncio.ensure_future(hedger.answer(fake_send(clock, script, release, sent)))
    while len(sent) < (2 if budget else 1) and not task.done():
        await asyncio.sleep(0)
    release[release_first].set()
    for _ in range(50):
        await asyncio.sleep(0)
    for event in release.values():
        event.set()
    outcome = await asyncio.wait_for(task, 5)
    return outcome, sent, hedger, sent_hedges


async def test_a_request_past_its_p95_is_raced_on_another_key_and_the_first_answer_wins():
    response, sent, hedger, counted = await race({"a": "hang", "b": "answer"})
    assert sent == ["a", "b"] and response.key_alias == "b" and response.hedges == 1
    assert hedger.budget.used == 1 and counted == [1]


async def test_the_first_attempt_may_still_win():
    response, sent, _, counted = await race({"a": "answer", "b": "hang"}, release_first="a")
    assert response.key_alias == "a" and response.hedges == 1
    assert sent == ["a", "b"] and counted == [1]  # the hedge was sent all the same


async def test_a_failed_attempt_does_not_fail_the_item_while_the_other_runs():
    response, _, _, _ = await race({"a": "fail", "b": "answer"}, release_first="a")
    assert response.key_alias == "b"
    response, _, _, _ = await race({"a": "answer", "b": "fail"}, release_first="b")
    assert response.key_alias == "a"


async def test_both_failing_fails_the_item_with_the_last_error():
    with pytest.raises(RuntimeError, match="b failed"):
        await race({"a": "fail", "b": "fail"}, release_first="a")


async def test_no_budget_no_hedge():
    response, sent, _, counted = await race({"a": "answer", "b": "answer"}, budget=0, release_first="a")
    assert sent == ["a"] and response.hedges == 0 and counted == []


async def _raced_worker(script: dict[str, str]):
    """A worker answering one item with a hedge budget of one, as a batch's worker does: the item's first
    attempt runs inline in it; then it goes on awaiting (as it would for its next item)."""
    clock = Clock()
    hedger = Hedger(tailed_pool(clock), MODEL, False, HedgeBudget(1), left=0)
    release = {"a": asyncio.Event(), "b": asyncio.Event()}
    sent: list[str] = []

    async def worker():
        response = await hedger.answer(fake_send(clock, script, release, sent))
        await asyncio.sleep(0.01)  # a cancel left behind would land here
        return response, asyncio.current_task().cancelling()

    task = asyncio.ensure_future(worker())
    while len(sent) < 2:
        await asyncio.sleep(0)
    return task, release, hedger


async def test_a_winning_hedge_interrupts_the_first_attempt_and_the_worker_goes_on():
    task, release, hedger = await _raced_worker({"a": "hang", "b": "answer"})
    release["b"].set()  # "a" is never released: only the hedge's win can end its attempt
    response, cancelling = await asyncio.wait_for(task, 5)
    assert response.key_alias == "b" and cancelling == 0 and hedger.sent == 1
    hedger.close()


async def test_stopping_the_worker_mid_race_stops_both_attempts():
    task, release, hedger = await _raced_worker({"a": "hang", "b": "hang"})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert hedger.running == 0  # nothing left in flight
    hedger.close()


async def test_a_real_cancel_is_not_taken_for_a_lost_race():
    task, release, hedger = await _raced_worker({"a": "hang", "b": "answer"})
    release["b"].set()
    task.cancel()  # the batch is stopped in the same instant the hedge answers
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    hedger.close()


# ---- a batch against the simulator -----------------------------------------------------------------------
KEYS = {"sk-test-alpha-0000000001": KeyProfile(alias="alpha", rpm=6000),
        "sk-test-bravo-0000000002": KeyProfile(alias="bravo", rpm=6000)}


def stalled_batch(stall_seconds: float, stalled: int, fine: int) -> tuple[SimConfig, list[str]]:
    """A simulator whose first answer to each of the first ``stalled`` prompts stalls (and whose second
    does not), and those prompts; the draw is the simulator's own pure function of prompt and attempt."""
    config = SimConfig(keys=KEYS, ttft=0.02, ttft_sigma=0.1, tokens_per_second=0, window_seconds=2.0,
                       faults=Faults(stall=0.3, stall_seconds=stall_seconds), seed=5)

    def stalls(prompt: str, attempt: int) -> bool:
        return draw_latency(config, stable_hash(prompt), attempt).stall > 0

    candidates = [f"What is {i} + {i}?" for i in range(500)]
    slow = [p for p in candidates if stalls(p, 1) and not stalls(p, 2)][:stalled]
    quick = [p for p in candidates if not stalls(p, 1)][:fine]
    return config, slow + quick


def run(config: SimConfig, prompts: list[str], tmp_path, streaming: bool = False, **amap):
    with Simulator(config) as sim:
        pool = KeyPool([{"key": k, "alias": p.alias, "base_url": sim.base_url + "/v1", "rpm": p.rpm}
                        for k, p in KEYS.items()])
        for alias in ("alpha", "bravo"):  # a tail already known, far above the 20 ms answers: only stalls cross it
            for _ in range(20):  # (streams are judged by the first token only: their whole answers look endless)
                pool.key_state(alias).latency_of(MODEL).add(100.0 if streaming else 0.5)
                pool.key_state(alias).first_token_of(MODEL).add(0.5)
        store = Store(tmp_path / "store.sqlite3")
        llm = nbllm.LLM(MODEL, pool=pool, store=store, concurrency=64, streaming=streaming)
        batch = llm.amap(prompts, progress="none", **amap)
        results = batch.run_blocking()
    return results, batch, pool, store


@pytest.mark.parametrize("streaming", [False, True])  # streams are judged by their time to first token
def test_stalled_requests_are_raced_and_each_item_has_one_stored_answer(tmp_path, streaming):
    config, prompts = stalled_batch(stall_seconds=20.0, stalled=2, fine=38)
    results, batch, pool, store = run(config, prompts, tmp_path, streaming=streaming)
    assert all(r.ok for r in results) and [r.hedges for r in results[:2]] == [1, 1]
    assert batch.progress.hedges == 2 and "⇉2" in batch.progress.format_line()
    assert all(state.in_flight == 0 for state in (pool.key_state("alpha"), pool.key_state("bravo")))  # losers released
    rows = list(store.rows(batch.id))
    assert sorted(row["item_index"] for row in rows if row["ok"]) == list(range(len(prompts)))  # one answer each
    assert not [row for row in rows if not row["ok"]]
    assert [row["hedges"] for row in sorted(rows, key=lambda r: r["item_index"])][:3] == [1, 1, 0]


def test_the_budget_caps_the_hedges(tmp_path):
    config, prompts = stalled_batch(stall_seconds=1.5, stalled=3, fine=17)  # 5 % of 20: one hedge
    results, batch, _, _ = run(config, prompts, tmp_path)
    assert all(r.ok for r in results)
    assert batch.progress.hedges == 1 and sum(r.hedges for r in results) == 1


def test_hedge_false_sends_each_item_once(tmp_path):
    config, prompts = stalled_batch(stall_seconds=1.0, stalled=1, fine=9)
    results, batch, _, _ = run(config, prompts, tmp_path, hedge=False)
    assert all(r.ok for r in results) and batch.progress.hedges == 0 and not any(r.hedges for r in results)


def test_a_store_from_before_hedging_gets_the_column(tmp_path):
    path = tmp_path / "old.sqlite3"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE results DROP COLUMN hedges")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    with Store(path) as store:
        store.record("fp", {"messages": []}, Response(text="x", hedges=1), batch="b", index=0)
        assert [row["hedges"] for row in store.rows("b")] == [1]


def test_mode_batch_refuses_hedge():
    llm = nbllm.LLM(MODEL, store=False)
    with pytest.raises(ConfigurationError, match="hedge"):
        llm.amap(["hi"], mode="batch", hedge=True)
