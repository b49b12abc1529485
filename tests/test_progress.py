"""BatchProgress counters, sliding-window rates and the text/HTML formatters, on a fake clock."""

from __future__ import annotations

import time

import pytest

from nbllm._format import format_count, format_duration, format_tokens
from nbllm._keys.status import format_key_line, format_key_table, format_key_table_html
from nbllm._progress.state import BatchProgress


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("func", "value", "expected"),
    [
        (format_count, 0, "0"),
        (format_count, 1234, "1 234"),
        (format_count, 1234567, "1 234 567"),
        (format_tokens, 950, "950"),
        (format_tokens, 95_300, "95.3k"),
        (format_tokens, 1_200_000, "1.2M"),
        (format_tokens, 200_000, "200k"),
        (format_tokens, 999_999, "1M"),
        (format_duration, 0, "0:00"),
        (format_duration, 651, "10:51"),
        (format_duration, 3723, "1:02:03"),
        (format_duration, -5, "0:00"),
    ],
)
def test_number_formats(func, value, expected) -> None:
    assert func(value) == expected


def test_counters_and_tokens() -> None:
    clock = FakeClock()
    p = BatchProgress(total=10, model="gpt-4o-mini", clock=clock)
    p.item_done(ok=True, prompt_tokens=100, completion_tokens=50, key_alias="key-1")
    p.item_done(ok=False, key_alias="key-2")
    p.item_done(ok=True, cached=True, prompt_tokens=999, completion_tokens=999, key_alias="key-1")
    assert (p.done, p.ok, p.failed, p.cached) == (3, 2, 1, 1)
    assert p.tokens == 150  # the cached answer cost nothing
    assert p.by_key == {"key-1": 2, "key-2": 1}
    assert p.cost == pytest.approx((100 * 0.15 + 50 * 0.60) / 1e6)
    assert BatchProgress(1, model="local-llama").cost is None


def test_rates_over_sliding_window() -> None:
    clock = FakeClock()
    p = BatchProgress(total=1000, clock=clock)
    assert p.eta is None and p.requests_per_minute == 0
    for _ in range(60):  # one item per second, 100 tokens each, for a minute
        clock.advance(1.0)
        p.item_done(ok=True, prompt_tokens=60, completion_tokens=40)
    # the last 30 s hold 30 items (t = 31..60 inclusive of the boundary) -> 60 req/min
    assert p.requests_per_minute == pytest.approx(62, abs=2)
    assert p.tokens_per_minute == pytest.approx(6200, abs=200)
    assert p.eta == pytest.approx(940 * 60 / p.requests_per_minute)
    clock.advance(10.0)  # a stall lowers the recent rate without any new item
    assert p.requests_per_minute == pytest.approx(40, abs=2)
    clock.advance(60.0)  # nothing for over 30 s: the rate is unknown, not zero-divided
    assert p.requests_per_minute == 0 and p.eta is None


def test_early_rate_uses_elapsed_time_not_the_full_window() -> None:
    clock = FakeClock()
    p = BatchProgress(total=100, clock=clock)
    clock.advance(2.0)
    for _ in range(10):
        p.item_done(ok=True)
    assert p.requests_per_minute == pytest.approx(300)  # 10 items in 2 s
    assert p.eta == pytest.approx(90 / 5)


def test_eta_zero_when_finished_and_cached_items_are_not_requests() -> None:
    clock = FakeClock()
    p = BatchProgress(total=3, clock=clock)
    clock.advance(1.0)
    for _ in range(3):
        p.item_done(ok=True, cached=True)
    assert p.requests_per_minute == 0
    assert p.eta == 0.0


def test_format_line_and_dict() -> None:
    clock = FakeClock()
    p = BatchProgress(total=10_000, model="gpt-4o-mini", clock=clock)
    clock.advance(30.0)
    for i in range(1234):
        p.item_done(ok=i >= 4, prompt_tokens=60, completion_tokens=20, cached=False)
    line = p.format_line()
    assert line.startswith("1 234/10 000 ✓1 230 ✗4 ⟲0 · 2468 req/min · 197.4k tok/min · $0.026 · ETA ")
    assert line.endswith("ETA 3:33")  # 8 766 left at 2 468/min = 213 s
    d = p.format_dict()
    assert d == {
        "ok": 1230, "failed": 4, "cached": 0, "req/min": "2468", "tok/min": "197.4k",
        "cost": "$0.026", "ETA": "3:33",
    }
    assert "cost" not in BatchProgress(5, model="unknown", clock=clock).format_dict()


def test_summary() -> None:
    clock = FakeClock()
    p = BatchProgress(total=2, model="gpt-4o", clock=clock)
    p.item_done(ok=True, prompt_tokens=1000, completion_tokens=500)
    clock.advance(60.0)
    p.item_done(ok=True, cached=True)
    assert p.summary() == "2/2 done in 1:00 · ✓2 ✗0 ⟲1 · 1.5k tokens · $0.0075 · 2 req/min average"
    assert "BatchProgress 2/2" in repr(p)


def test_hundred_thousand_items_are_cheap() -> None:
    p = BatchProgress(total=100_000, model="gpt-4o-mini")
    started = time.perf_counter()
    for i in range(100_000):
        p.item_done(ok=True, prompt_tokens=10, completion_tokens=5, key_alias=f"key-{i % 3}")
        if i % 100 == 0:  # the displays read the rates often, too
            p.format_line()
    assert time.perf_counter() - started < 1.0
    assert p.done == 100_000 and len(p._window) <= 100_000


def test_window_stays_bounded() -> None:
    clock = FakeClock()
    p = BatchProgress(total=10_000, clock=clock)
    for _ in range(10_000):
        clock.advance(0.1)
        p.item_done(ok=True)
    assert len(p._window) <= 301


KEY_ROWS = [
    {"alias": "key-1", "masked": "sk-…abcd", "provider": "openai", "state": "ready", "in_flight": 12,
     "done": 340, "rate_limited": 0, "tokens": 95_300, "rpm": 500, "tpm": 200_000, "learned": True},
    {"alias": "key-2", "masked": "sk-…wxyz", "provider": "openai", "state": "cooling down 2.1s",
     "in_flight": 0, "done": 7, "rate_limited": 3, "tokens": 900, "rpm": None, "tpm": None},
    {"alias": "key-3", "masked": "sk-…<b>&", "provider": "openai", "state": "disabled: revoked",
     "in_flight": 0, "done": 0, "rate_limited": 0, "tokens": 0, "rpm": 60, "tpm": None},
]


def test_format_key_table() -> None:
    assert format_key_table(KEY_ROWS).splitlines() == [
        "key    masked    provider  state              in flight  done  429s  tokens   rpm    tpm",
        "key-1  sk-…abcd  openai    ready                     12   340     0   95.3k  500~  200k~",
        "key-2  sk-…wxyz  openai    cooling down 2.1s          0     7     3     900     –      –",
        "key-3  sk-…<b>&  openai    disabled: revoked          0     0     0       0    60      –",
    ]


def test_format_key_table_html_escapes() -> None:
    out = format_key_table_html(KEY_ROWS)
    assert out.startswith("<table") and out.endswith("</table>")
    assert out.count("<tr>") == 4
    assert "sk-…&lt;b&gt;&amp;" in out and "<b>" not in out
    assert "500~" in out and "–" in out
    assert "color:#c62828" in out  # the disabled key stands out


def test_format_key_line() -> None:
    assert format_key_line(KEY_ROWS) == (
        "key-1 ● 12 in flight 340 done │ key-2 ⏸ cooling 2.1s │ key-3 ✗ revoked"
    )
    assert format_key_line([{"alias": "k", "state": "waiting for TPM"}]) == "k · waiting for TPM"
    assert format_key_line([]) == ""
