"""When to retry a failed request, and how long to wait first. Pure: no clock, no I/O.

``is_retryable_status`` is the one rule for error answers: the client applies it to every non-200
response (``nbllm._client.call``). Errors that arrive inside a 200 stream have no status; they are
retried by their kind (overloaded and server errors are, bad requests are not). The rules follow
openai-python 3.x (``_base_client.py``), which the other SDKs copy:

```python
policy = RetryPolicy()
if is_retryable_status(status, headers):
    wait = backoff_delay(attempt, policy, parse_retry_after(headers, time.time()), random.random())
    if wait is None:
        ...  # give up: out of retries, or the server asked for a longer wait than we accept
```

- ``x-should-retry: true/false`` from the server overrides everything else.
- Otherwise 408, 409, 429 and every 5xx (Anthropic's 529 "overloaded" included) are retried.
- A server-requested wait (``retry-after-ms``, ``retry-after``) is honoured exactly when it is at most
  ``max_retry_after``; a longer one means "do not wait" (the attempt loop parks that key instead, and
  the call goes to another key).
- Without one: exponential backoff ``min(initial * 2**attempt, max_delay)``, shortened by up to
  ``jitter`` so that many clients hit by the same outage do not come back in lockstep.
- ``error_retry_delay`` is that rule for a failed request (not a rate limit) with one exception, nbllm's
  own: while the key answers nearly all its requests, the retry goes at once (see its docstring).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass

from .._exceptions import ConfigurationError
from .headers import lowercase_names

__all__ = ["RetryPolicy", "backoff_delay", "error_retry_delay", "is_retryable_status", "parse_retry_after"]

_RETRYABLE_STATUSES = frozenset({408, 409, 429})

# 2.0 ** 1024 overflows a float; any exponent past this already exceeds every sane max_delay.
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    ``max_retry_after``: a server-requested wait (``retry-after``, a rate-limit reset) longer than this is
    not waited for: the key is parked for this long and another key takes the request; the call fails
    with a ``RateLimitError`` only when every key that could serve it is parked.
    """

    max_retries: int = 4
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be a whole number >= 0, got {self.max_retries!r}.")
        for name in ("initial_delay", "max_delay", "max_retry_after", "jitter"):
            value = getattr(self, name)
            # inf only for max_retry_after: "wait as long as the server asks"; nan compares false to all
            finite = math.isfinite(value) if isinstance(value, (int, float)) else False
            if isinstance(value, bool) or not (finite or (name == "max_retry_after" and value == math.inf)) or value < 0:
                raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}.")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be between 0 and 1, got {self.jitter}.")


def is_retryable_status(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a response with this status (and these headers) is worth sending again."""
    should_retry = lowercase_names(headers).get("x-should-retry", "").strip().lower()
    if should_retry == "true":
        return True
    if should_retry == "false":
        return False
    return status in _RETRYABLE_STATUSES or status >= 500


def _parse_seconds(value: str | None, scale: float = 1.0) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value) * scale
    except ValueError:
        return None
    # nan/inf parse as floats but are not waits anyone meant to send.
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _parse_http_date(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    # mktime_tz reads a missing zone as UTC, which is what RFC 7231 dates always are.
    seconds = email.utils.mktime_tz(parsed) - now
    return seconds if seconds >= 0 else None


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked us to wait, or None if it did not say (usably).

    ``retry-after-ms`` wins over ``retry-after``; the latter is seconds or an HTTP date, measured from
    ``now`` (a UNIX timestamp). A header that is negative, in the past or unparsable is ignored.
    """
    lowered = lowercase_names(headers)
    millis = _parse_seconds(lowered.get("retry-after-ms"), scale=0.001)
    if millis is not None:
        return millis
    value = lowered.get("retry-after")
    seconds = _parse_seconds(value)
    if seconds is not None:
        return seconds
    return _parse_http_date(value, now)


def backoff_delay(
    attempt: int, policy: RetryPolicy, retry_after: float | None, rand: float
) -> float | None:
    """Seconds to wait before retry number ``attempt`` (0-based), or None to stop retrying.

    ``rand`` is a number in [0, 1), passed in so the result is reproducible in tests.
    A server-requested ``retry_after`` is returned unchanged: the key pool spreads the load itself.
    """
    if attempt < 0:
        raise ValueError(f"attempt counts retries so far and cannot be negative, got {attempt}.")
    if attempt >= policy.max_retries:
        return None
    if retry_after is not None and retry_after >= 0:
        return retry_after if retry_after <= policy.max_retry_after else None
    delay = min(policy.initial_delay * 2.0 ** min(attempt, _MAX_EXPONENT), policy.max_delay)
    return delay * (1 - policy.jitter * rand)


def error_retry_delay(
    errors: int, policy: RetryPolicy, retry_after: float | None, rand: float, service_answering: bool
) -> float | None:
    """Seconds to wait before retrying a failed request (a 5xx, a dropped connection) after ``errors``
    failures so far, or None to stop. ``service_answering``: the key answers nearly all its requests
    (``KeyState.answering``: at least 8 of its last 10).

    ``backoff_delay``, except that the retry goes at once while the service is answering. Backoff spaces
    retries so that a struggling service is not hit again at once; but when nearly every request is
    answered, this failure was one bad connection or replica, not an outage, and the wait only moves the
    request to the end of the batch, where it becomes the batch's tail (measured: a prompt that failed
    three times in a row finished 2.8 s after the rest, 16 % of the batch's wall time). A service that
    fails three requests in a row is backed off from as usual; a wait the server asked for is always
    honoured; the key pool still admits the retry only within the key's limits, so it adds no burst.
    """
    delay = backoff_delay(errors, policy, retry_after, rand)
    if delay is not None and service_answering and (retry_after is None or retry_after < 0):
        return 0.0
    return delay
