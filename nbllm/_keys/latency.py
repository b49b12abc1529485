"""How long a key's requests take, per model: the one record both admission and hedging read.

The pool needs the typical latency to know how many requests to keep in flight (Little's law: in flight =
rate × latency); hedging needs the tail (a request slower than the p95 of its key and model is raced on
another key). Both read the same ``LatencyWindow``, filled by ``Lease`` when a request ends with an answer.

    window = LatencyWindow()
    window.add(2.9); window.add(3.4)
    window.mean(), window.quantile(0.95)    # None until enough samples say something

Pure arithmetic on numbers passed in: no clock, nothing awaited.
"""

from __future__ import annotations

import collections
import math

__all__ = ["LatencyWindow", "MIN_SAMPLES"]

# The last this many answers describe a key: enough for a p95 to mean something, few enough to follow a
# provider whose latency changes during a long batch.
WINDOW = 256
# Below this many samples a quantile is a guess; callers fall back to their own defaults.
MIN_SAMPLES = 20


class LatencyWindow:
    """The durations (seconds) of the last ``WINDOW`` answers, with their mean and quantiles."""

    __slots__ = ("_samples", "_sorted", "_total")

    def __init__(self) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._total = 0.0
        self._sorted: list[float] | None = None  # cached until the next sample

    def __len__(self) -> int:
        return len(self._samples)

    def __repr__(self) -> str:
        mean = self.mean(minimum=1)
        return f"<LatencyWindow n={len(self)} mean={mean:.3f}s>" if mean is not None else "<LatencyWindow empty>"

    def add(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return  # a clock that went backwards or a bogus value says nothing about the key
        if len(self._samples) == self._samples.maxlen:
            self._total -= self._samples[0]
        self._samples.append(seconds)
        self._total += seconds
        self._sorted = None

    def mean(self, minimum: int = MIN_SAMPLES) -> float | None:
        """The mean duration, or None with fewer than ``minimum`` samples."""
        if len(self._samples) < max(1, minimum):
            return None
        return max(0.0, self._total / len(self._samples))

    def quantile(self, q: float, minimum: int = MIN_SAMPLES) -> float | None:
        """The ``q`` quantile (nearest rank), or None with fewer than ``minimum`` samples."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be within [0, 1], got {q}")
        if len(self._samples) < max(1, minimum):
            return None
        if self._sorted is None:
            self._sorted = sorted(self._samples)
        rank = min(len(self._sorted) - 1, max(0, math.ceil(q * len(self._sorted)) - 1))
        return self._sorted[rank]
