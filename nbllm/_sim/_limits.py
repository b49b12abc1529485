"""Per-key rate limits as token buckets, and the header values providers send about them.

Pure: every method takes ``now`` (a monotonic clock reading in seconds), so tests
drive time by hand and never sleep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "Admission",
    "KeyLimiter",
    "TokenBucket",
    "anthropic_limit_headers",
    "format_go_duration",
    "format_rfc3339",
    "openai_limit_headers",
    "retry_headers",
]

_EPS = 1e-9


class TokenBucket:
    """An OpenAI-style bucket: holds ``limit * window / 60``, refills at ``limit / 60`` per second.

    A draw larger than the whole bucket is allowed once the bucket is full and
    leaves the level negative (a debt), so the long-run rate still equals the
    limit even when a short window makes the bucket smaller than one draw.
    """

    __slots__ = ("capacity", "level", "limit", "rate", "stamp")

    def __init__(self, limit: int, window_seconds: float, now: float) -> None:
        self.limit = limit
        self.capacity = max(limit * window_seconds / 60.0, _EPS)
        self.rate = limit / 60.0  # units per second
        self.level = self.capacity  # starts full, like a fresh minute
        self.stamp = now

    def __repr__(self) -> str:
        return f"<TokenBucket limit={self.limit}/min level={self.level:.2f}/{self.capacity:.2f}>"

    def refill(self, now: float) -> None:
        """Add what flowed in since the last call, up to capacity."""
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def wait_time(self, amount: float, now: float) -> float:
        """Return seconds until ``amount`` can be drawn (0 if now)."""
        if self.rate <= 0:
            return 60.0  # a zero limit admits nothing; tell clients to come back in a minute
        self.refill(now)
        need = min(amount, self.capacity)
        if self.level >= need - _EPS:
            return 0.0
        return (need - self.level) / self.rate

    def take(self, amount: float, now: float) -> None:
        """Draw ``amount`` (may leave the level negative)."""
        self.refill(now)
        self.level -= amount

    def give(self, amount: float, now: float) -> None:
        """Return ``amount`` to the bucket, e.g. when a request used fewer tokens than estimated."""
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)

    def remaining(self, now: float) -> int:
        """Return the whole units available now (never negative)."""
        self.refill(now)
        return max(0, math.floor(self.level + _EPS))

    def reset_seconds(self, now: float) -> float:
        """Return seconds until the bucket is full again."""
        self.refill(now)
        if self.rate <= 0:
            return 0.0 if self.level >= self.capacity else 60.0
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass(frozen=True)
class Admission:
    """Outcome of a limit check: admitted, or which limit refused and for how long."""

    ok: bool
    kind: str | None = None  # "requests" or "tokens" when refused
    wait: float = 0.0


class KeyLimiter:
    """The request and token buckets of one key; either may be absent (unlimited)."""

    __slots__ = ("requests", "tokens")

    def __init__(self, rpm: int | None, tpm: int | None, window_seconds: float, now: float) -> None:
        self.requests = TokenBucket(rpm, window_seconds, now) if rpm is not None else None
        self.tokens = TokenBucket(tpm, window_seconds, now) if tpm is not None else None

    def admit(self, estimated_tokens: int, now: float) -> Admission:
        """Admit a request costing one request and ``estimated_tokens``, or say why not."""
        wait_r = self.requests.wait_time(1, now) if self.requests else 0.0
        wait_t = self.tokens.wait_time(estimated_tokens, now) if self.tokens else 0.0
        if wait_r > 0 or wait_t > 0:
            kind = "requests" if wait_r > 0 else "tokens"
            return Admission(False, kind, max(wait_r, wait_t))
        if self.requests:
            self.requests.take(1, now)
        if self.tokens:
            self.tokens.take(estimated_tokens, now)
        return Admission(True)

    def settle(self, estimated_tokens: int, actual_tokens: int, now: float) -> None:
        """Correct the token bucket from the estimate to the real usage, as OpenAI does."""
        if self.tokens is None or estimated_tokens == actual_tokens:
            return
        if actual_tokens < estimated_tokens:
            self.tokens.give(estimated_tokens - actual_tokens, now)
        else:
            self.tokens.take(actual_tokens - estimated_tokens, now)


def format_go_duration(seconds: float) -> str:
    """Format seconds the way Go's ``time.Duration`` prints them: ``0s``, ``120ms``, ``1.5s``, ``6m0s``.

    Rounded up to the millisecond so a client never retries before the reset.
    """
    if seconds <= 0:
        return "0s"
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def format_rfc3339(wall_seconds: float) -> str:
    """Format a Unix time as an RFC 3339 UTC timestamp, rounded up to the second."""
    moment = datetime.fromtimestamp(math.ceil(wall_seconds), tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_headers(wait: float) -> dict[str, str]:
    """Return ``retry-after`` (whole seconds, rounded up) and ``retry-after-ms``."""
    return {
        "retry-after": str(max(1, math.ceil(wait - 1e-9))),
        "retry-after-ms": str(max(1, math.ceil(wait * 1000 - 1e-6))),
    }


def openai_limit_headers(limiter: KeyLimiter, now: float) -> dict[str, str]:
    """Return the ``x-ratelimit-*`` headers for the limits this key has."""
    headers: dict[str, str] = {}
    for name, bucket in (("requests", limiter.requests), ("tokens", limiter.tokens)):
        if bucket is None:
            continue
        headers[f"x-ratelimit-limit-{name}"] = str(bucket.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(bucket.remaining(now))
        headers[f"x-ratelimit-reset-{name}"] = format_go_duration(bucket.reset_seconds(now))
    return headers


def _round_thousand(remaining: int, limit: int) -> int:
    """Round to the nearest thousand as Anthropic does, but only for real-sized limits.

    Below 10 000 rounding would hide the whole signal, so small test limits stay exact.
    """
    if limit < 10_000:
        return remaining
    return min(limit, int(round(remaining / 1000.0)) * 1000)


def anthropic_limit_headers(limiter: KeyLimiter, now: float, wall: float) -> dict[str, str]:
    """Return the ``anthropic-ratelimit-*`` headers; ``wall`` is the Unix time matching ``now``.

    The simulator has one token bucket, reported as tokens, input-tokens and output-tokens alike.
    """
    headers: dict[str, str] = {}
    if limiter.requests is not None:
        bucket = limiter.requests
        headers["anthropic-ratelimit-requests-limit"] = str(bucket.limit)
        headers["anthropic-ratelimit-requests-remaining"] = str(bucket.remaining(now))
        headers["anthropic-ratelimit-requests-reset"] = format_rfc3339(wall + bucket.reset_seconds(now))
    if limiter.tokens is not None:
        bucket = limiter.tokens
        remaining = str(_round_thousand(bucket.remaining(now), bucket.limit))
        reset = format_rfc3339(wall + bucket.reset_seconds(now))
        for name in ("tokens", "input-tokens", "output-tokens"):
            headers[f"anthropic-ratelimit-{name}-limit"] = str(bucket.limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = remaining
            headers[f"anthropic-ratelimit-{name}-reset"] = reset
    return headers
