"""Attempt observers: what a hedge needs to know about a running call, and who may settle its item.

    race = Race()
    primary = race.watch(clock)                      # run_call(spec, target, watch=primary)
    ...                                              # primary.started, .key_alias, .first_token_at
    hedge = race.watch(clock, avoid={primary.key_alias})   # the same call on another key

``run_call`` tells its ``AttemptWatch`` when it got a key (and which), when the first token came and when
the attempt ended; a hedger reads that to decide when a call has run too long (``nbllm._api.hedging``).
Two attempts of one item share a ``Race``: the first answer wins (``won``), and an error settles the item
only when no other attempt is still running (``may_fail``), so exactly one outcome per item reaches the
results and the store. Plain state, nothing awaited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["AttemptWatch", "Race"]


class Race:
    """The attempts of one item; the first to settle it wins.

    A race counts its attempts instead of listing them: a list would make each race and its watches a
    reference cycle, which only the garbage collector frees (4 objects per item of every batch).
    """

    __slots__ = ("attempts", "extra", "open", "settled")

    def __init__(self) -> None:
        self.attempts = 0  # watches made
        self.extra = 0  # attempts raced beside the first that got a key: the hedges this item really sent
        self.open = 0  # attempts that have not ended with an error (nor lost)
        self.settled = False

    def watch(self, clock: Callable[[], float], avoid: Iterable[str] = ()) -> AttemptWatch:
        """A new attempt of this item; ``avoid``: key aliases it must not use."""
        watch = AttemptWatch(self, clock, frozenset(avoid) if avoid else _NOTHING, raced=self.attempts > 0)
        self.attempts += 1
        self.open += 1
        return watch


_NOTHING: frozenset[str] = frozenset()


class AttemptWatch:
    """What ``run_call`` reports about one attempt (times on the key pool's clock)."""

    __slots__ = ("avoid", "clock", "ended", "first_token_at", "key_alias", "leases", "race", "raced", "started")

    def __init__(self, race: Race, clock: Callable[[], float], avoid: frozenset[str], raced: bool = False) -> None:
        self.race, self.clock, self.avoid = race, clock, avoid
        self.raced = raced  # a hedge: raced beside the item's first attempt
        self.key_alias: str | None = None
        self.started: float | None = None  # when the current request got its key; None between requests
        self.first_token_at: float | None = None
        self.leases = 0  # requests sent (retries included)
        self.ended = False

    def __repr__(self) -> str:
        return f"<AttemptWatch key={self.key_alias} started={self.started} leases={self.leases}>"

    # ---- told by run_call ---------------------------------------------------------------------------
    def leased(self, alias: str, granted_at: float) -> None:
        self.key_alias, self.started, self.first_token_at = alias, granted_at, None
        if self.raced and not self.leases:
            self.race.extra += 1  # a hedge that got a key went out
        self.leases += 1

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = self.clock()

    def request_ended(self) -> None:
        """The current request ended (an answer, an error, a cancel): nothing is running until the next."""
        self.started = None

    # ---- who settles the item -----------------------------------------------------------------------
    def won(self) -> bool:
        """This attempt has an answer: True if it is the first (it settles the item), False if another
        attempt answered first (this one lost and must not be recorded)."""
        if self.race.settled:
            return False
        self.race.settled = self.ended = True
        return True

    def may_fail(self) -> bool:
        """This attempt failed for good: True if its error is the item's outcome (no other attempt is
        still running and none answered), False if it is dropped because another attempt goes on."""
        if not self.ended:
            self.ended = True
            self.race.open -= 1
        if self.race.settled or self.race.open > 0:
            return False
        self.race.settled = True
        return True
