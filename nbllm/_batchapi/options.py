"""What a provider batch may hold, how often it is polled, and what it costs. Pure: no I/O.

```python
limits = limits_for("openai").tightened(max_requests=1_000)   # a test, or smaller files on purpose
schedule = PollSchedule()                                     # 1 s, 1.5 s, 2.25 s, … up to 3 min
[round(schedule.delay(n), 2) for n in range(4)]               # [1.0, 1.5, 2.25, 3.38]
cost = batch_cost("gpt-4o-mini", 1_000_000, 0)                # 0.075: half the list price (today)
```
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from .._exceptions import ConfigurationError
from .._pricing import rates

__all__ = ["BatchAPIOptions", "BatchLimits", "PollSchedule", "batch_cost", "limits_for"]

def batch_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Estimated USD cost of tokens answered through a provider batch (the price data's batch rates:
    half the list price at OpenAI and Anthropic today), or None for an unknown model."""
    found = rates(model, batch=True)
    return None if found is None else found.cost(prompt_tokens, completion_tokens)


@dataclass(frozen=True)
class BatchLimits:
    """The most one provider batch may hold: requests, bytes, and whether it must be one model."""

    max_requests: int
    max_bytes: int
    one_model: bool

    def tightened(self, max_requests: int | None = None, max_bytes: int | None = None) -> BatchLimits:
        """These limits, lowered where asked (never raised above what the provider accepts)."""
        requests = self.max_requests if max_requests is None else min(max_requests, self.max_requests)
        size = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        if requests < 1 or size < 1:
            raise ConfigurationError("Batch limits must allow at least one request and one byte.")
        return replace(self, max_requests=requests, max_bytes=size)


_MB = 1024 * 1024
# OpenAI: one JSONL input file per batch, at most 50 000 requests and 200 MB, all for one model.
# Anthropic: one create request per batch, at most 100 000 requests or 256 MB.
PROVIDER_LIMITS = {
    "openai": BatchLimits(max_requests=50_000, max_bytes=200 * _MB, one_model=True),
    "anthropic": BatchLimits(max_requests=100_000, max_bytes=256 * _MB, one_model=False),
}


def limits_for(wire_format: str) -> BatchLimits:
    """The batch limits of a wire format (``"openai"`` or ``"anthropic"``)."""
    try:
        return PROVIDER_LIMITS[wire_format]
    except KeyError:
        raise ConfigurationError(f"No batch API for wire format {wire_format!r}; use openai or anthropic.") from None


@dataclass(frozen=True)
class PollSchedule:
    """Seconds between status polls: ``first``, then ×``factor`` per poll, never more than ``longest``.

    A batch that takes the simulator a few seconds is seen at once; one that takes a provider hours is
    asked about every few minutes. ``sleep`` waits (tests pass one that moves a hand-driven clock).
    """

    first: float = 1.0
    factor: float = 1.5
    longest: float = 180.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.first <= 0 or self.factor < 1 or self.longest < self.first:
            raise ConfigurationError("PollSchedule needs first > 0, factor >= 1 and longest >= first.")

    def delay(self, polls_so_far: int) -> float:
        """Seconds to wait before the next poll, after ``polls_so_far`` polls."""
        exponent = min(polls_so_far, 64)  # 1.5 ** 64 is already far past any longest
        return min(self.first * self.factor**exponent, self.longest)


@dataclass(frozen=True)
class BatchAPIOptions:
    """Settings of ``amap(..., mode="batch")`` beyond ``fallback``.

    ``max_requests`` / ``max_bytes`` lower the providers' per-batch limits (a job over them is split);
    ``max_rounds``: how many batches an item may go through before its error is final (errored and
    expired items go into a follow-up batch); ``poll``: how often a batch's status is asked for.
    """

    max_requests: int | None = None
    max_bytes: int | None = None
    max_rounds: int = 3
    poll: PollSchedule = field(default_factory=PollSchedule)

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise ConfigurationError(f"max_rounds must be at least 1, got {self.max_rounds}.")

    def limits(self, wire_format: str) -> BatchLimits:
        """The limits a job for ``wire_format`` is split by."""
        return limits_for(wire_format).tightened(self.max_requests, self.max_bytes)
