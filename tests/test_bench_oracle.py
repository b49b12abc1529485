"""The latency benchmark's oracle client (``benchmarks/_oracle.py``): its bucket mirror never plans a request
over a key's limit (pure, property-based), and against the real simulator it gets every answer without a
single 429, never touches a dead key, and retries 500s at once. Then the benchmark's arithmetic
(``benchmarks/_latency_model.py``): the ideal wall time and the per-key rates it reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives beside nbllm

from benchmarks._latency_model import LatencyKey, LatencyScenario, achieved_rates, ideal_wall, interleave  # noqa: E402
from benchmarks._oracle import KeyMirror, OracleKey, ideal_send_times, run_oracle, soonest  # noqa: E402

from nbllm._sim import Faults, KeyProfile, SimConfig, Simulator  # noqa: E402


@pytest.mark.parametrize(
    ("keys", "n", "expected"),
    [
        # 600 rpm with a 1 s window: a bucket of 10 at once, then one every 0.1 s
        ([OracleKey("k", "a", rpm=600)], 13, [0.0] * 10 + [0.1, 0.2, 0.3]),
        # 60 rpm: a bucket of 1; the dead key is never used
        ([OracleKey("k", "a", rpm=60), OracleKey("d", "dead", rpm=6000, dead=True)], 3, [0.0, 1.0, 2.0]),
        # 120 + 60 rpm: buckets of 2 and 1 at once, then the two keys together at 3 per second
        ([OracleKey("k", "a", rpm=120), OracleKey("l", "b", rpm=60)], 6, [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]),
        # an unlimited key takes everything at once
        ([OracleKey("k", "a")], 4, [0.0] * 4),
    ],
)
def test_ideal_send_times(keys: list[OracleKey], n: int, expected: list[float]) -> None:
    assert ideal_send_times(keys, 1.0, n) == pytest.approx(expected)


def test_ideal_send_times_needs_a_live_key() -> None:
    with pytest.raises(ValueError, match="no live key"):
        ideal_send_times([OracleKey("d", "dead", rpm=60, dead=True)], 1.0, 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(6, 3000), min_size=1, max_size=4), st.floats(0.2, 3.0), st.integers(1, 200))
def test_the_planned_sends_never_exceed_any_keys_bucket(rpms: list[int], window: float, n: int) -> None:
    keys = [OracleKey(f"k{i}", f"k{i}", rpm=rpm) for i, rpm in enumerate(rpms)]
    mirrors = [KeyMirror(k, window, 0.0, slack=0.0) for k in keys]
    sends: dict[str, list[float]] = {k.alias: [] for k in keys}
    now = 0.0
    for _ in range(n):
        mirror, wait = soonest(mirrors, 0.0, now)
        now += wait
        mirror.take(0.0, now)
        sends[mirror.key.alias].append(now)
    for key in keys:
        times = sends[key.alias]
        capacity, rate = max(key.rpm * window / 60.0, 1.0), key.rpm / 60.0
        for i, start in enumerate(times):  # any interval from one send on holds at most capacity + rate × length
            for j in range(i, len(times)):
                assert j - i + 1 <= capacity + rate * (times[j] - start) + 1e-6


def test_the_mirror_keeps_a_margin_for_the_servers_later_clock_and_prefers_the_fullest_key() -> None:
    fast, slow = OracleKey("f", "fast", rpm=600), OracleKey("s", "slow", rpm=300)
    mirrors = [KeyMirror(fast, 1.0, 0.0, slack=0.03), KeyMirror(slow, 1.0, 0.0, slack=0.03)]
    assert soonest(mirrors, 0.0, 0.0)[0].key is fast  # both free: the one with more left
    for _ in range(10):
        mirrors[0].take(0.0, 0.0)
    for _ in range(5):
        mirrors[1].take(0.0, 0.0)
    mirror, wait = soonest(mirrors, 0.0, 0.0)
    assert mirror.key is fast and wait == pytest.approx((1 + 10 * 0.03) / 10)  # one request plus 30 ms of refill


def test_the_mirror_follows_the_token_bucket_from_estimate_to_usage() -> None:
    mirror = KeyMirror(OracleKey("k", "a", tpm=6000), 1.0, 0.0, slack=0.0)  # 100 tokens, 100 per second
    mirror.take(80.0, 0.0)
    assert mirror.wait(50.0, 0.0) == pytest.approx(0.3)
    mirror.settle(80.0, 30.0, 0.0)  # the answer used 30: 50 come back
    assert mirror.wait(70.0, 0.0) == 0.0


async def test_against_the_simulator_no_429_no_dead_key_and_500s_retried() -> None:
    keys = [OracleKey("sk-oracle-test-aaaa1", "a", rpm=1200), OracleKey("sk-oracle-test-bbbb2", "b", rpm=600),
            OracleKey("sk-oracle-test-dead3", "dead", rpm=6000, dead=True)]
    profiles = {k.key: KeyProfile(alias=k.alias, rpm=k.rpm, revoked=k.dead) for k in keys}
    config = SimConfig(keys=profiles, ttft=0.05, ttft_sigma=0.5, tokens_per_second=0, window_seconds=1.0,
                       faults=Faults(error_500=0.1), seed=5)
    prompts = [f"What is {i} + 7?" for i in range(90)]
    with Simulator(config) as sim:
        result = await run_oracle(sim.base_url + "/v1", keys, prompts, window_seconds=1.0, timeout=60)
        stats = sim.stats()
    assert result["ok"] == 90 and result["lost"] == 0
    assert stats["total"]["rate_limited"] == 0 and stats["total"]["unauthorized"] == 0
    assert result["statuses"].get("500", 0) >= 1 and set(result["statuses"]) == {"200", "500"}
    assert "dead" not in result["sent"] and result["sent"]["a"] > result["sent"]["b"]
    # 30 at once, then 30 per second: the last of the 90+ sends is 2 s in at the earliest
    assert result["wall"] >= 2.0


# ---- the latency benchmark's arithmetic ---------------------------------------------------------------------

def _scenario(**overrides) -> LatencyScenario:
    settings_ = dict(code="T", title="test", keys=(LatencyKey("a", 10), LatencyKey("b", 5), LatencyKey("r", 5, "revoked")),
                     items=0, quick_items=0, median=2.0, sigma=0.0)
    return LatencyScenario(**{**settings_, **overrides})


def test_ideal_wall_is_the_last_send_plus_its_latency_and_ignores_dead_keys() -> None:
    prompts = [f"p{i}" for i in range(45)]
    ideal = ideal_wall(_scenario(), prompts)  # 15 at once, then 15 per second: the 45th goes at 2.0 s
    assert ideal["sends"] == pytest.approx(2.0) and ideal["wall"] == pytest.approx(4.0)
    assert ideal["simple"] == pytest.approx(45 / 15 + 2.0)
    stalled = ideal_wall(_scenario(stall=1.0, stall_seconds=10.0), prompts)  # every first answer stalls 10 s
    assert stalled["wall"] == pytest.approx(14.0)


def test_achieved_rates_take_the_first_burst_out() -> None:
    # key a at its full 10/s (a bucket of 10 at once, then 10 per second for 4 s); key b at half of its 5/s
    samples = [(100.0 + t / 10, {"a": 10 + t, "b": 5 + t // 4, "total": 15 + t + t // 4}) for t in range(0, 41)]
    samples.insert(0, (99.9, {"a": 0, "b": 0, "total": 0}))
    rates = achieved_rates(samples, _scenario())
    assert rates["span"] == pytest.approx(4.0)
    assert rates["keys"]["a"]["rps"] == pytest.approx(10.0) and rates["keys"]["b"]["rps"] == pytest.approx(2.5)
    assert set(rates["keys"]) == {"a", "b"}  # the revoked key has no rate
    assert achieved_rates(samples[:1], _scenario()) == {"span": 0.0, "keys": {}}


@pytest.mark.parametrize(
    ("lists", "expected"),
    [([["a1", "a2"], ["b1", "b2"]], ["a1", "b1", "a2", "b2"]), ([["a1"], ["b1", "b2"], []], ["a1", "b1", "b2"]), ([], [])],
)
def test_interleave_takes_each_list_in_turn(lists: list[list[str]], expected: list[str]) -> None:
    assert interleave(lists) == expected
