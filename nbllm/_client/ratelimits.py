"""Rate-limit response headers turned into one provider-neutral snapshot. Pure: ``now`` is passed in.

```python
snapshot = parse_rate_limit_headers(response.headers, datetime.now(timezone.utc))
if snapshot.remaining_requests == 0:
    ...  # this key is out of requests for snapshot.reset_requests seconds
```

Two header families exist:

- OpenAI (and most compatible servers): ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``,
  where reset is a Go duration such as ``6m0s`` or ``12ms``. Azure sends ``-1``/``0`` limits when it
  does not know them; those become None.
- Anthropic: ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, where reset is an
  RFC 3339 timestamp. Remaining token counts are rounded to thousands by the server.

Every field is None when its header is missing or unparsable: a snapshot never guesses.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone

from .._keys import RateLimitSnapshot
from .headers import lowercase_names

__all__ = [
    "parse_anthropic",
    "parse_duration",
    "parse_openai",
    "parse_rate_limit_headers",
]


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# Go prints microseconds with U+00B5 and also accepts U+03BC; "us" is the ASCII spelling.
_UNIT_SECONDS = {
    "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9,
}
# "ms" must come before "m": findall takes the first alternative that fits, and "12m" + "s" is wrong.
_TERM = re.compile(rf"({_NUMBER})(ms|us|µs|μs|ns|h|m|s)")
_DURATION = re.compile(rf"(?:{_TERM.pattern})+")
_PLAIN_NUMBER = re.compile(_NUMBER)


@functools.lru_cache(maxsize=4096)  # pure, and a server sends the same few values over and over
def parse_duration(s: str) -> float | None:
    """Seconds in a Go-style duration (``1s``, ``12ms``, ``6m0s``, ``1h2m3.5s``, ``250us``).

    A bare number is seconds. Signs, spaces inside, unknown units and empty strings give None.
    """
    text = s.strip()
    if _PLAIN_NUMBER.fullmatch(text):
        return float(text)
    if not _DURATION.fullmatch(text):
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _TERM.findall(text))


def _parse_int(value: str | None, minimum: int) -> int | None:
    if value is None:
        return None
    text = value.strip()
    try:
        number = int(text)
    except ValueError:
        # Some proxies send "1000.0"; accept whole floats, nothing else.
        try:
            as_float = float(text)
        except ValueError:
            return None
        if not math.isfinite(as_float) or not as_float.is_integer():
            return None
        number = int(as_float)
    return number if number >= minimum else None


def parse_openai(headers: Mapping[str, str]) -> RateLimitSnapshot:
    """Snapshot from ``x-ratelimit-*`` headers (OpenAI, Azure, most compatible servers)."""
    return _parse_openai_lower(lowercase_names(headers))


def _parse_openai_lower(h: Mapping[str, str]) -> RateLimitSnapshot:
    """``parse_openai`` of headers whose names are lower-case already."""
    def reset(kind: str) -> float | None:
        value = h.get(f"x-ratelimit-reset-{kind}")
        return None if value is None else parse_duration(value)

    # A limit of 0 or -1 is Azure's "unknown"; a remaining count of 0 is real (exhausted).
    return RateLimitSnapshot(
        limit_requests=_parse_int(h.get("x-ratelimit-limit-requests"), minimum=1),
        remaining_requests=_parse_int(h.get("x-ratelimit-remaining-requests"), minimum=0),
        reset_requests=reset("requests"),
        limit_tokens=_parse_int(h.get("x-ratelimit-limit-tokens"), minimum=1),
        remaining_tokens=_parse_int(h.get("x-ratelimit-remaining-tokens"), minimum=0),
        reset_tokens=reset("tokens"),
    )


def _as_utc(moment: datetime) -> datetime:
    # RFC 3339 always has an offset; a naive value can only sensibly mean UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _seconds_until(value: str | None, now: datetime) -> float | None:
    if value is None:
        return None
    try:
        # RFC 3339 allows lower-case "t"/"z", which fromisoformat rejects.
        moment = datetime.fromisoformat(value.strip().upper())
    except ValueError:
        return None
    return max(0.0, (_as_utc(moment) - _as_utc(now)).total_seconds())


_Family = tuple[int | None, int | None, float | None]  # limit, remaining, reset seconds


def _anthropic_family(h: Mapping[str, str], name: str, now: datetime) -> _Family:
    prefix = f"anthropic-ratelimit-{name}-"
    return (
        _parse_int(h.get(prefix + "limit"), minimum=1),
        _parse_int(h.get(prefix + "remaining"), minimum=0),
        _seconds_until(h.get(prefix + "reset"), now),
    )


def _has_family(h: Mapping[str, str], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in h)


def parse_anthropic(headers: Mapping[str, str], now: datetime) -> RateLimitSnapshot:
    """Snapshot from ``anthropic-ratelimit-*`` headers; resets become seconds after ``now``."""
    return _parse_anthropic_lower(lowercase_names(headers), now)


def _parse_anthropic_lower(h: Mapping[str, str], now: datetime | None) -> RateLimitSnapshot:
    """``parse_anthropic`` of headers whose names are lower-case already (``now``: None for the clock)."""
    if now is None:
        now = datetime.now(timezone.utc)
    tokens_family = "tokens"
    has_tokens = _has_family(h, "anthropic-ratelimit-tokens-")
    if not has_tokens and _has_family(h, "anthropic-ratelimit-input-tokens-"):
        # Newer responses may split TPM into input and output limits only. Our token estimate for a
        # request is dominated by its prompt, so the input limit is the one that throttles us first.
        tokens_family = "input-tokens"
    limit_requests, remaining_requests, reset_requests = _anthropic_family(h, "requests", now)
    limit_tokens, remaining_tokens, reset_tokens = _anthropic_family(h, tokens_family, now)
    return RateLimitSnapshot(
        limit_requests=limit_requests,
        remaining_requests=remaining_requests,
        reset_requests=reset_requests,
        limit_tokens=limit_tokens,
        remaining_tokens=remaining_tokens,
        reset_tokens=reset_tokens,
    )


_EMPTY = RateLimitSnapshot()


def parse_rate_limit_headers(headers: Mapping[str, str], now_dt: datetime | None = None) -> RateLimitSnapshot:
    """Snapshot from whichever header family the response carries (Anthropic's wins if both do).

    ``now_dt``: only Anthropic's timestamps need it; None reads the clock then (every answer comes through
    here, and most carry OpenAI's durations, which need no clock).
    """
    h = lowercase_names(headers)
    openai = False
    for name in h:  # one pass over the names, not one per family (this runs on every answer)
        if name.startswith("anthropic-ratelimit-"):
            return _parse_anthropic_lower(h, now_dt)
        openai = openai or name.startswith("x-ratelimit-")
    return _parse_openai_lower(h) if openai else _EMPTY
