"""Timing plans: jittered or lognormal time to first token, stalls, streaming schedules, non-stream latency. Pure.

    draw = draw_latency(config, stable_hash(prompt), attempt)     # the request's latency factor and stall
    pacing = plan_pacing(config, latency_scale, u, pieces, draw=draw)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from ._config import SimConfig
from ._hashing import unit

__all__ = [
    "NO_DRAW",
    "LatencyDraw",
    "Pacing",
    "draw_latency",
    "lognormal_factor",
    "needs_draw",
    "nonstream_delay",
    "plan_pacing",
    "schedule",
]

_STANDARD_NORMAL = NormalDist()
_U_EDGE = 1e-12  # inv_cdf is infinite at 0 and 1
_SPREAD_SALT, _STALL_SALT = 0x5E7A, 0x57A1  # independent dice for the two draws

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
    spread: float = 1.0  # the request's lognormal latency factor (1 without `SimConfig.ttft_sigma`)
    stall: float = 0.0  # extra seconds before the first byte (`Faults.stall`), included in ``ttft``

    @property
    def instant(self) -> bool:
        """Tell whether everything can be written at once, with no sleep at all."""
        return self.ttft <= 0 and self.interval <= 0 and self.tail_interval <= 0


@dataclass(frozen=True)
class LatencyDraw:
    """One request's lognormal latency factor and stall, from `draw_latency`."""

    spread: float = 1.0
    stall: float = 0.0


NO_DRAW = LatencyDraw()
"""What a request gets when neither `SimConfig.ttft_sigma` nor `Faults.stall` is set."""


def lognormal_factor(sigma: float, u: float) -> float:
    """Return ``exp(sigma * z)`` with z the standard normal quantile of ``u``: median 1, log-spread sigma."""
    if sigma <= 0:
        return 1.0
    z = _STANDARD_NORMAL.inv_cdf(min(max(u, _U_EDGE), 1.0 - _U_EDGE))
    return math.exp(sigma * z)


def needs_draw(config: SimConfig) -> bool:
    """Tell whether requests need a `draw_latency` (and the server an attempt count per prompt)."""
    return config.ttft_sigma > 0 or config.faults.stall > 0


def draw_latency(config: SimConfig, prompt_hash: int, attempt: int) -> LatencyDraw:
    """Return the latency factor and stall of the ``attempt``-th answer (1, 2, …) to a prompt.

    Keyed by prompt and attempt rather than arrival order: the same prompts meet the same latencies in
    any client, and a retry or a hedge of a prompt is a new attempt with fresh dice.
    """
    seed = config.seed ^ prompt_hash
    spread = lognormal_factor(config.ttft_sigma, unit(seed, attempt, _SPREAD_SALT))
    faults = config.faults
    stalled = faults.stall > 0 and unit(seed, attempt, _STALL_SALT) < faults.stall
    return LatencyDraw(spread, faults.stall_seconds if stalled else 0.0)


def _median_ttft(config: SimConfig, u: float, draw: LatencyDraw) -> float:
    """Time to first token before the key's latency scale: lognormal when configured, else uniform jitter."""
    if config.ttft_sigma > 0:
        return config.ttft * draw.spread
    return max(0.0, config.ttft * (1.0 + config.ttft_jitter * (2.0 * u - 1.0)))


def plan_pacing(
    config: SimConfig, latency_scale: float, u: float, pieces: int, slow_tail: bool = False,
    draw: LatencyDraw = NO_DRAW,
) -> Pacing:
    """Derive a request's pacing from the config, the key's latency scale, a die ``u`` in [0, 1) and ``draw``.

    The jitter is uniform in ``ttft * (1 ± ttft_jitter)`` (``u`` picks where), or lognormal with
    `SimConfig.ttft_sigma` (``draw.spread``); a stall adds ``draw.stall`` seconds before the first
    byte; a slow tail makes the last fifth of the pieces (at least one) five times slower.
    """
    ttft = _median_ttft(config, u, draw) * latency_scale + draw.stall
    tps = config.tokens_per_second
    interval = latency_scale / tps if tps > 0 else 0.0
    if not slow_tail or pieces == 0:
        return Pacing(ttft, interval, 0.0, pieces, draw.spread, draw.stall)
    tail_interval = 5.0 * interval if interval > 0 else 0.05 * latency_scale
    return Pacing(ttft, interval, tail_interval, pieces - max(1, pieces // 5), draw.spread, draw.stall)


def nonstream_delay(config: SimConfig, pacing: Pacing, pieces: int, latency_scale: float) -> float:
    """Return how long a non-stream answer takes: `SimConfig.latency` (spread, plus any stall), or ttft
    plus generation time."""
    tail = max(0, pieces - pacing.tail_from)
    extra = tail * pacing.tail_interval
    if config.latency is not None:
        return config.latency * pacing.spread * latency_scale + extra + pacing.stall
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
