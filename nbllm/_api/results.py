"""``Results``: what an awaited batch returns — the answers in input order, plus a table and a summary.

    rows = await llm.amap(prompts, schema=Result)
    rows[0].parsed          # still a list: a Response (or a Failure) per prompt
    rows.to_dataframe()     # one row per prompt: the schema's fields, ok, error, attempts, tokens, latency, cost, key
    rows.summary()          # valid first time / repaired / failed, requests, tokens, cost

Without a schema the table has a ``text`` column instead of the fields. Tokens and cost in the summary
count what this run spent (answers read from the store cost nothing); the table's per-row tokens and
cost are the item's own, with ``cached`` saying which were read from the store. A schema field that
shares a name with a bookkeeping column keeps its name; the bookkeeping column becomes ``nbllm_NAME``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigurationError
from .._format import format_cost, format_count, format_tokens
from .._pricing import cost
from .._structured import Schema
from .._types import Failure, Response, Usage

__all__ = ["BatchSummary", "Results", "row_values", "summarize"]

BOOKKEEPING = ("ok", "error", "attempts", "tokens", "latency", "cost", "key", "cached")


@dataclass(frozen=True)
class BatchSummary:
    """How a batch went: items valid at the first answer, repaired by re-asks, failed; what it cost."""

    items: int
    valid_first: int
    repaired: int
    failed: int
    cached: int
    requests: int
    extra_requests: int
    tokens: int
    cost: float | None

    def __str__(self) -> str:
        parts = [f"{format_count(self.items)} items", f"✓{format_count(self.valid_first)} valid first time",
                 f"✎{format_count(self.repaired)} repaired", f"✗{format_count(self.failed)} failed",
                 f"⟲{format_count(self.cached)} from the store",
                 f"{format_count(self.requests)} requests ({format_count(self.extra_requests)} extra)",
                 f"{format_tokens(self.tokens)} tokens"]
        if self.cost is not None:
            parts.append(format_cost(self.cost))
        return " · ".join(parts)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


class Results(list):
    """The list of a batch's results (a ``Response`` or ``Failure`` per prompt) with ``to_dataframe()``
    and ``summary()``. ``schema``: the batch's ``Schema`` (None without one); ``model``: for costs."""

    def __init__(self, items: Iterable[Any] = (), *, schema: Schema | None = None, model: str = "") -> None:
        super().__init__(items)
        self.schema, self.model = schema, model

    def to_dataframe(self) -> Any:
        """One row per prompt (pandas): the schema's fields (or ``text``) and the bookkeeping columns."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigurationError("to_dataframe() needs pandas: pip install 'nbllm[pandas]'") from None
        fields = self.schema.fields if self.schema is not None else ("text",)
        columns = [*fields, *(f"nbllm_{name}" if name in fields else name for name in BOOKKEEPING)]
        rows = [row_values(result, self.schema, self.model) for result in self]
        return pd.DataFrame(rows, columns=columns)

    def summary(self) -> BatchSummary:
        """Valid first time / repaired / failed, requests (and how many were re-asks), tokens, cost."""
        return summarize(self, self.model)


def row_values(result: Response | Failure | None, schema: Schema | None, model: str) -> list[Any]:
    """One table row: the fields (None where nothing was parsed) or the text, then ``BOOKKEEPING``."""
    fields = schema.fields if schema is not None else ("text",)
    if isinstance(result, Response):
        values = (schema.row(result.parsed) if schema is not None and result.parsed is not None
                  else {"text": result.text} if schema is None else {})
        book = (True, None, len(result.attempts) or 1, result.usage.total_tokens, result.latency,
                _cost(model or result.model, result.usage), result.key_alias, result.cached)
    elif isinstance(result, Failure):
        values = {} if schema is not None else {"text": result.text or None}
        last_key = result.attempts[-1].key_alias if result.attempts else getattr(result.error, "key_alias", None)
        book = (False, f"{type(result.error).__name__}: {result.error}", len(result.attempts),
                result.usage.total_tokens, sum(a.latency for a in result.attempts), _cost(model, result.usage),
                last_key, False)
    else:
        values, book = {}, (False, "not finished (the batch was interrupted)", 0, 0, 0.0, None, None, False)
    return [*(values.get(name) for name in fields), *book]


def summarize(results: Iterable[Any], model: str = "") -> BatchSummary:
    """The counts of ``BatchSummary`` over a batch's results (None: an item that never finished)."""
    items = valid_first = repaired = failed = cached = requests = extra = 0
    spent = Usage()
    for result in results:
        items += 1
        judged = getattr(result, "attempts", None) or []
        sent = sum(not a.cached for a in judged) if judged else int(isinstance(result, Response) and not result.cached)
        requests += sent
        extra += max(len(judged) - 1, 0)
        if isinstance(result, Response):
            repaired += len(judged) > 1
            valid_first += len(judged) <= 1
            cached += result.cached
            spent += result.usage if not result.cached else Usage()
        else:
            failed += 1
            spent += result.usage if isinstance(result, Failure) else Usage()
    return BatchSummary(items, valid_first, repaired, failed, cached, requests, extra, spent.total_tokens,
                        _cost(model, spent))


def _cost(model: str, usage: Usage) -> float | None:
    return cost(model, usage) if model else None
