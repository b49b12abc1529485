"""A batch's spend guard: each request's worst case is reserved before it is sent, so the batch pauses
before it could spend more than its budget — however many requests are in flight. Pure bookkeeping.

```python
guard = SpendGuard(budget=0.50)
ticket = guard.reserve(cost=0.002, tokens=900)     # None: it might not fit, the batch pauses
guard.settle(ticket, cost=0.0013, tokens=610)      # the real cost replaces the reservation
guard.spent, guard.paused
```

The worst case of a request is its prompt tokens (counted, with a margin where they are approximated)
plus its ``max_tokens``, or, without ``max_tokens``, a generous guess from the answers seen so far
(``OutputGuess``). With ``max_tokens`` set the budget is never exceeded; without it, an answer far
longer than any seen before can overshoot by its excess. See docs/ARCHITECTURE.md, "Spend guard".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .._exceptions import ConfigurationError

__all__ = ["OutputGuess", "SpendGuard", "Ticket"]

# the approximate token count is off by up to 27 % (nbllm._tokens): reservations count 30 % more
APPROXIMATION_MARGIN = 1.3
# an answer length never seen before is guessed as this much longer than the longest seen
_LONGEST_MARGIN = 1.25
_DEFAULT_OUTPUT = 1024  # nothing seen and no max_tokens: a long answer, to be safe


@dataclass(frozen=True)
class Ticket:
    """What one reservation holds until the request settles."""

    cost: float
    tokens: int


@dataclass
class SpendGuard:
    """Spending of one batch against ``budget`` (USD) and/or ``budget_tokens``; None means no limit."""

    budget: float | None = None
    budget_tokens: int | None = None
    spent: float = 0.0
    spent_tokens: int = 0
    reserved: float = 0.0
    reserved_tokens: int = 0
    paused: bool = False

    def __post_init__(self) -> None:
        self.check(self.budget, self.budget_tokens)

    @staticmethod
    def check(budget: float | None, budget_tokens: int | None) -> None:
        for name, value in (("budget", budget), ("budget_tokens", budget_tokens)):
            if value is not None and not value >= 0:
                raise ConfigurationError(f"{name} must be a number ≥ 0, got {value!r}.")

    @property
    def active(self) -> bool:
        return self.budget is not None or self.budget_tokens is not None

    def reserve(self, cost: float, tokens: int) -> Ticket | None:
        """Hold ``cost``/``tokens`` for a request about to be sent; None (and pause) if it might not fit.

        Once paused it stays paused until ``raise_to`` gives it room, so requests keep their order.
        """
        if self.paused:
            return None
        over_cost = self.budget is not None and self.spent + self.reserved + cost > self.budget
        over_tokens = self.budget_tokens is not None and self.spent_tokens + self.reserved_tokens + tokens > self.budget_tokens
        if over_cost or over_tokens:
            self.paused = True
            return None
        self.reserved += cost
        self.reserved_tokens += tokens
        return Ticket(cost, tokens)

    def settle(self, ticket: Ticket, cost: float, tokens: int) -> None:
        """The request finished: its real ``cost``/``tokens`` (0 for a failure) replace its reservation."""
        self.reserved = max(self.reserved - ticket.cost, 0.0)
        self.reserved_tokens = max(self.reserved_tokens - ticket.tokens, 0)
        self.spent += cost
        self.spent_tokens += tokens

    def raise_to(self, budget: float | None = None, budget_tokens: int | None = None) -> None:
        """New limits (the batch's total, including what it already spent); un-pauses."""
        self.check(budget, budget_tokens)
        if budget is not None:
            self.budget = budget
        if budget_tokens is not None:
            self.budget_tokens = budget_tokens
        self.paused = False

    def describe(self) -> tuple[float, float]:
        """(spent, budget) in the unit of the limit that applies: USD, else tokens."""
        if self.budget is not None:
            return self.spent, self.budget
        return float(self.spent_tokens), float(self.budget_tokens or 0)


class OutputGuess:
    """How many tokens answers of a batch take: typical (median) and worst (a margin over the longest).

    Fed by answers seen before the batch (its items already in the store, the model's recent answers)
    and by every answer of the batch as it finishes; ``max_tokens``, when set, is the worst case.
    """

    def __init__(self, seen: Iterable[int] = (), max_tokens: int | None = None) -> None:
        self.samples = sorted(int(n) for n in seen if n is not None and n >= 0)
        self.max_tokens = max_tokens
        self.longest = self.samples[-1] if self.samples else None

    def add(self, completion_tokens: int) -> None:
        if self.longest is None or completion_tokens > self.longest:
            self.longest = completion_tokens

    @property
    def typical(self) -> int | None:
        if not self.samples:
            return None
        middle = self.samples[len(self.samples) // 2]
        return min(middle, self.max_tokens) if self.max_tokens else middle

    @property
    def worst(self) -> int:
        if self.max_tokens:
            return self.max_tokens
        if self.longest is None:
            return _DEFAULT_OUTPUT
        return max(16, math.ceil(self.longest * _LONGEST_MARGIN))
