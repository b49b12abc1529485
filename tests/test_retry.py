"""Retry decisions and delays, table-driven against a frozen clock (cf. openai-python's retry table)."""

from __future__ import annotations

import pytest

from nbllm._exceptions import ConfigurationError
from nbllm._client.retry import RetryPolicy, backoff_delay, error_retry_delay, is_retryable_status, parse_retry_after

# Wed, 21 Oct 2015 07:28:00 GMT as a UNIX timestamp: the "now" of every HTTP-date row.
NOW = 1445412480.0
POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("attempt", "headers", "rand", "expected"),
    [
        # exponential backoff without server advice: 0.5, 1, 2, 4 (rand=0 means no jitter)
        (0, {}, 0.0, 0.5),
        (1, {}, 0.0, 1.0),
        (2, {}, 0.0, 2.0),
        (3, {}, 0.0, 4.0),
        (4, {}, 0.0, None),  # max_retries=4 used up
        (9, {}, 0.0, None),
        # jitter shortens by up to 25 %
        (0, {}, 0.5, 0.4375),
        (3, {}, 0.999, 4.0 * (1 - 0.25 * 0.999)),
        # retry-after in seconds, exact, no jitter
        (0, {"retry-after": "7"}, 0.9, 7.0),
        (0, {"Retry-After": "1.5"}, 0.9, 1.5),
        (0, {"retry-after": "0"}, 0.9, 0.0),
        (0, {"retry-after": "120"}, 0.0, 120.0),
        (0, {"retry-after": "121"}, 0.0, None),  # longer than max_retry_after: do not retry
        (0, {"retry-after": "3600"}, 0.0, None),
        (4, {"retry-after": "1"}, 0.0, None),  # out of retries beats the server's advice
        # retry-after-ms wins over retry-after
        (0, {"retry-after-ms": "250"}, 0.0, 0.25),
        (0, {"RETRY-AFTER-MS": "1500", "retry-after": "99"}, 0.0, 1.5),
        (0, {"retry-after-ms": "121000"}, 0.0, None),
        (0, {"retry-after-ms": "soon", "retry-after": "3"}, 0.0, 3.0),
        (0, {"retry-after-ms": "-5", "retry-after": "3"}, 0.0, 3.0),
        # HTTP dates relative to NOW
        (0, {"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 0.0, 30.0),
        (0, {"retry-after": "Wed, 21 Oct 2015 07:30:00 GMT"}, 0.0, 120.0),
        (0, {"retry-after": "Wed, 21 Oct 2015 07:31:00 GMT"}, 0.0, None),
        (1, {"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0, 1.0),  # past date: backoff
        # garbage and negative fall back to backoff
        (0, {"retry-after": "soon"}, 0.0, 0.5),
        (0, {"retry-after": ""}, 0.0, 0.5),
        (0, {"retry-after": "-3"}, 0.0, 0.5),
        (2, {"retry-after": "nan"}, 0.0, 2.0),
        (2, {"retry-after": "inf"}, 0.0, 2.0),
    ],
)
def test_backoff_delay_table(
    attempt: int, headers: dict[str, str], rand: float, expected: float | None
) -> None:
    delay = backoff_delay(attempt, POLICY, parse_retry_after(headers, NOW), rand)
    assert delay == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("policy", "attempt", "retry_after", "expected"),
    [
        (RetryPolicy(max_delay=8.0), 5, None, None),
        (RetryPolicy(max_retries=10), 5, None, 8.0),  # 0.5 * 32 capped at max_delay
        (RetryPolicy(max_retries=10_000), 5_000, None, 8.0),  # no float overflow
        (RetryPolicy(max_retries=0), 0, None, None),
        (RetryPolicy(max_retries=0), 0, 1.0, None),
        (RetryPolicy(max_retry_after=10), 0, 10.0, 10.0),
        (RetryPolicy(max_retry_after=10), 0, 10.01, None),
        (RetryPolicy(initial_delay=2.0, jitter=0.0), 1, None, 4.0),
        (RetryPolicy(), 0, -1.0, 0.5),  # a negative retry_after is ignored
    ],
)
def test_backoff_delay_policies(
    policy: RetryPolicy, attempt: int, retry_after: float | None, expected: float | None
) -> None:
    assert backoff_delay(attempt, policy, retry_after, rand=0.0) == expected


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (400, {}, False),
        (401, {}, False),
        (403, {}, False),
        (404, {}, False),
        (408, {}, True),
        (409, {}, True),
        (422, {}, False),
        (429, {}, True),
        (500, {}, True),
        (502, {}, True),
        (503, {}, True),
        (529, {}, True),  # Anthropic "overloaded"
        (200, {}, False),
        (400, {"x-should-retry": "true"}, True),
        (429, {"x-should-retry": "false"}, False),
        (503, {"X-Should-Retry": "False"}, False),
        (401, {"X-SHOULD-RETRY": " TRUE "}, True),
        (429, {"x-should-retry": "maybe"}, True),  # unknown value: fall back to the status
        (400, {"x-should-retry": ""}, False),
    ],
)
def test_is_retryable_status(status: int, headers: dict[str, str], expected: bool) -> None:
    assert is_retryable_status(status, headers) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after-ms": "10"}, 0.01),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:01 GMT"}, 1.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"retry-after": "Wed, 21 Oct 2015 09:28:00 +0200"}, 0.0),
        ({"retry-after": "Tue, 20 Oct 2015 07:28:00 GMT"}, None),
        ({"retry-after": "not a date"}, None),
        ({"retry-after-ms": "-1"}, None),
        ({"other": "5"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, NOW) == expected


def test_parse_retry_after_accepts_httpx_headers() -> None:
    httpx2 = pytest.importorskip("httpx2")
    assert parse_retry_after(httpx2.Headers({"Retry-After": "4"}), NOW) == 4.0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"initial_delay": -0.1}, {"max_delay": -1}, {"max_retry_after": -1}, {"jitter": 1.5}],
)
def test_policy_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_negative_attempt_is_a_bug() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, POLICY, None, 0.0)


@pytest.mark.parametrize(
    ("errors", "retry_after", "answering", "expected"),
    [
        # a service that answers nearly everything: the failure was bad luck, retry at once
        (0, None, True, 0.0),
        (2, None, True, 0.0),
        (3, None, True, 0.0),
        (4, None, True, None),  # out of retries all the same
        # a service that is failing: the usual backoff (rand=0: no jitter)
        (0, None, False, 0.5),
        (2, None, False, 2.0),
        (4, None, False, None),
        # a wait the server asked for is honoured either way
        (0, 3.0, True, 3.0),
        (0, 3.0, False, 3.0),
        (0, 0.0, True, 0.0),
        (0, 500.0, True, None),  # longer than max_retry_after: do not retry
        (1, -1.0, True, 0.0),  # a negative one is ignored
    ],
)
def test_error_retry_delay_skips_the_backoff_only_while_the_service_answers(
    errors: int, retry_after: float | None, answering: bool, expected: float | None
) -> None:
    assert error_retry_delay(errors, POLICY, retry_after, 0.0, service_answering=answering) == expected
