"""Batch progress as plain state plus its one-line formatting; nothing here displays anything.

```python
progress = BatchProgress(total=10_000, model="gpt-4o-mini")
progress.item_done(ok=True, prompt_tokens=40, completion_tokens=12, key_alias="key-1")
progress.format_line()  # e.g. '1 234/10 000 ✓1 230 ✗4 ⟲0 · 812 req/min · 95.3k tok/min · $0.041 · ETA 10:51'
progress.budget = 0.50    # a spend guard's limit: the cost then reads '$0.041 / $0.50'
```

Rates are measured over a sliding 30 s window so that the ETA follows the current pace (keys cooling
down, a provider slowing) rather than the average since the start. Answers served from the store are
counted (⟲) but are not requests: they would make a resumed batch look thousands of times faster. Every update is O(1) amortised:
a batch of 100 000 items must not spend noticeable time on its own bookkeeping.

A batch sent through a provider's batch API (``mode="batch"``) also shows the provider's own counts
(``set_provider_counts``: validating / in progress / completed / failed) instead of request rates, and
its cost at the batch price (``batch_prices``).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Mapping

from .._format import format_cost, format_count, format_duration, format_tokens
from .._pricing import Rates, rates

__all__ = ["BatchProgress"]

#: Width of the window (seconds) over which req/min, tok/min and the ETA are measured.
WINDOW = 30.0
# a provider batch's counts as the bar names them
_PROVIDER_LABELS = (("validating", "validating"), ("in_progress", "in progress"), ("completed", "completed"),
                    ("failed", "failed"))


class BatchProgress:
    """Counters and recent rates of one batch; fed by ``item_done``, read by the displays."""

    __slots__ = (
        "total", "model", "done", "ok", "failed", "cached", "repaired", "structured", "prompt_tokens",
        "completion_tokens", "by_key", "not_stored", "_clock", "_start", "_window", "_window_tokens",
        "provider_counts", "provider_waiting", "spent", "budget", "budget_tokens", "batch_prices", "_rates",
        "hedges",
        "in_flight", "in_flight_target",
    )

    def __init__(self, total: int, model: str = "", clock: Callable[[], float] = time.monotonic,
                 batch_prices: bool = False, structured: bool = False) -> None:
        self.total = total
        self.model = model
        # USD spent so far, item by item (a long prompt may pay a long-context rate); None: no price known
        self.spent: float | None = None
        self.budget: float | None = None  # shown as "spent / budget" when a batch has a spend guard
        self.budget_tokens: int | None = None
        self.batch_prices = batch_prices  # priced at the provider's Batch API rates (mode="batch")
        self._rates: Rates | None | bool = False  # looked up on the first item (False: not yet)
        # a provider batch's own counts (validating, in_progress, completed, failed), once polled
        self.provider_counts: dict[str, int] | None = None
        # items the provider has finished whose results nbllm has not collected yet
        self.provider_waiting = 0
        self.done = self.ok = self.failed = self.cached = 0
        # with schema=: ok items that needed a re-ask; the line then reads valid first time / repaired / failed
        self.repaired, self.structured = 0, structured
        # tokens actually spent; cached answers cost nothing and are not counted
        self.prompt_tokens = self.completion_tokens = 0
        # key alias -> items finished through that key
        self.by_key: dict[str, int] = {}
        # answers the store could not write (set when the batch ends): a rerun sends them again
        self.not_stored = 0
        # extra requests sent to race slow ones on another key (hedging); shown as ⇉n once there is one
        self.hedges = 0
        # requests in flight and the pool's admission target for them (set by the batch; 0: not shown)
        self.in_flight = self.in_flight_target = 0
        self._clock = clock
        self._start = clock()
        # FIFO of (finish time, tokens) of the items finished in the last WINDOW seconds
        self._window: deque[tuple[float, int]] = deque()
        # sum of the token counts currently in _window, kept in step with it
        self._window_tokens = 0

    @property
    def clock(self) -> Callable[[], float]:
        """The time source; the displays throttle on it too, so tests can drive both at once."""
        return self._clock

    def item_done(
        self,
        ok: bool,
        cached: bool = False,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        key_alias: str | None = None,
        repaired: bool = False,
    ) -> None:
        """Count one finished item (answered, failed, or served from the store; ``repaired``: re-asked)."""
        now = self._clock()
        self.done += 1
        if ok:
            self.ok += 1
            self.repaired += repaired
        else:
            self.failed += 1
        if key_alias is not None:
            self.by_key[key_alias] = self.by_key.get(key_alias, 0) + 1
        if cached:
            self.cached += 1
            return
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self._add_cost(prompt_tokens, completion_tokens)
        tokens = prompt_tokens + completion_tokens
        self._window.append((now, tokens))
        self._window_tokens += tokens
        self._prune(now)

    def hedge_sent(self) -> None:
        """Count one extra request that raced a slow one (its cost is counted with the item's answer)."""
        self.hedges += 1

    def _add_cost(self, prompt_tokens: int, completion_tokens: int) -> None:
        if self._rates is False:
            self._rates = rates(self.model, batch=self.batch_prices) if self.model else None
        if isinstance(self._rates, Rates):
            self.spent = (self.spent or 0.0) + self._rates.cost(prompt_tokens, completion_tokens)

    def _prune(self, now: float) -> None:
        # each entry is appended once and popped once: O(1) amortised per item
        window, horizon = self._window, now - WINDOW
        while window and window[0][0] < horizon:
            self._window_tokens -= window.popleft()[1]

    def _span(self, now: float) -> float:
        """Seconds the window covers: 30 s, or less at the start of the batch."""
        return max(min(WINDOW, now - self._start), 1e-3)

    def set_provider_counts(self, counts: Mapping[str, int], finished_not_collected: int = 0) -> None:
        """What the provider's batches report; the bar also moves with what they finished."""
        self.provider_counts = dict(counts)
        self.provider_waiting = max(finished_not_collected, 0)

    @property
    def position(self) -> int:
        """Where the bar stands: finished items, plus those a provider batch finished but nbllm has not
        collected yet (its answers arrive when the batch ends)."""
        return min(self.done + self.provider_waiting, self.total)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def remaining(self) -> int:
        return max(self.total - self.done, 0)

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    @property
    def requests_per_minute(self) -> float:
        now = self._clock()
        self._prune(now)
        return len(self._window) * 60.0 / self._span(now)

    @property
    def tokens_per_minute(self) -> float:
        now = self._clock()
        self._prune(now)
        return self._window_tokens * 60.0 / self._span(now)

    @property
    def eta(self) -> float | None:
        """Seconds left at the recent pace; ``None`` before the first item, after a 30 s stall, and while
        a provider batch works (its pace is the provider's)."""
        if self.done == 0 or self.provider_counts is not None:
            return None
        if self.remaining == 0:
            return 0.0
        per_minute = self.requests_per_minute
        return self.remaining * 60.0 / per_minute if per_minute > 0 else None

    @property
    def cost(self) -> float | None:
        """USD spent so far (None when the model's price is unknown); answers from the store are free."""
        if self.spent is None and self.budget is not None:
            return 0.0  # nothing spent yet, but "$0 / $0.50" says the guard is on
        return self.spent

    def _cost_text(self) -> str | None:
        cost = self.cost
        if cost is None:
            return None
        return format_cost(cost) + (f" / {format_cost(self.budget)}" if self.budget is not None else "")

    def _tokens_text(self) -> str | None:
        if self.budget_tokens is None:
            return None
        return f"{format_tokens(self.tokens)} / {format_tokens(self.budget_tokens)} tokens"

    def _provider_text(self) -> str:
        counts = self.provider_counts or {}
        return " · ".join(f"{label} {format_count(counts.get(name, 0))}" for name, label in _PROVIDER_LABELS)

    def _outcomes(self) -> str:
        """``✓ok ✗failed ⟲cached``; with a schema ``✓valid first time ✎repaired ✗failed ⟲cached``; then
        ``⇉hedges`` once a slow request was raced on another key."""
        if self.structured:
            valid = f"✓{format_count(self.ok - self.repaired)} ✎{format_count(self.repaired)}"
        else:
            valid = f"✓{format_count(self.ok)}"
        hedged = f" ⇉{format_count(self.hedges)}" if self.hedges else ""
        return f"{valid} ✗{format_count(self.failed)} ⟲{format_count(self.cached)}{hedged}"

    def _pace(self) -> list[str]:
        """Request and token rates, or a provider batch's own counts instead."""
        if self.provider_counts is not None:
            return [f"batch: {self._provider_text()}"]
        pace = [f"{self.requests_per_minute:.0f} req/min", f"{format_tokens(self.tokens_per_minute)} tok/min"]
        return pace + [self._in_flight_text()] if self.in_flight_target and self.done < self.total else pace

    def _in_flight_text(self) -> str:
        return f"in flight {self.in_flight}/{self.in_flight_target}"

    def format_line(self) -> str:
        """``"1 234/10 000 ✓1 230 ✗4 ⟲0 · 812 req/min · 95.3k tok/min · $0.041 · ETA 10:51"``."""
        parts = [f"{format_count(self.done)}/{format_count(self.total)} {self._outcomes()}", *self._pace()]
        parts += [text for text in (self._cost_text(), self._tokens_text()) if text]
        eta = self.eta
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return " · ".join(parts + self._storage_note())

    def _storage_note(self) -> list[str]:
        return [f"⚠ {format_count(self.not_stored)} not stored"] if self.not_stored else []

    def format_dict(self) -> dict[str, Any]:
        """The same numbers as ``format_line``, for ``tqdm.set_postfix`` (done/total is the bar's)."""
        out: dict[str, Any] = {"ok": self.ok - self.repaired, "repaired": self.repaired} if self.structured else {"ok": self.ok}
        out.update({"failed": self.failed, "cached": self.cached})
        if self.hedges:
            out["hedged"] = self.hedges
        if self.provider_counts is not None:
            out["batch"] = self._provider_text()
        else:
            out["req/min"] = f"{self.requests_per_minute:.0f}"
            out["tok/min"] = format_tokens(self.tokens_per_minute)
            if self.in_flight_target and self.done < self.total:
                out["in flight"] = f"{self.in_flight}/{self.in_flight_target}"
        cost, spent_tokens, eta = self._cost_text(), self._tokens_text(), self.eta
        if cost is not None:
            out["cost"] = cost
        if spent_tokens is not None:
            out["spent"] = spent_tokens
        if eta is not None:
            out["ETA"] = format_duration(eta)
        return out

    def summary(self) -> str:
        """One line for the end: ``"10 000 done in 12:18 · ✓9 996 ✗4 ⟲0 · 1.2M tokens · $0.410 · …"``."""
        elapsed = self.elapsed
        parts = [
            f"{format_count(self.done)}/{format_count(self.total)} done in {format_duration(elapsed)}",
            self._outcomes(),
            f"{format_tokens(self.tokens)} tokens",
        ]
        cost = self._cost_text()
        if cost is not None:
            parts.append(cost)
        parts.append(f"{self.done * 60.0 / max(elapsed, 1e-3):.0f} req/min average")
        return " · ".join(parts + self._storage_note())

    def __repr__(self) -> str:
        return f"<BatchProgress {self.format_line()}>"
