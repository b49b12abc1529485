"""Provider batches as a state machine over a clock: status, counts and which lines have finished. Pure.

Example::

    batch = new_batch("batch_1", "openai", "key", lines, created=0.0, wall=1.7e9,
                      timing=Timing.of(2.0), deadline=None, errors=[], extra={}, seed=0)
    view(batch, now=0.1).status    # "validating"  (the first 10 % of batch_seconds)
    view(batch, now=1.0).finished  # lines done so far, growing until 1.8 s
    view(batch, now=2.0).status    # "completed"

Nothing runs in the background: every answer is derived from the clock reading a
route passes in, so a test moves time by hand. Lines finish one by one in a seeded,
shuffled order (the order results are written in), evenly spread over the processing
time. A cancel or a deadline halts processing: lines finished by then keep their
results, the rest are cancelled / expired.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

from ._hashing import stable_hash, unit

__all__ = ["DAY", "Batch", "Line", "LineError", "Timing", "View", "deadline_for", "new_batch", "outcomes", "view"]

DAY = 86_400.0
"""The providers' completion window: a batch not done within it expires."""


@dataclass(frozen=True)
class Timing:
    """Seconds a batch spends validating, processing lines, and finalizing."""

    validating: float
    processing: float
    finalizing: float

    @classmethod
    def of(cls, seconds: float, validates: bool = True) -> Timing:
        """Split ``seconds`` 10/80/10; without a validation phase (Anthropic) processing takes 90 %."""
        if validates:
            return cls(0.1 * seconds, 0.8 * seconds, 0.1 * seconds)
        return cls(0.0, 0.9 * seconds, 0.1 * seconds)


@dataclass(frozen=True)
class LineError:
    """How a line failed when it ran: the HTTP status it got and the provider's error fields."""

    status: int
    type: str
    message: str
    param: str | None = None
    code: str | None = None


@dataclass
class Line:
    """One request of a batch; ``error`` is decided when the batch is created (bad params, injected faults)."""

    custom_id: str
    params: Any
    error: LineError | None = None


@dataclass
class Batch:
    """A batch and its timeline (clock readings in seconds); ``extra`` holds fields echoed back to the client."""

    id: str
    provider: Literal["openai", "anthropic"]
    owner: str
    lines: list[Line]
    created: float
    created_wall: float
    timing: Timing
    deadline: float | None
    errors: list[dict[str, Any]]
    extra: dict[str, Any]
    cancel_at: float | None = None
    order: list[int] = field(default_factory=list)
    """Line indexes in the order they finish (and are written to the results)."""
    errors_before: list[int] = field(default_factory=list)
    """errors_before[k]: how many of the first k finishing lines errored."""

    @property
    def started(self) -> float:
        """Return when processing starts (validation over)."""
        return self.created + self.timing.validating

    @property
    def processed(self) -> float:
        """Return when the last line would finish."""
        return self.started + self.timing.processing

    def halted(self) -> tuple[float, str] | None:
        """Return (when, why) processing stops early: "cancelled" or "expired"; None when it runs to the end."""
        stops = []
        if self.cancel_at is not None and self.cancel_at < self.processed:
            stops.append((self.cancel_at, "cancelled"))
        if self.deadline is not None and self.deadline < self.processed:
            stops.append((self.deadline, "expired"))
        return min(stops) if stops else None

    def finished_by(self, when: float) -> int:
        """Return how many lines have finished at clock reading ``when`` (they finish evenly spaced)."""
        n = len(self.lines)
        if n == 0 or when < self.started:
            return 0
        if self.timing.processing <= 0:
            return n
        return min(n, math.floor(n * (when - self.started) / self.timing.processing + 1e-9))


@dataclass(frozen=True)
class View:
    """A batch as seen at one moment: OpenAI's status vocabulary, counts, and the times of past events."""

    status: str
    succeeded: int
    errored: int
    unfinished: int
    times: dict[str, float]
    ended: bool


def new_batch(
    batch_id: str,
    provider: Literal["openai", "anthropic"],
    owner: str,
    lines: list[Line],
    *,
    created: float,
    wall: float,
    timing: Timing,
    deadline: float | None,
    errors: list[dict[str, Any]],
    extra: dict[str, Any],
    seed: int,
) -> Batch:
    """Build a batch with its seeded finishing order and running error counts."""
    order = list(range(len(lines)))
    random.Random(stable_hash(seed, batch_id)).shuffle(order)
    errors_before = [0]
    for index in order:
        errors_before.append(errors_before[-1] + (lines[index].error is not None))
    if deadline is not None:
        deadline = max(deadline, created + timing.validating)
    return Batch(batch_id, provider, owner, lines, created, wall, timing, deadline, errors, extra,
                 order=order, errors_before=errors_before)


def deadline_for(
    created: float, timing: Timing, expire_after: float | None, expire_rate: float, seed: int, batch_id: str
) -> float | None:
    """Return when unfinished lines expire: `SimConfig.batch_expire_after`, or half way for a batch the
    `Faults.batch_expire_rate` die picks; None when the batch never expires in practice."""
    candidates = []
    if expire_after is not None:
        candidates.append(created + expire_after)
    if expire_rate > 0 and unit(seed, stable_hash(batch_id), 31) < expire_rate:
        candidates.append(created + timing.validating + timing.processing / 2)
    return min(candidates) if candidates else None


def view(batch: Batch, now: float) -> View:
    """Return the batch's state at clock reading ``now``."""
    n = len(batch.lines)
    halt = batch.halted()  # a cancel after the deadline (or the end) changes nothing
    if halt is not None and halt[1] == "cancelled" and now >= halt[0]:
        return _cancelling(batch, now)
    if now < batch.started:
        return View("validating", 0, 0, n, {}, False)
    if batch.errors:
        return View("failed", 0, 0, n, {"failed": batch.started}, True)
    times = {"in_progress": batch.started}
    if halt is not None and halt[1] == "expired" and now >= halt[0]:
        done = batch.finished_by(halt[0])
        errored = batch.errors_before[done]
        return View("expired", done - errored, errored, n - done, {**times, "expired": halt[0]}, True)
    done = batch.finished_by(now)
    errored = batch.errors_before[done]
    if now < batch.processed:
        return View("in_progress", done - errored, errored, n - done, times, False)
    times["finalizing"] = batch.processed
    ends = batch.processed + batch.timing.finalizing
    if now < ends:
        return View("finalizing", done - errored, errored, 0, times, False)
    return View("completed", done - errored, errored, 0, {**times, "completed": ends}, True)


def _cancelling(batch: Batch, now: float) -> View:
    """Return the view of a batch whose cancel has been asked for: "cancelling", then "cancelled"."""
    assert batch.cancel_at is not None
    n = len(batch.lines)
    done = batch.finished_by(batch.cancel_at)
    errored = batch.errors_before[done]
    times = {"cancelling": batch.cancel_at}
    if batch.cancel_at >= batch.started and not batch.errors:
        times["in_progress"] = batch.started
    ends = batch.cancel_at + batch.timing.finalizing
    if now < ends:
        return View("cancelling", done - errored, errored, n - done, times, False)
    return View("cancelled", done - errored, errored, n - done, {**times, "cancelled": ends}, True)


def outcomes(batch: Batch) -> Iterator[tuple[Line, str]]:
    """Yield each line, in finishing order, with what became of it once the batch ended:
    "succeeded", "errored", "cancelled" or "expired"."""
    halt = batch.halted()
    done = batch.finished_by(halt[0]) if halt else len(batch.lines)
    for rank, index in enumerate(batch.order):
        line = batch.lines[index]
        if rank >= done:
            yield line, halt[1] if halt else "cancelled"
        else:
            yield line, "errored" if line.error is not None else "succeeded"
