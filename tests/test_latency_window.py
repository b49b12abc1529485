"""LatencyWindow: the latency record admission and hedging share (pure arithmetic)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbllm._keys import KeyPool, LatencyWindow
from nbllm._keys.latency import MIN_SAMPLES, WINDOW


def test_nothing_is_said_below_the_minimum():
    window = LatencyWindow()
    for _ in range(MIN_SAMPLES - 1):
        window.add(1.0)
    assert window.mean() is None and window.quantile(0.95) is None
    window.add(1.0)
    assert window.mean() == 1.0 and window.quantile(0.95) == 1.0


@pytest.mark.parametrize(("q", "expected"), [(0.0, 1.0), (0.5, 50.0), (0.95, 95.0), (1.0, 100.0)])
def test_quantile_is_nearest_rank(q, expected):
    window = LatencyWindow()
    for value in range(100, 0, -1):
        window.add(float(value))
    assert window.quantile(q) == expected


def test_bogus_samples_are_ignored():
    window = LatencyWindow()
    for value in (-1.0, math.inf, math.nan):
        window.add(value)
    assert len(window) == 0


@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=600))
def test_window_keeps_the_last_samples_and_their_mean(values):
    window = LatencyWindow()
    for value in values:
        window.add(value)
    kept = values[-WINDOW:]
    assert len(window) == len(kept)
    assert window.mean(minimum=1) == pytest.approx(sum(kept) / len(kept), rel=1e-9, abs=1e-6)
    assert window.quantile(0.95, minimum=1) in kept
    assert min(kept) <= window.quantile(0.5, minimum=1) <= max(kept)


async def test_a_lease_records_how_long_its_answer_took():
    now = [100.0]
    pool = KeyPool([{"key": "sk-test-aaaa1111", "rpm": 600}], clock=lambda: now[0])
    lease = await pool.acquire("openai", "m", 10)
    now[0] += 2.5
    lease.succeeded(12)
    window = pool.key_state("key-1").latency_of("m")
    assert len(window) == 1 and window.mean(minimum=1) == 2.5
