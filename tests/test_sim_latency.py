"""The simulator's LLM-like latency: lognormal time to first token and stalled requests (a heavy tail).

Pure functions with seeded generators for the distributions; one run over real sockets shows the server
keys its dice by prompt and attempt (a retry of a stalled prompt draws again).
"""

from __future__ import annotations

import math
import random
import statistics
import time

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbllm._sim import Faults, SimConfig, Simulator
from nbllm._sim._hashing import stable_hash
from nbllm._sim._pacing import (
    NO_DRAW,
    LatencyDraw,
    draw_latency,
    lognormal_factor,
    needs_draw,
    nonstream_delay,
    plan_pacing,
)

SAMPLES = 20_000


def _ttfts(config: SimConfig, prompts: int, attempt: int = 1) -> list[float]:
    """Time to first token of the ``attempt``-th answer to each of ``prompts`` distinct prompts."""
    out = []
    for i in range(prompts):
        draw = draw_latency(config, stable_hash(f"prompt {i}"), attempt)
        out.append(plan_pacing(config, 1.0, 0.5, 10, draw=draw).ttft)
    return out


# ---- the lognormal factor ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sigma", "u", "expected"),
    [
        (0.5, 0.5, 1.0),  # the median
        (0.5, 0.8413447460685429, math.exp(0.5)),  # one standard deviation up
        (0.5, 0.15865525393145707, math.exp(-0.5)),
        (1.0, 0.9772498680518208, math.exp(2.0)),  # two up
        (0.0, 0.99, 1.0),  # no spread
    ],
)
def test_lognormal_factor_is_exp_sigma_times_the_normal_quantile(sigma: float, u: float, expected: float) -> None:
    assert lognormal_factor(sigma, u) == pytest.approx(expected, rel=1e-9)


@given(st.floats(0.0, 2.0), st.floats(0.0, 1.0, exclude_max=True), st.floats(0.0, 1.0, exclude_max=True))
def test_lognormal_factor_is_finite_positive_monotone_and_symmetric(sigma: float, u: float, v: float) -> None:
    low, high = sorted((u, v))
    assert 0 < lognormal_factor(sigma, low) <= lognormal_factor(sigma, high) < math.inf
    # the log is symmetric about the median: factor(u) * factor(1 - u) == 1 (away from the clamped edges)
    if 1e-9 < u < 1 - 1e-9:
        assert lognormal_factor(sigma, u) * lognormal_factor(sigma, 1.0 - u) == pytest.approx(1.0, rel=1e-6)


def test_seeded_draws_have_the_configured_median_and_spread() -> None:
    rng = random.Random(1234)
    logs = [math.log(3.0 * lognormal_factor(0.5, rng.random())) for _ in range(SAMPLES)]
    assert math.exp(statistics.median(logs)) == pytest.approx(3.0, rel=0.02)
    assert statistics.stdev(logs) == pytest.approx(0.5, rel=0.03)


# ---- per-prompt, per-attempt draws -------------------------------------------------------------------------
def test_time_to_first_token_over_many_prompts_is_lognormal_around_the_median() -> None:
    config = SimConfig(ttft=3.0, ttft_sigma=0.5, tokens_per_second=0)
    ttfts = _ttfts(config, SAMPLES)
    assert statistics.median(ttfts) == pytest.approx(3.0, rel=0.02)
    assert statistics.stdev(math.log(t) for t in ttfts) == pytest.approx(0.5, rel=0.03)
    # one in ten above median * exp(0.5 * 1.2816) = 5.69 s, as the config's docstring says
    assert sum(t > 5.69 for t in ttfts) / SAMPLES == pytest.approx(0.10, abs=0.01)


def test_draws_repeat_per_prompt_and_attempt_and_differ_across_them() -> None:
    config = SimConfig(ttft=1.0, ttft_sigma=0.8, faults=Faults(stall=0.5), seed=3)
    prompt = stable_hash("What is 2 + 2?")
    assert draw_latency(config, prompt, 1) == draw_latency(config, prompt, 1)
    spreads = {draw_latency(config, prompt, attempt).spread for attempt in range(1, 50)}
    assert len(spreads) == 49  # every retry (or hedge) draws again
    other_seed = SimConfig(ttft=1.0, ttft_sigma=0.8, faults=Faults(stall=0.5), seed=4)
    assert draw_latency(other_seed, prompt, 1) != draw_latency(config, prompt, 1)


def test_stalls_hit_their_share_of_requests_independently_of_the_spread() -> None:
    config = SimConfig(ttft=1.0, ttft_sigma=0.5, faults=Faults(stall=0.03, stall_seconds=10.0))
    draws = [draw_latency(config, stable_hash(f"prompt {i}"), 1) for i in range(SAMPLES)]
    stalled = [d for d in draws if d.stall]
    assert len(stalled) / SAMPLES == pytest.approx(0.03, abs=0.004)
    assert {d.stall for d in stalled} == {10.0}
    # a stalled request's own latency factor is drawn like anyone's (median 1): the dice are independent
    assert statistics.median(d.spread for d in stalled) == pytest.approx(1.0, abs=0.12)
    # and a retry of a stalled prompt is stalled again only at the base rate
    again = sum(draw_latency(config, stable_hash(f"prompt {i}"), 2).stall > 0
                for i, d in enumerate(draws) if d.stall)
    assert again <= 0.03 * len(stalled) + 5


def test_without_sigma_or_stall_nothing_is_drawn_and_the_uniform_jitter_stays() -> None:
    plain = SimConfig(ttft=1.0, ttft_jitter=0.2)
    assert not needs_draw(plain)
    assert needs_draw(SimConfig(ttft_sigma=0.3)) and needs_draw(SimConfig(faults=Faults(stall=0.01)))
    assert plan_pacing(plain, 1.0, 0.0, 5).ttft == pytest.approx(0.8)
    assert plan_pacing(plain, 1.0, 0.0, 5, draw=NO_DRAW) == plan_pacing(plain, 1.0, 0.0, 5)
    # with sigma the uniform die no longer matters
    lognormal = SimConfig(ttft=1.0, ttft_jitter=0.2, ttft_sigma=0.5)
    assert plan_pacing(lognormal, 1.0, 0.0, 5, draw=LatencyDraw(2.0)).ttft == pytest.approx(2.0)
    assert plan_pacing(lognormal, 1.0, 0.9, 5, draw=LatencyDraw(2.0)).ttft == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("config", "scale", "draw", "pieces", "ttft", "delay"),
    [
        # ttft = median * spread * key scale + stall; non-stream = ttft + generation
        (SimConfig(ttft=2.0, ttft_sigma=0.5, tokens_per_second=0), 1.0, LatencyDraw(1.5, 0.0), 8, 3.0, 3.0),
        (SimConfig(ttft=2.0, ttft_sigma=0.5, tokens_per_second=0), 2.0, LatencyDraw(1.5, 10.0), 8, 16.0, 16.0),
        (SimConfig(ttft=1.0, ttft_sigma=0.5, tokens_per_second=10), 1.0, LatencyDraw(0.5, 0.0), 11, 0.5, 1.6),
        # with a fixed total latency the spread scales it and the stall adds to it
        (SimConfig(ttft=1.0, ttft_sigma=0.5, latency=4.0), 1.0, LatencyDraw(0.5, 10.0), 8, 10.5, 12.0),
        (SimConfig(ttft=1.0, ttft_jitter=0.0, latency=4.0), 1.0, LatencyDraw(1.0, 5.0), 8, 6.0, 9.0),
    ],
)
def test_pacing_combines_spread_key_scale_and_stall(config, scale, draw, pieces, ttft, delay) -> None:
    pacing = plan_pacing(config, scale, 0.5, pieces, draw=draw)
    assert pacing.ttft == pytest.approx(ttft)
    assert nonstream_delay(config, pacing, pieces, scale) == pytest.approx(delay)


# ---- the server keys the dice by prompt and attempt ----------------------------------------------------------
def _prompt_stalled_then_not(config: SimConfig) -> str:
    """A prompt whose first answer is stalled and whose second is not, found with the pure draw."""
    for i in range(10_000):
        prompt = f"What is {i} + 1?"
        first, second = (draw_latency(config, stable_hash(prompt), attempt) for attempt in (1, 2))
        if first.stall and not second.stall:
            return prompt
    raise AssertionError("no such prompt in 10 000")


def test_the_server_stalls_the_attempt_the_pure_draw_says_and_a_retry_draws_again() -> None:
    config = SimConfig(ttft=0.0, ttft_sigma=0.5, tokens_per_second=0, faults=Faults(stall=0.3, stall_seconds=1.0))
    prompt = _prompt_stalled_then_not(config)
    with Simulator(config) as sim:
        client = openai.OpenAI(api_key="sk-any", base_url=sim.base_url + "/v1", max_retries=0)
        elapsed = []
        for _ in range(2):
            start = time.monotonic()
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
            elapsed.append(time.monotonic() - start)
        client.close()
    assert elapsed[0] >= 1.0  # asyncio.sleep never ends early: the stall really happened
    assert elapsed[1] < 0.9, elapsed  # the second answer is a new attempt, not stalled (ttft 0 * spread = 0)
