"""How many requests a batch keeps in flight: as many as the keys' limits and latency call for.

Little's law: a key that admits ``r`` requests per second, each answered after ``L`` seconds on average,
has ``r × L`` requests in flight when it runs at its limit. A fixed worker count cannot follow that (32
workers at 3 s latency feed 10 requests/s; keys of 20 requests/s sat half idle), so a batch asks the pool
for a target after every answer and grows or shrinks its workers to it:

    target = Σ over live keys with known limits (rate × mean latency × HEADROOM + burst)
           + Σ over live keys with unknown limits (their probing allowance, ``KeyState.in_flight_cap``)

bounded by ``SAFETY_CAP`` (and by an explicit ``concurrency=``). Too high costs little: a request beyond
what the keys take now waits in the pool's FIFO queue, not at the server. Too low leaves keys idle.

    in_flight_target([KeyDemand(rate=10, burst=10, latency=3.0)])   # 10 × 3 × 1.5 + 10 = 55

Pure: numbers in, a number out; ``demand_of`` reads a ``KeyState`` without changing it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .state import KeyState

__all__ = ["DEFAULT_LATENCY", "HEADROOM", "SAFETY_CAP", "KeyDemand", "demand_of", "in_flight_target"]

# Before a key has answered anything, assume an answer takes this long: a typical LLM call (public
# measurements put the median time to first token near 3 s). Guessing high only queues requests in the
# pool; the first answers replace it.
DEFAULT_LATENCY = 5.0
# Latency varies around its mean (lognormal, heavy tail), and so does the number in flight: a margin
# keeps a key busy while a few slow answers hold their slots.
HEADROOM = 1.5
# Never more in flight than this by default, whatever the keys allow: each request holds its prompt, a
# connection and a task, and a notebook shares the machine with its user. Above it, pass concurrency=.
SAFETY_CAP = 1024
# A key limited only by tokens per minute serves tpm / tokens-per-request requests per minute.
MIN_TOKENS_PER_REQUEST = 1.0


@dataclass(frozen=True)
class KeyDemand:
    """What one live key calls for: its rate (requests/s) and burst when known, else its probing allowance."""

    rate: float | None = None
    burst: float = 0.0
    latency: float | None = None  # mean seconds per answer; None: not measured yet
    probe: float = 0.0  # in flight allowed while the key's limits are unknown

    def in_flight(self, default_latency: float, headroom: float) -> float:
        if self.rate is None:
            return self.probe
        latency = default_latency if self.latency is None else self.latency
        return self.rate * latency * headroom + self.burst


def in_flight_target(keys: Iterable[KeyDemand], *, limit: int | None = None,
                     default_latency: float = DEFAULT_LATENCY, headroom: float = HEADROOM,
                     cap: int = SAFETY_CAP) -> int:
    """Requests to keep in flight for these keys (at least 1, at most ``cap`` and ``limit``)."""
    wanted = sum(k.in_flight(default_latency, headroom) for k in keys)
    target = max(1, math.ceil(wanted)) if math.isfinite(wanted) else cap
    return max(1, min(target, cap, limit if limit is not None else cap))


def demand_of(state: KeyState, model: str, tokens: float) -> KeyDemand:
    """What ``state`` calls for when serving ``model`` with requests of about ``tokens`` tokens."""
    window = state.latency.get(model)
    latency = window.mean(minimum=1) if window is not None else None
    if latency is None and state.latency:  # another model's answers say more than the default
        latency = max((w.mean(minimum=1) or 0.0) for w in state.latency.values()) or None
    rates = []
    bursts = []
    if state.rpm is not None:
        rates.append(state.rpm.rate)
        bursts.append(state.rpm.capacity)
    if state.tpm is not None:
        per_request = max(tokens, MIN_TOKENS_PER_REQUEST)
        rates.append(state.tpm.rate / per_request)
        bursts.append(state.tpm.capacity / per_request)
    if not rates:
        return KeyDemand(probe=state.in_flight_cap)
    return KeyDemand(rate=min(rates), burst=min(bursts), latency=latency)
