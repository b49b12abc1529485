"""Rate-limit headers of OpenAI, Azure and Anthropic, table-driven, with a fixed "now"."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from nbllm._keys.snapshot import RateLimitSnapshot
from nbllm._client.ratelimits import (
    parse_anthropic,
    parse_duration,
    parse_openai,
    parse_rate_limit_headers,
)

NOW = datetime(2026, 11, 21, 23, 59, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", 1.0),
        ("12ms", 0.012),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),  # U+00B5 micro sign, as Go prints it
        ("250μs", 0.00025),  # U+03BC Greek mu, which Go also accepts
        ("100ns", 1e-7),
        ("1m30.5s", 90.5),
        ("7.66s", 7.66),
        ("2h", 7200.0),
        (".5s", 0.5),
        ("0s", 0.0),
        ("5", 5.0),  # bare number: seconds
        ("0.25", 0.25),
        (" 3s ", 3.0),
        ("", None),
        ("s", None),
        ("1x", None),
        ("1s garbage", None),
        ("-1s", None),
        ("1 s", None),
        ("abc", None),
        ("1.2.3s", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_duration(text: str, expected: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(expected) if expected is not None else None)


OPENAI_FULL = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "29000",
    "x-ratelimit-reset-tokens": "6m0s",
}
OPENAI_SNAPSHOT = RateLimitSnapshot(500, 499, 0.12, 30000, 29000, 360.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (OPENAI_FULL, OPENAI_SNAPSHOT),
        ({k.upper(): v for k, v in OPENAI_FULL.items()}, OPENAI_SNAPSHOT),
        ({}, RateLimitSnapshot()),
        # Azure: -1/0 limits mean "unknown"; remaining 0 is real, -1 is not
        (
            {
                "x-ratelimit-limit-requests": "-1",
                "x-ratelimit-limit-tokens": "0",
                "x-ratelimit-remaining-tokens": "0",
            },
            RateLimitSnapshot(remaining_tokens=0),
        ),
        ({"x-ratelimit-remaining-requests": "-1"}, RateLimitSnapshot()),
        (
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"},
            RateLimitSnapshot(remaining_requests=0, reset_requests=1.0),
        ),
        ({"x-ratelimit-limit-tokens": "1000.0"}, RateLimitSnapshot(limit_tokens=1000)),
        ({"x-ratelimit-limit-tokens": "1000.5"}, RateLimitSnapshot()),
        ({"x-ratelimit-limit-tokens": "lots", "x-ratelimit-reset-tokens": "soon"}, RateLimitSnapshot()),
        ({"x-ratelimit-reset-tokens": "2"}, RateLimitSnapshot(reset_tokens=2.0)),
    ],
)
def test_parse_openai(headers: dict[str, str], expected: RateLimitSnapshot) -> None:
    assert parse_openai(headers) == expected


ANTHROPIC_FULL = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2026-11-21T23:59:30Z",
    "anthropic-ratelimit-tokens-limit": "80000",
    "anthropic-ratelimit-tokens-remaining": "79000",
    "anthropic-ratelimit-tokens-reset": "2026-11-22T00:01:00Z",
}
RESET = "anthropic-ratelimit-requests-reset"
SPLIT_TOKENS = {
    "anthropic-ratelimit-requests-remaining": "10",
    "anthropic-ratelimit-input-tokens-limit": "40000",
    "anthropic-ratelimit-input-tokens-remaining": "39000",
    "anthropic-ratelimit-input-tokens-reset": "2026-11-21T23:59:01Z",
    "anthropic-ratelimit-output-tokens-limit": "8000",
    "anthropic-ratelimit-output-tokens-remaining": "8000",
    "anthropic-ratelimit-output-tokens-reset": "2026-11-21T23:59:05Z",
}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (ANTHROPIC_FULL, RateLimitSnapshot(50, 49, 30.0, 80000, 79000, 120.0)),
        ({RESET.title(): "2026-11-21T23:59:30.250Z"}, RateLimitSnapshot(reset_requests=30.25)),
        ({RESET: "2026-11-21T23:59:30.123456789Z"}, RateLimitSnapshot(reset_requests=pytest.approx(30.123456))),
        ({RESET: "2026-11-22T01:59:30+02:00"}, RateLimitSnapshot(reset_requests=30.0)),
        ({RESET: "2026-11-21t23:59:30z"}, RateLimitSnapshot(reset_requests=30.0)),
        ({RESET: "2026-11-21T23:58:00Z"}, RateLimitSnapshot(reset_requests=0.0)),  # in the past: 0
        ({RESET: "2026-11-21T23:59:30"}, RateLimitSnapshot(reset_requests=30.0)),  # no offset: UTC
        ({RESET: "tomorrow"}, RateLimitSnapshot()),
        ({"anthropic-ratelimit-requests-limit": "0"}, RateLimitSnapshot()),
        # no plain tokens family: fall back to input tokens
        (SPLIT_TOKENS, RateLimitSnapshot(None, 10, None, 40000, 39000, 1.0)),
        (
            {k: v for k, v in SPLIT_TOKENS.items() if "output" not in k},
            RateLimitSnapshot(None, 10, None, 40000, 39000, 1.0),
        ),
        # plain tokens family present: it wins over input tokens
        (
            {**SPLIT_TOKENS, "anthropic-ratelimit-tokens-remaining": "5000"},
            RateLimitSnapshot(None, 10, None, None, 5000, None),
        ),
        ({}, RateLimitSnapshot()),
    ],
)
def test_parse_anthropic(headers: dict[str, str], expected: RateLimitSnapshot) -> None:
    assert parse_anthropic(headers, NOW) == expected


def test_parse_anthropic_naive_now_is_utc() -> None:
    naive_now = NOW.replace(tzinfo=None)
    assert parse_anthropic(ANTHROPIC_FULL, naive_now).reset_requests == 30.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (OPENAI_FULL, RateLimitSnapshot(500, 499, 0.12, 30000, 29000, 360.0)),
        (ANTHROPIC_FULL, RateLimitSnapshot(50, 49, 30.0, 80000, 79000, 120.0)),
        ({**OPENAI_FULL, **ANTHROPIC_FULL}, RateLimitSnapshot(50, 49, 30.0, 80000, 79000, 120.0)),
        ({"content-type": "text/event-stream"}, RateLimitSnapshot()),
        ({}, RateLimitSnapshot()),
    ],
)
def test_parse_rate_limit_headers(headers: dict[str, str], expected: RateLimitSnapshot) -> None:
    assert parse_rate_limit_headers(headers, NOW) == expected


@pytest.mark.parametrize(
    ("snapshot", "empty"),
    [
        (RateLimitSnapshot(), True),
        (RateLimitSnapshot(remaining_tokens=0), False),
        (RateLimitSnapshot(reset_requests=0.0), False),
    ],
)
def test_is_empty(snapshot: RateLimitSnapshot, empty: bool) -> None:
    assert snapshot.is_empty is empty


def test_httpx_headers_and_now_offset() -> None:
    httpx2 = pytest.importorskip("httpx2")
    headers = httpx2.Headers({"X-RateLimit-Remaining-Requests": "3", "X-RateLimit-Reset-Requests": "1m"})
    snapshot = parse_rate_limit_headers(headers, NOW + timedelta(hours=1))  # OpenAI resets ignore now
    assert snapshot == RateLimitSnapshot(remaining_requests=3, reset_requests=60.0)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(RateLimitSnapshot)])
def test_is_empty_sees_every_field(name: str) -> None:
    """``is_empty`` names the fields one by one: a field added later must be named there too."""
    assert not RateLimitSnapshot(**{name: 1}).is_empty
