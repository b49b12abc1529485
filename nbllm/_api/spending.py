"""The money side of one batch: prices, the spend guard's reservations, the pause, the estimate.

A ``Batch`` holds one ``BatchSpending``. Before each request it reserves the request's worst case
(``reserve``); when the answer arrives the real cost replaces the reservation (``settle``). When a
reservation does not fit the budget the guard is paused: the batch sends nothing more, lets what is in
flight finish, and raises ``paused_error()``. The pure bookkeeping is ``budget.SpendGuard``; see
docs/ARCHITECTURE.md, "Spend guard".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._call import CallRunner, PreparedCall
from .._exceptions import BatchPaused, ConfigurationError
from .._format import format_cost, format_count, format_tokens
from .._pricing import Rates, rates
from .._tokens import count_message_tokens, tokenizer_for
from .._types import Failure, Response
from .budget import APPROXIMATION_MARGIN, OutputGuess, SpendGuard, Ticket
from .estimate import Estimate, build_estimate

__all__ = ["BatchSpending"]


class BatchSpending:
    """Prices and the spend guard of one batch (see module docstring)."""

    def __init__(self, runner: CallRunner, budget: float | None, budget_tokens: int | None) -> None:
        self.runner = runner
        self.price_model = runner.settings.model or runner.model  # with its prefix: "anthropic:…", "deepseek:…"
        self.guard = SpendGuard(budget, budget_tokens)
        # looked up here, on the caller's side: the first price imports genai-prices (~0.2 s), which must
        # not stall the engine loop when the progress counts the first item's cost there
        self.rates: Rates | None = rates(self.price_model)
        if budget is not None and self.rates is None:
            raise ConfigurationError(
                f"budget= needs a price for {self.price_model!r}, and none is known. Set one with "
                f"nbllm.set_price({self.price_model!r}, input=…, output=…), or limit tokens with budget_tokens=.")
        self._guess: OutputGuess | None = None

    @property
    def active(self) -> bool:
        return self.guard.active

    @property
    def paused(self) -> bool:
        return self.guard.paused

    def start(self, calls: Sequence[PreparedCall | None], pending: list[int],
              results: Sequence[Response | Failure | None]) -> None:
        """Before the first request: guess answer lengths from this batch's stored items, else the model's
        recent answers in the store (once; a resumed batch keeps its guess)."""
        if not self.guard.active or self._guess is not None:
            return
        seen = [r.usage.completion_tokens for r in results if isinstance(r, Response)]
        store = self.runner.store
        first = next((call for call in calls if call is not None), None)
        if not seen and store is not None and first is not None:
            seen = store.completion_tokens(first.spec.model)
        max_tokens = calls[pending[0]].spec.max_tokens if pending else None  # type: ignore[union-attr]
        self._guess = OutputGuess(seen, max_tokens)

    def reserve(self, call: PreparedCall) -> Ticket | None:
        """Reserve ``call``'s worst case; None when it does not fit (the guard is then paused)."""
        prompt = count_message_tokens(call.spec.messages, self.price_model)
        if tokenizer_for(self.price_model) == "approximation":
            prompt = int(prompt * APPROXIMATION_MARGIN) + 1
        assert self._guess is not None
        output = self._guess.worst
        cost = self.rates.cost(prompt, output) if self.rates is not None else 0.0
        return self.guard.reserve(cost, prompt + output)

    def settle(self, ticket: Ticket | None, result: Response | Failure) -> None:
        """The real cost of a finished item replaces its reservation; its length informs the guess."""
        usage = getattr(result, "usage", None)
        if usage is not None and self._guess is not None:
            self._guess.add(usage.completion_tokens)
        if ticket is None:
            return
        cost = self.rates.cost(usage.prompt_tokens, usage.completion_tokens) if usage and self.rates else 0.0
        self.guard.settle(ticket, cost, usage.total_tokens if usage else 0)

    def raise_to(self, budget: float | None, budget_tokens: int | None) -> None:
        self.guard.raise_to(budget, budget_tokens)

    def paused_error(self, results: list[Any], batch: Any) -> BatchPaused:
        """The error a paused batch raises: what was done, what was spent, and how to continue."""
        done = sum(r is not None for r in results)
        spent, limit = self.guard.describe()
        show: Callable[[float], str] = (format_cost if self.guard.budget is not None
                                        else (lambda n: f"{format_tokens(n)} tokens"))
        key = "budget" if self.guard.budget is not None else "budget_tokens"
        return BatchPaused(
            f"paused before exceeding the {key} of {show(limit)}: {format_count(done)}/{format_count(len(results))} "
            f"done, {show(spent)} spent. The finished items are kept (error.results, llm.last_results and the store). "
            f"To send the {format_count(len(results) - done)} left: await llm.last_batch.resume({key}=…) with a "
            f"higher limit, or rerun the same call with a higher {key}.",
            results=results, batch=batch, spent=spent, budget=limit,
        )

    def estimate(self, calls: Sequence[PreparedCall], hits: dict[str, Response]) -> Estimate:
        """What sending ``calls`` would cost and take; ``hits`` are the answers the store already has."""
        pending = [call for call in calls if call.fingerprint not in hits]
        seen = [hit.usage.completion_tokens for hit in hits.values()]
        store = self.runner.store
        if not seen and store is not None and calls:
            seen = store.completion_tokens(calls[0].spec.model)
        guess = OutputGuess(seen, calls[0].spec.max_tokens if calls else None)
        prompt_tokens = [count_message_tokens(call.spec.messages, self.price_model) for call in pending]
        return build_estimate(self.price_model, prompt_tokens, len(calls) - len(pending), guess, self.rates,
                              tokenizer_for(self.price_model), self.runner.pool.status_rows())
