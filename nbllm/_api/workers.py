"""A batch's workers: as many as the key pool's admission target says, re-read after every item.

    workers = Workers(indexes, work=lambda todo: batch._worker(todo, ...), target=lambda: 60)
    await workers.run()          # returns when every item is done; raises a worker's error

Each worker takes items from one shared iterator and, after each item, asks ``keep_going()``: the
answer is no when there are more workers than the target (the worker ends), and the call starts new
workers when there are fewer (while items are left). So the number in flight follows the target as
answers arrive, and no task is made per item up front (a 100 000-prompt batch holds ``target`` tasks,
not 100 000). The target is read at most every ``REREAD_SECONDS`` (it costs ~10 µs with a few keys,
which per answer would be a noticeable share of the client's CPU per request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

__all__ = ["Workers"]

Work = Callable[[Iterator[int]], Coroutine[Any, Any, None]]

# Latency and limits change over seconds; reading the target 20 times a second follows them closely.
REREAD_SECONDS = 0.05


class Workers:
    """Run ``work(todo)`` coroutines over ``indexes`` with ``target()`` of them at a time (see module docs)."""

    def __init__(self, indexes: Sequence[int], work: Work, target: Callable[[], int], *,
                 clock: Callable[[], float] = time.monotonic, reread_seconds: float = REREAD_SECONDS) -> None:
        self._left = len(indexes)  # items no worker has taken yet
        self._todo = self._counted(iter(indexes))
        self._work, self._target = work, target
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped: set[asyncio.Task[Any]] = set()  # told to end by keep_going, already uncounted
        self.active = 0  # workers running (holding an item, or about to take one)
        self._idle = 0  # active workers that have not taken their next item yet
        self.goal = 0  # the last target read
        self._clock, self._reread, self._next_read = clock, reread_seconds, -float("inf")
        self._error: BaseException | None = None
        self._finished: asyncio.Event | None = None

    def _counted(self, items: Iterator[int]) -> Iterator[int]:
        for i in items:
            self._left -= 1
            self._idle = max(0, self._idle - 1)
            yield i

    async def run(self) -> None:
        """Start the first workers, wait until all ended; raise the first error a worker raised."""
        self._finished = asyncio.Event()
        try:
            self._grow()
            if self._tasks:
                await self._finished.wait()
            if self._error is not None:
                raise self._error
        finally:
            await self.settle()

    def keep_going(self) -> bool:
        """Called by a worker after each item: False when it should end (more workers than the target),
        else True, having started new workers if the target grew."""
        self._read_target()
        if self.active > self.goal:
            self.active -= 1
            task = asyncio.current_task()
            if task is not None:
                self._stopped.add(task)
            return False
        self._idle += 1
        self._grow(read=False)
        return True

    def _read_target(self) -> None:
        now = self._clock()
        if now >= self._next_read:
            self.goal, self._next_read = self._target(), now + self._reread

    def _grow(self, read: bool = True) -> None:
        if read:
            self._read_target()
        # a new worker only for an item no running worker is about to take
        while self.active < self.goal and self._left > self._idle:
            self.active += 1
            self._idle += 1
            task = asyncio.get_running_loop().create_task(self._work(self._todo))
            self._tasks.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task in self._stopped:
            self._stopped.discard(task)
        else:  # ran out of items, paused, or failed
            self.active -= 1
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()
        if (self._error is not None or not self._tasks) and self._finished is not None:
            self._finished.set()

    async def settle(self) -> None:
        """Cancel every worker still running and wait until they have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
