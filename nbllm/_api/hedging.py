"""Hedging the tail: a request that runs longer than its key's p95 is raced on another key.

    share = hedge_share(hedge, guarded=budget is not None)      # 0.0: off
    hedger = Hedger(pool, model, stream, HedgeBudget.for_items(len(pending), share), left=len(pending))
    hedger.item_started()                                        # as each item leaves the queue
    response = await hedger.answer(lambda watch: runner.answer(call, cache=False, watch=watch))

A batch's wall time ends with its slowest requests. Once nothing is left to start and no request waits
for a key (capacity would idle), a request that has run longer than the 95th percentile of its key and
model — time to first token for streams, the whole answer otherwise — is sent again on another key. The
first answer wins; the other attempt is cancelled (its lease released). A budget caps the extra requests
(5 % of the batch, at least one); as it runs low, only requests deeper in the tail get one. The
decision (``hedge_wait``, ``tail_threshold``) and the budget are pure arithmetic on a ``now`` passed in;
``Hedger.answer`` is the thin async shell that races the two attempts. See docs/ARCHITECTURE.md, "Hedging".
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .._client import AttemptWatch, Race
from .._exceptions import ConfigurationError
from .._keys import KeyPool
from .._types import Response

__all__ = ["DEFAULT_SHARE", "HedgeBudget", "HedgeView", "Hedger", "hedge_share", "hedge_wait", "tail_threshold"]

DEFAULT_SHARE = 0.05  # extra requests a batch may spend on hedges, as a share of its items
QUANTILE = 0.95  # a request slower than this share of its key's answers is in the tail
# Look again after this long when the key's tail is not known yet (too few answers) or the attempt is
# between requests (waiting for a key, or backing off before a retry).
RECHECK_SECONDS = 1.0
# A request is due but the pool has waiters (retries): capacity is not idle; look again soon.
BUSY_RECHECK_SECONDS = 0.25


def hedge_share(hedge: bool | float | None, guarded: bool = False) -> float:
    """The budget share from ``amap(hedge=...)``: False → off, True → 5 %, a number in (0, 1] → that share.

    None (the default) is on, except under a spend guard (``budget=``): a hedge is an extra request the
    guard did not reserve, so there it takes ``hedge=True``.
    """
    if hedge is None:
        return 0.0 if guarded else DEFAULT_SHARE
    if isinstance(hedge, bool):
        return DEFAULT_SHARE if hedge else 0.0
    if isinstance(hedge, (int, float)) and 0.0 < hedge <= 1.0:
        return float(hedge)
    raise ConfigurationError(f"hedge must be True, False or a share of the batch in (0, 1], got {hedge!r}.")


def tail_threshold(p95: float | None, left: int, limit: int, running: int = 0) -> float | None:
    """How long a request may run before it is hedged: its key's p95 while the budget left covers every
    request still running unhedged (``running``) or at least half the budget is left; otherwise rising
    to twice the p95 as the budget runs out — scarce hedges go to requests surely stalled, not to ones
    merely slow (just past the p95 most requests still end within a median or two; a stall can take
    many times that)."""
    if p95 is None or limit <= 0 or left >= running:
        return p95
    scarcity = max(0.0, 1.0 - 2.0 * left / limit)  # 0 with half the budget left, 1 with none
    return p95 * (1.0 + scarcity)


class HedgeBudget:
    """How many extra requests a batch may still send (pure counting)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit, self.used = max(0, limit), 0

    @classmethod
    def for_items(cls, items: int, share: float) -> HedgeBudget:
        """``share`` of ``items``, rounded up, at least one hedge when hedging is on and there is an item."""
        if share <= 0 or items <= 0:
            return cls(0)
        return cls(max(1, math.ceil(share * items)))

    @property
    def left(self) -> int:
        return self.limit - self.used

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def refund(self) -> None:
        """A hedge that never got a key sent nothing: it does not count."""
        self.used = max(0, self.used - 1)


@dataclass(frozen=True)
class HedgeView:
    """What the decision sees of one running request (times on the key pool's clock)."""

    started: float | None  # when the request got its key; None: waiting for one, or between retries
    threshold: float | None  # the key's p95 for this model; None: too few answers to know
    answering: bool = False  # a stream's first token arrived: its time to first token is no longer in doubt
    idle: bool = True  # nothing left to start and nothing waiting for a key


def hedge_wait(view: HedgeView, now: float) -> float:
    """Seconds until the request should be hedged: 0 now, ``inf`` never; otherwise look again then."""
    if view.answering:
        return math.inf
    if view.started is None or view.threshold is None:
        return RECHECK_SECONDS
    due = view.started + view.threshold - now
    if due > 0:
        return due
    return 0.0 if view.idle else BUSY_RECHECK_SECONDS


Send = Callable[[AttemptWatch], Awaitable[Response]]


class Hedger:
    """One batch's hedging: its budget, whether capacity idles, and the race of each item's attempts.

    ``left``: items not yet started (``item_started`` counts them down); ``on_sent`` is called once per
    hedge that really went out (it got a key).
    """

    def __init__(self, pool: KeyPool, model: str, stream: bool, budget: HedgeBudget, left: int,
                 on_sent: Callable[[], None] | None = None) -> None:
        self.pool, self.model, self.stream, self.budget = pool, model, stream, budget
        self.left, self.on_sent, self.sent = left, on_sent, 0
        self.running = 0  # items being answered that have no hedge yet (candidates for the budget left)
        # done once nothing is left to start: requests that are due wait on it instead of polling
        self.drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if left <= 0:
            self.drained.set_result(None)

    def item_started(self) -> None:
        self.left -= 1
        if self.left <= 0 and not self.drained.done():
            self.drained.set_result(None)

    def idle(self) -> bool:
        return self.left <= 0 and self.pool.waiting == 0

    def view(self, watch: AttemptWatch) -> HedgeView:
        threshold = None
        if watch.key_alias is not None:
            state = self.pool.key_state(watch.key_alias)
            window = state.first_token_of(self.model) if self.stream else state.latency_of(self.model)
            threshold = tail_threshold(window.quantile(QUANTILE), self.budget.left, self.budget.limit,
                                       self.running)
        answering = self.stream and watch.first_token_at is not None
        return HedgeView(watch.started, threshold, answering, self.idle())

    async def answer(self, send: Send) -> Response:
        """``send`` the item once; race it on another key if it runs into the tail (see module docs)."""
        race = Race()
        primary = race.watch(self.pool.clock)
        tasks: set[asyncio.Future[Response]] = {asyncio.ensure_future(send(primary))}
        hedge: AttemptWatch | None = None
        self.running += 1
        try:
            while True:
                wake, timeout = self._next_look(primary) if hedge is None and self.budget.left else (set(), None)
                done, _ = await asyncio.wait(tasks | wake, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for task in done & tasks:
                    tasks.discard(task)
                    if task.cancelled():  # lost the race: the other attempt's answer comes with it
                        continue
                    if task.exception() is None:
                        return task.result()
                    if not tasks:  # the last attempt failed: that is the item's outcome
                        raise task.exception()  # type: ignore[misc]
                if hedge is None and tasks and self._due(primary) and self.budget.take():
                    hedge = race.watch(self.pool.clock, avoid={primary.key_alias} - {None})
                    tasks.add(asyncio.ensure_future(send(hedge)))
                    self.running -= 1
        finally:
            if hedge is None:
                self.running -= 1
            await _cancel(tasks)
            self._account(hedge)

    def _next_look(self, primary: AttemptWatch) -> tuple[set[asyncio.Future[None]], float | None]:
        """What to wait for besides the attempts: the queue draining, or a time to look again."""
        if not self.drained.done():  # capacity cannot idle while items are still to start
            return {self.drained}, None
        wait = hedge_wait(self.view(primary), self.pool.clock())
        return set(), None if wait == math.inf else wait

    def _due(self, primary: AttemptWatch) -> bool:
        return primary.key_alias is not None and hedge_wait(self.view(primary), self.pool.clock()) == 0.0

    def _account(self, hedge: AttemptWatch | None) -> None:
        if hedge is None:
            return
        if hedge.leases:
            self.sent += 1
            if self.on_sent is not None:
                self.on_sent()
        else:
            self.budget.refund()


async def _cancel(tasks: set[asyncio.Future[Response]]) -> None:
    """Cancel the attempts still running (a lost race, or the batch being stopped) and let them end."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
