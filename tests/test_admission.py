"""Adaptive admission (Little's law), the batch's growing and shrinking workers, aged rate-limit snapshots
and the paced first probe: pure arithmetic on numbers and clocks passed in, no sleeping."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from nbllm._api.workers import Workers
from nbllm._keys import ApiKey, KeyPool, KeyState, RateLimitSnapshot
from nbllm._keys.admission import (
    DEFAULT_LATENCY,
    HEADROOM,
    SAFETY_CAP,
    KeyDemand,
    demand_of,
    in_flight_target,
)
from nbllm._keys.state import PROBE_BURST, PROBE_IN_FLIGHT, PROBE_SPACING

MODEL = "gpt-4o-mini"


# ---- the target ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "keys, options, expected",
    [
        ([KeyDemand(rate=10, burst=10, latency=3.0)], {}, math.ceil(10 * 3 * HEADROOM + 10)),
        # 3 keys 10/5/5 rps at 3 s: ~60 in flight at the limit, with headroom and the bursts
        ([KeyDemand(10, 10, 3.0), KeyDemand(5, 5, 3.0), KeyDemand(5, 5, 3.0)], {}, math.ceil(20 * 3 * HEADROOM + 20)),
        # no latency measured yet: the default stands in
        ([KeyDemand(rate=2, burst=2)], {}, math.ceil(2 * DEFAULT_LATENCY * HEADROOM + 2)),
        # unknown limits: the probing allowance, added as is
        ([KeyDemand(probe=16), KeyDemand(rate=1, burst=1, latency=1.0)], {}, 16 + math.ceil(1 * HEADROOM + 1)),
        # an explicit concurrency caps; so does the safety cap
        ([KeyDemand(rate=100, burst=100, latency=3.0)], {"limit": 32}, 32),
        ([KeyDemand(rate=1000, burst=1000, latency=30.0)], {}, SAFETY_CAP),
        ([KeyDemand(rate=1000, burst=1000, latency=30.0)], {"limit": 5000}, SAFETY_CAP),
        # nothing to serve (every key disabled): still one, which fails with the reason
        ([], {}, 1),
    ],
)
def test_in_flight_target_follows_littles_law(keys, options, expected):
    assert in_flight_target(keys, **options) == expected


def test_the_target_follows_measured_latency_and_learned_limits():
    pool = KeyPool([{"key": "sk-a-123456789", "alias": "a", "rpm": 600}, {"key": "sk-b-123456789", "alias": "b"}],
                   clock=lambda: 0.0)
    a, b = pool.key_state("a"), pool.key_state("b")
    assert demand_of(b, MODEL, 100) == KeyDemand(probe=PROBE_IN_FLIGHT)
    before = pool.in_flight_target(MODEL, 100)
    assert before == math.ceil(10 * DEFAULT_LATENCY * HEADROOM + 10) + PROBE_IN_FLIGHT
    for _ in range(30):
        a.latency_of(MODEL).add(1.0)
    assert pool.in_flight_target(MODEL, 100) == math.ceil(10 * 1.0 * HEADROOM + 10) + PROBE_IN_FLIGHT
    b.learn(RateLimitSnapshot(limit_requests=1200), 0.0)  # b's limit comes with its first answer
    b.latency_of(MODEL).add(2.0)
    assert pool.in_flight_target(MODEL, 100) == math.ceil(10 * HEADROOM + 10 + 20 * 2 * HEADROOM + 20)
    b.disabled = "key refused (HTTP 401)"
    assert pool.in_flight_target(MODEL, 100, limit=8) == 8
    assert pool.in_flight_target(MODEL, 100) == math.ceil(10 * HEADROOM + 10)


def test_a_tpm_only_key_serves_tpm_over_tokens_per_request():
    state = KeyState(ApiKey("sk-a-123456789", "a", tpm=60_000))  # 1000 tokens/s
    demand = demand_of(state, MODEL, 500)
    assert demand.rate == pytest.approx(2.0) and demand.burst == pytest.approx(2.0)


# ---- the workers -----------------------------------------------------------------------------------------
def test_workers_follow_a_target_that_changes_as_items_finish():
    async def main():
        goal = {"n": 3}
        in_flight, peak, seen, order = 0, [], [], []
        gate: asyncio.Queue[None] = asyncio.Queue()

        async def work(todo):
            nonlocal in_flight
            for i in todo:
                in_flight += 1
                peak.append(in_flight)
                await gate.get()
                in_flight -= 1
                order.append(i)
                if i == 4:
                    goal["n"] = 10
                if i == 40:
                    goal["n"] = 2
                if not workers.keep_going():
                    return

        workers = Workers(range(60), work, lambda: goal["n"], reread_seconds=0.0)
        runner = asyncio.create_task(workers.run())
        for _ in range(60):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            seen.append(workers.active)
            gate.put_nowait(None)
        await runner
        return peak, seen, order

    peak, seen, order = asyncio.run(main())
    assert sorted(order) == list(range(60))  # every item exactly once
    assert max(peak[:4]) <= 3 and max(peak) == 10 and max(peak[-10:]) <= 2
    assert max(seen) == 10 and seen[-1] <= 2  # the workers themselves, not only the items in flight


def test_workers_make_no_task_per_item_and_raise_a_workers_error():
    clock = itertools.count(0.0, 0.01)  # each item takes 10 ms
    reads = []

    def count_reads() -> int:
        reads.append(1)
        return 8

    async def main():
        made = 0

        async def work(todo):
            nonlocal made
            made += 1
            for i in todo:
                await asyncio.sleep(0)
                if i == 50_000:
                    raise RuntimeError("boom")
                if not workers.keep_going():
                    return

        workers = Workers(range(100_000), work, count_reads, clock=clock.__next__, reread_seconds=0.05)
        with pytest.raises(RuntimeError, match="boom"):
            await workers.run()
        return made

    assert asyncio.run(main()) == 8
    assert len(reads) <= 50_000 * 0.01 / 0.05 + 2  # the target is read every 50 ms, not after every item


# ---- aged snapshots --------------------------------------------------------------------------------------
def test_an_old_remaining_header_no_longer_throttles():
    """A key told 10 rps sent a burst of 10 at t=0; the last one's answer comes at t=1.0 saying 'remaining 0'.
    That was true at t=0; by now the bucket refilled. Taken as current it had blocked the key for a second."""
    state = KeyState(ApiKey("sk-a-123456789", "a", rpm=600))
    for _ in range(10):
        state.take(1, 0.0)
    mark = state.mark(0.0)
    state.learn(RateLimitSnapshot(limit_requests=600, remaining_requests=0), 1.0, mark)
    assert state.wait_time(1, 1.0) == 0.0
    # our own requests sent since are not in the header, and must not count twice
    for _ in range(5):
        state.take(1, 1.0)
    state.learn(RateLimitSnapshot(limit_requests=600, remaining_requests=0), 1.2, mark)
    assert state.rpm.level == pytest.approx(5.0 - 2.0)  # our own count: 5 sent at t=1.0, 0.2 s drained
    assert state.wait_time(1, 1.2) == 0.0


def test_a_real_deficit_still_throttles():
    """Another client uses the key too: the server had less left than we believed; that correction stays."""
    state = KeyState(ApiKey("sk-a-123456789", "a", rpm=600))
    state.take(1, 0.0)
    mark = state.mark(0.0)  # we believe 9 of 10 are left
    state.learn(RateLimitSnapshot(remaining_requests=0), 0.2, mark)  # the server had none left
    assert state.rpm.level == pytest.approx(10 - 2.0)  # 0.2 s refilled 2, nothing sent since
    assert state.wait_time(1, 0.2) == 0.0
    state.take(1, 0.2)
    state.take(1, 0.2)
    assert state.wait_time(1, 0.2) == pytest.approx(0.1)


def test_a_learned_limit_starts_from_the_aged_snapshot():
    """The first limit learned from headers: the bucket starts with what the server has left now, not empty."""
    state = KeyState(ApiKey("sk-a-123456789", "a"))
    state.take(1, 0.0)
    mark = state.mark(0.0)
    for _ in range(7):
        state.take(1, 0.0)
    state.learn(RateLimitSnapshot(limit_requests=600, remaining_requests=8), 0.1, mark)
    assert state.rpm.level == pytest.approx(10 - (8 + 1 - 7))  # 8 left then, 1 refilled, 7 sent since


# ---- the paced first probe -------------------------------------------------------------------------------
def test_a_key_of_unknown_limits_is_paced_until_its_first_answer():
    state = KeyState(ApiKey("sk-a-123456789", "a"))
    for _ in range(PROBE_BURST):  # a small burst at once
        assert state.wait_time(1, 0.0) == 0.0
        state.take(1, 0.0)
    assert state.wait_time(1, 0.0) == pytest.approx(PROBE_SPACING)  # then one at a time
    assert state.wait_time(1, PROBE_SPACING) == 0.0
    state.take(1, PROBE_SPACING)
    assert state.wait_time(1, PROBE_SPACING) == pytest.approx(PROBE_SPACING)
    state.finish(1, None, 0.5)  # an answer without limit headers: probing by in-flight allowance only
    state.take(1, 0.5)
    assert state.wait_time(1, 0.5) == 0.0


def test_the_progress_line_shows_in_flight_over_target_while_running():
    from nbllm._progress import BatchProgress

    progress = BatchProgress(10, clock=lambda: 0.0)
    assert "in flight" not in progress.format_line()  # not set by a batch: not shown
    progress.in_flight, progress.in_flight_target = 58, 60
    assert "in flight 58/60" in progress.format_line() and progress.format_dict()["in flight"] == "58/60"
    for _ in range(10):
        progress.item_done(ok=True)
    assert "in flight" not in progress.format_line()  # finished
