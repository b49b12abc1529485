"""A leaky bucket with the three things the key pool needs and aiolimiter lacks.

aiolimiter (1.3) is async-only, not FIFO, and cannot say *when* it will have capacity, take back an
over-estimate, or be resized when a limit is learned from headers. The key pool must compare keys by
"how soon can you take this request", correct TPM estimates with real usage, and learn limits, so the
bucket is plain arithmetic on a clock value passed in (easy to test, and the same math runs in Redis).

    bucket = LeakyBucket(rate_per_minute=600, burst_seconds=1.0)
    wait = bucket.time_until(1, now)     # 0.0 if it fits now
    bucket.consume(1, now)
    bucket.adjust(-120, now)             # a TPM estimate was 120 tokens too high
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LeakyBucket"]

# How much of a burst a fresh bucket allows. Providers refill continuously, but their window (and what
# other clients of the same key used) is unknown; a one-second burst keeps the first second within
# any per-minute limit while costing nothing in steady state.
DEFAULT_BURST_SECONDS = 1.0
# One request takes at most this many minutes of a bucket's rate (see ``consume``).
MAX_TAKE_MINUTES = 1.0


@dataclass(slots=True)
class LeakyBucket:
    """``level`` drains at ``rate_per_minute / 60`` per second; a request fits if level + amount <= capacity."""

    rate_per_minute: float
    burst_seconds: float = DEFAULT_BURST_SECONDS
    level: float = 0.0
    last: float = 0.0

    @property
    def rate(self) -> float:
        return self.rate_per_minute / 60.0

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate * self.burst_seconds)

    def _drain(self, now: float) -> None:
        if now > self.last:
            self.level = max(0.0, self.level - (now - self.last) * self.rate)
            self.last = now

    def used(self, now: float) -> float:
        """The level now: how much of the capacity is taken."""
        self._drain(now)
        return self.level

    def time_until(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0 if it fits now). Amounts above capacity wait for an empty bucket."""
        self._drain(now)
        amount = min(amount, self.capacity)
        excess = self.level + amount - self.capacity
        return 0.0 if excess <= 0 else excess / self.rate

    def consume(self, amount: float, now: float) -> float:
        """Take ``amount``, at most one minute of the rate; return what was taken.

        Callers check ``time_until`` first; the level may exceed capacity for big requests. The cap keeps
        one request whose estimate is beyond what the key serves in a minute (a provider refuses it, or the
        estimate is far off) from blocking the key for longer than that while it is in flight.
        """
        self._drain(now)
        taken = min(amount, self.rate_per_minute * MAX_TAKE_MINUTES)
        self.level += taken
        return taken

    def adjust(self, delta: float, now: float) -> None:
        """Correct an earlier estimate by ``delta`` (negative gives capacity back)."""
        self._drain(now)
        self.level = max(0.0, self.level + delta)

    def set_available(self, available: float, now: float) -> None:
        """Trust a server's 'remaining' count when it is lower than what this bucket believes."""
        self._drain(now)
        self.level = max(self.level, self.capacity - max(0.0, available))

    def block_for(self, seconds: float, now: float) -> None:
        """Make the bucket full for ``seconds`` (a server said: nothing left until reset)."""
        self._drain(now)
        self.level = max(self.level, self.capacity + seconds * self.rate)

    def resize(self, rate_per_minute: float, now: float) -> None:
        """Change the rate, keeping the same fraction of the bucket used."""
        self._drain(now)
        fill = self.level / self.capacity
        self.rate_per_minute = rate_per_minute
        self.level = fill * self.capacity
