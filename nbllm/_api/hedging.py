"""Hedging the tail: a request that runs longer than its key's p95 is raced on another key.

    share = hedge_share(hedge, guarded=budget is not None)      # 0.0: off
    hedger = Hedger(pool, model, stream, HedgeBudget.for_items(len(pending), share), left=len(pending))
    hedger.item_started()                                        # as each item leaves the queue
    response = await hedger.answer(functools.partial(runner.answer, call, cache=False))  # called with watch=

A batch's wall time ends with its slowest requests. Once nothing is left to start and no request waits
for a key (capacity would idle), a request that has run longer than the 95th percentile of its key and
model — time to first token for streams, the whole answer otherwise — is sent again on another key. The
first answer wins; the other attempt is cancelled (its lease released). A budget caps the extra requests
(5 % of the batch, at least one); as it runs low, only requests deeper in the tail get one. The
decision (``hedge_wait``, ``tail_threshold``) and the budget are pure arithmetic on a ``now`` passed in;
``Hedger`` is the thin async shell that races the two attempts. See docs/ARCHITECTURE.md, "Hedging".
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


Send = Callable[..., Awaitable[Response]]  # called as send(watch=AttemptWatch)


class _Item:
    """One item being answered: its race, its first attempt (run inline by the worker), its hedge."""

    __slots__ = ("awaiting_hedge", "hedge", "hedge_watch", "interrupted", "primary", "race", "send", "settled",
                 "worker")

    def __init__(self, send: Send, clock: Callable[[], float]) -> None:
        self.send, self.race = send, Race()
        self.primary = self.race.watch(clock)
        self.worker = asyncio.current_task()
        self.hedge: asyncio.Task[Response] | None = None
        self.hedge_watch: AttemptWatch | None = None
        self.interrupted = False  # the hedge answered first and cancelled the worker's first attempt
        self.awaiting_hedge = False  # the first attempt failed: the worker awaits the hedge itself
        self.settled = False


class Hedger:
    """One batch's hedging: its budget, whether capacity idles, and the race of each item's attempts.

    ``left``: items not yet started (``item_started`` counts them down); ``on_sent`` is called once per
    hedge that really went out (it got a key). ``close()`` when the batch ends.

    Each item's first attempt runs inline in the worker that answers it — no task, no ``asyncio.wait``
    per item, which cost ~10 µs of CPU per item while hedging could not even happen yet
    (docs/ARCHITECTURE.md, "Client CPU"). Once nothing is left to start, one watcher task looks at the
    items in flight and starts a hedge as a task where one is due; the first answer wins, and a hedge that
    wins interrupts the worker's attempt by cancelling it (the cancel is then taken back: ``uncancel``).
    """

    def __init__(self, pool: KeyPool, model: str, stream: bool, budget: HedgeBudget, left: int,
                 on_sent: Callable[[], None] | None = None) -> None:
        self.pool, self.model, self.stream, self.budget = pool, model, stream, budget
        self.left, self.on_sent, self.sent = left, on_sent, 0
        self.running = 0  # items being answered that have no hedge yet (candidates for the budget left)
        self._items: dict[_Item, None] = {}  # in flight, oldest first
        self._watcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # the watcher's sleep; resolved to look again now

    def item_started(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self._watch_soon()

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
        item = _Item(send, self.pool.clock)
        self._items[item] = None
        self.running += 1
        if self.left <= 0:
            self._watch_soon()
        try:
            try:
                return await send(watch=item.primary)
            except asyncio.CancelledError:
                # the hedge answered first: it cancelled this attempt (``_hedge_ended``: take that cancel
                # back), or this attempt, answering later, lost the race and raised it itself
                if item.interrupted:
                    item.worker.uncancel()
                if item.worker.cancelling() or not _succeeded(item.hedge):
                    raise  # the batch is being stopped
                return item.hedge.result()  # type: ignore[union-attr]
            except Exception:
                if item.interrupted:  # our cancel came back as another error
                    item.worker.uncancel()
                if item.hedge is None or item.hedge.cancelled():
                    raise
                item.awaiting_hedge = True  # the hedge may still answer: its outcome is the item's
                return await item.hedge
        finally:
            item.settled = True
            del self._items[item]
            if item.hedge is None:
                self.running -= 1
            else:
                await _cancel(item.hedge)
                self._account(item.hedge_watch)
            if not self._items:
                self._poke()  # the watcher has nothing left to watch: let it end now

    def close(self) -> None:
        """The batch ended (or was stopped): the watcher stops; hedges end with their items."""
        if self._watcher is not None:
            self._watcher.cancel()

    # ---- the watcher ------------------------------------------------------------------------------------
    def _watch_soon(self) -> None:
        """Nothing is left to start: make sure the watcher runs, and looks at the items in flight now."""
        if self._watcher is None or self._watcher.done():
            if self._items and self.budget.left:
                self._watcher = asyncio.ensure_future(self._watch())
        else:
            self._poke()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._items and self.budget.left:
            delay = self._hedge_due()
            self._wake = loop.create_future()
            timer = loop.call_later(delay, _resolve, self._wake)
            try:
                await self._wake
            finally:
                timer.cancel()

    def _hedge_due(self) -> float:
        """Hedge every item that is due (while the budget lasts); return how long until the next look."""
        now, soonest = self.pool.clock(), RECHECK_SECONDS
        for item in list(self._items):
            if item.hedge is not None:  # (settled items have left _items; none settles during this loop)
                continue
            wait = hedge_wait(self.view(item.primary), now)
            if wait == 0.0 and item.primary.key_alias is not None and self.budget.take():
                self._start_hedge(item)
            elif wait > 0.0:
                soonest = min(soonest, wait)
        return soonest

    def _start_hedge(self, item: _Item) -> None:
        item.hedge_watch = item.race.watch(self.pool.clock, avoid={item.primary.key_alias} - {None})
        item.hedge = asyncio.ensure_future(item.send(watch=item.hedge_watch))
        item.hedge.add_done_callback(lambda task: self._hedge_ended(item, task))
        self.running -= 1

    @staticmethod
    def _hedge_ended(item: _Item, task: asyncio.Task[Response]) -> None:
        """A hedge answered while the worker's own attempt still runs: stop that attempt, the item is answered."""
        if item.settled or item.awaiting_hedge or item.worker is None or not _succeeded(task):
            return
        item.interrupted = True
        item.worker.cancel()

    def _account(self, hedge: AttemptWatch | None) -> None:
        if hedge is None:
            return
        if hedge.leases:
            self.sent += 1
            if self.on_sent is not None:
                self.on_sent()
        else:
            self.budget.refund()
            if self.left <= 0:
                self._watch_soon()  # the budget has room again


def _succeeded(task: asyncio.Future[Response] | None) -> bool:
    return task is not None and task.done() and not task.cancelled() and task.exception() is None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _cancel(task: asyncio.Future[Response]) -> None:
    """Cancel a hedge still running (it lost the race, or the batch is being stopped) and let it end."""
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
