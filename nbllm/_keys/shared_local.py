"""The local half of the shared key pool: which limits a key shares, and what to do while Redis is gone.

Pure: every method takes ``now``. While the Redis server cannot be reached, each process limits itself
to ``limit / n`` of every key, ``n`` being the number of processes that sent a heartbeat last time
Redis was seen (at least two: a process alone at the moment of the outage cannot know that another
one is not about to start). Together they stay within the limit without talking to each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bucket import LeakyBucket
from .state import KeyState

__all__ = ["MIN_SHARE_PROCESSES", "ConservativeShare", "SharedRates", "Verdict", "shared_rates"]

MIN_SHARE_PROCESSES = 2


@dataclass(frozen=True)
class Verdict:
    """What the shared store said about one request: granted (wait 0), wait so long, or disabled."""

    wait: float = 0.0
    disabled: str | None = None
    probed: bool = False  # granted as one of the requests probing a key of unknown limits (in Redis)

    @property
    def granted(self) -> bool:
        return self.disabled is None and self.wait <= 0


@dataclass(frozen=True)
class SharedRates:
    """A key's limits as the scripts take them: per minute (0: none) and burst seconds."""

    rpm: float = 0.0
    rpm_burst: float = 0.0
    tpm: float = 0.0
    tpm_burst: float = 0.0

    def tolerances_us(self) -> tuple[int, int]:
        """Microseconds a full bucket holds (capacity / rate), for seeding buckets after a restart."""
        return _tolerance_us(self.rpm, self.rpm_burst), _tolerance_us(self.tpm, self.tpm_burst)


def _tolerance_us(per_minute: float, burst: float) -> int:
    if per_minute <= 0:
        return 0
    rate = per_minute / 60.0
    return int(max(1.0, rate * burst) / rate * 1e6)


def shared_rates(state: KeyState) -> SharedRates:
    """The limits this process shares for ``state``: configured or learned from headers.

    A rate guessed from this process's own 429s is left local: it measures what one process got through,
    not the key's limit, and writing it into the shared bucket would slow every process down to it.
    """
    rpm = state.rpm if state.rpm is not None and not state.guessed_rpm else None
    tpm = state.tpm
    return SharedRates(
        rpm.rate_per_minute if rpm else 0.0,
        rpm.burst_seconds if rpm else 0.0,
        tpm.rate_per_minute if tpm else 0.0,
        tpm.burst_seconds if tpm else 0.0,
    )


class ConservativeShare:
    """Local buckets at ``1/n`` of each key's shared limits, for the time Redis cannot be reached."""

    def __init__(self, processes: int) -> None:
        self.processes = max(MIN_SHARE_PROCESSES, processes)
        # per key alias: the rates the buckets were built for, and the buckets
        self._buckets: dict[str, tuple[SharedRates, LeakyBucket | None, LeakyBucket | None]] = {}

    @property
    def share(self) -> float:
        return 1.0 / self.processes

    def take(self, state: KeyState, tokens: float, now: float) -> Verdict:
        """Take capacity from this process's share of the key, or say how long until it has some."""
        rpm, tpm = self._buckets_for(state, now)
        wait = 0.0
        if rpm is not None:
            wait = max(wait, rpm.time_until(1, now))
        if tpm is not None:
            wait = max(wait, tpm.time_until(tokens, now))
        if wait > 0:
            return Verdict(wait)
        if rpm is not None:
            rpm.consume(1, now)
        if tpm is not None:
            tpm.consume(tokens, now)
        return Verdict()

    def adjust(self, state: KeyState, delta: float, now: float) -> None:
        """A TPM estimate was off by ``delta`` tokens: correct this process's share too."""
        entry = self._buckets.get(state.alias)
        if entry is not None and entry[2] is not None:
            entry[2].adjust(delta, now)

    def _buckets_for(self, state: KeyState, now: float) -> tuple[LeakyBucket | None, LeakyBucket | None]:
        rates = shared_rates(state)
        entry = self._buckets.get(state.alias)
        if entry is None or entry[0] != rates:
            # start full: the other processes may just have used the whole burst
            entry = (rates, self._full(rates.rpm, rates.rpm_burst, now), self._full(rates.tpm, rates.tpm_burst, now))
            self._buckets[state.alias] = entry
        return entry[1], entry[2]

    def _full(self, per_minute: float, burst: float, now: float) -> LeakyBucket | None:
        if per_minute <= 0:
            return None
        bucket = LeakyBucket(per_minute * self.share, burst, last=now)
        bucket.level = bucket.capacity
        return bucket
