"""Timing plans: jittered time to first token, streaming schedules, non-stream latency. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from ._config import SimConfig

__all__ = ["Pacing", "nonstream_delay", "plan_pacing", "schedule"]

TICK = 0.01
"""Pieces due within this many seconds of each other are sent in one write.

One `asyncio.sleep` per token is wasteful at high token rates and many streams;
a 10 ms granularity is below what a person sees in a notebook."""


@dataclass(frozen=True)
class Pacing:
    """When a request's bytes go out: first token after ``ttft``, then one piece per ``interval``."""

    ttft: float
    interval: float
    tail_interval: float
    tail_from: int  # index of the first piece of the slow tail (== pieces when none)

    @property
    def instant(self) -> bool:
        """Tell whether everything can be written at once, with no sleep at all."""
        return self.ttft <= 0 and self.interval <= 0 and self.tail_interval <= 0


def plan_pacing(
    config: SimConfig, latency_scale: float, u: float, pieces: int, slow_tail: bool = False
) -> Pacing:
    """Derive a request's pacing from the config, the key's latency scale and a die ``u`` in [0, 1).

    The jitter is uniform in ``ttft * (1 ± ttft_jitter)``; a slow tail makes the
    last fifth of the pieces (at least one) five times slower.
    """
    ttft = max(0.0, config.ttft * (1.0 + config.ttft_jitter * (2.0 * u - 1.0))) * latency_scale
    tps = config.tokens_per_second
    interval = latency_scale / tps if tps > 0 else 0.0
    if not slow_tail or pieces == 0:
        return Pacing(ttft, interval, 0.0, pieces)
    tail_interval = 5.0 * interval if interval > 0 else 0.05 * latency_scale
    return Pacing(ttft, interval, tail_interval, pieces - max(1, pieces // 5))


def nonstream_delay(config: SimConfig, pacing: Pacing, pieces: int, latency_scale: float) -> float:
    """Return how long a non-stream answer takes: `SimConfig.latency`, or ttft plus generation time."""
    tail = max(0, pieces - pacing.tail_from)
    extra = tail * pacing.tail_interval
    if config.latency is not None:
        return config.latency * latency_scale + extra
    return pacing.ttft + (pieces - tail) * pacing.interval + extra


def schedule(pieces: int, pacing: Pacing, tick: float = TICK) -> list[tuple[float, int]]:
    """Group pieces into writes: a list of (seconds after the first token, end index).

    Piece ``j`` is due ``j * interval`` after the first one (slower in the tail);
    pieces due within ``tick`` of a group's first piece join that group.
    """
    groups: list[tuple[float, int]] = []
    start = -1.0
    t = 0.0
    for j in range(pieces):
        if j > 0:
            t += pacing.tail_interval if j >= pacing.tail_from else pacing.interval
        if groups and t - start < tick:
            groups[-1] = (start, j + 1)
        else:
            start = t
            groups.append((t, j + 1))
    return groups
