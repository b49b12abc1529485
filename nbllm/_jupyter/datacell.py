"""``%%llm`` cells that work on data: ``--over`` a table, ``-m a,b`` side by side, ``--estimate``.

```
%%llm --over reviews --to sentiment --budget 0.05
Classify the sentiment of this review as positive, negative or neutral: {text}
```

``--over NAME`` runs the cell's template once per row of ``NAME`` (a DataFrame, a list of dicts or of
strings) as one batch (``nbllm._api.Fill``: key pool, progress bar, store, a rerun sends only missing
rows) and writes the answers into column ``--to`` (``to[model]`` per model with ``-m a,b``); the table
is the cell's result, and ``-o NAME`` binds it too. A list becomes a new DataFrame. ``--estimate``
shows what the cell would cost and take and sends nothing. A budget pause is a note, not an error:
the finished rows are in the table, and rerunning the cell with a higher budget continues.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._api import Batch, Estimate, Fill, fill_prompts
from .._call import CallRunner
from .._display import ORANGE, compare
from .._exceptions import BatchPaused
from .._prompts import interpolate, is_dataframe, render_value, write_columns
from .._tokens import count_tokens, tokenizer_for
from .cellrunner import GenerationInterrupted

__all__ = ["ContextPreview", "DataRequest", "column_for", "compare_cell", "context_preview", "estimate_cell",
           "over_cell"]


@dataclass
class DataRequest:
    """A data cell after option parsing: the template, the table's name, where answers go, limits."""

    template: str
    over: str | None = None
    to: str = "answer"
    output: str | None = None
    budget: float | None = None
    budget_tokens: int | None = None
    context_tokens: int = 3000
    stream: bool = True
    refresh_hz: float = 10.0
    overrides: dict[str, Any] = field(default_factory=dict)


def column_for(to: str, model: str, several: bool) -> str:
    """The answer column of ``model``: ``to``, or ``to[model]`` when several models fill one table."""
    return f"{to}[{model}]" if several else to


def _fills(namespace: dict[str, Any], runners: Mapping[str, CallRunner], request: DataRequest) -> tuple[Any, list[Fill]]:
    """(the table, one Fill per model), with every prompt filled now: mistakes surface before any await."""
    data = namespace[request.over]  # type: ignore[index]
    rows, prompts = fill_prompts(data, request.template, namespace, request.context_tokens)
    table = data if is_dataframe(data) else write_columns(data, rows, {})  # a list becomes a new DataFrame
    several = len(runners) > 1
    fills = []
    for model, runner in runners.items():
        column = column_for(request.to, model, several)
        if several and column not in table.columns:
            table[column] = None  # the models' columns in the order given, whichever finishes first
        batch = Batch(runner, prompts, cache=True, progress=runner.settings.progress,
                      concurrency=runner.settings.concurrency, streaming=runner.settings.streaming,
                      overrides=request.overrides, budget=request.budget, budget_tokens=request.budget_tokens,
                      desc=column)
        fills.append(Fill(batch, table, rows, column))
    return table, fills


def estimate_cell(namespace: dict[str, Any], runners: Mapping[str, CallRunner], request: DataRequest,
                  prompt: str | None = None) -> Estimate | list[Estimate]:
    """What the cell would cost and take, per model; nothing is sent."""
    if request.over is not None:
        estimates = [fill.estimate() for fill in _fills(namespace, runners, request)[1]]
    else:
        estimates = [Batch(runner, [prompt or ""], cache=True, progress="none", concurrency=1,
                           overrides=request.overrides).estimate() for runner in runners.values()]
    return estimates[0] if len(estimates) == 1 else EstimateList(estimates)


class EstimateList(list):  # type: ignore[type-arg]
    """Several models' estimates, shown one after the other."""

    def __repr__(self) -> str:
        return "\n\n".join(str(estimate) for estimate in self)

    def _repr_html_(self) -> str:
        return "".join(estimate.to_html() for estimate in self)


def over_cell(namespace: dict[str, Any], runners: Mapping[str, CallRunner], request: DataRequest) -> Awaitable[Any]:
    """The ``--over`` cell to await: every model's fill at once, the table as the result."""
    table, fills = _fills(namespace, runners, request)

    async def run() -> Any:
        outcomes = await _gather(fills)
        for fill, outcome in zip(fills, outcomes):
            if isinstance(outcome, BatchPaused):
                _show_note(_paused_note(fill, outcome))
        if request.output:
            namespace[request.output] = table
        return table

    return run()


async def _gather(fills: list[Fill]) -> list[Any]:
    """Run the fills together; an interrupt keeps every finished row in the table and says so."""
    tasks = [asyncio.ensure_future(fill) for fill in fills]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise GenerationInterrupted("the batch was stopped; the finished rows are in the table and the store, "
                                    "and rerunning the cell sends only the missing ones") from None
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, BatchPaused):
            raise outcome
    return outcomes


def compare_cell(namespace: dict[str, Any], runners: Mapping[str, CallRunner], prompt: Any,
                 request: DataRequest) -> Awaitable[Any]:
    """Every model's answer streamed side by side; ``-o NAME`` holds ``{model: Response}``."""

    def bind(answers: Mapping[str, Any]) -> None:
        if request.output:
            namespace[request.output] = dict(answers)

    async def run() -> None:
        bind(await compare(runners, prompt, stream=request.stream, overrides=request.overrides,
                           refresh_hz=request.refresh_hz, on_interrupt=bind))

    return run()


def _paused_note(fill: Fill, paused: BatchPaused) -> str:
    done = sum(result is not None for result in paused.results)
    dollars = fill.batch.spending.guard.budget is not None
    spent, limit = (f"${paused.spent:.4g}", f"${paused.budget:.4g}") if dollars else (
        f"{paused.spent:.0f} tokens", f"{paused.budget:.0f} tokens")
    option = "--budget" if dollars else "--budget-tokens"
    return (f"{fill.to}: paused before exceeding the budget of {limit}: {done}/{len(paused.results)} rows done, "
            f"{spent} spent. The finished rows are in the table; rerun this cell with a higher {option} to "
            "continue (they come from the store, free).")


def _show_note(text: str) -> None:
    from IPython.display import display

    styled = (f'<div style="color:{ORANGE};border-left:3px solid {ORANGE};padding:2px 8px;white-space:pre-wrap">'
              f"{html.escape(text)}</div>")
    display({"text/html": styled, "text/plain": text}, raw=True)


# ---- %llm context {expr} -------------------------------------------------------------------------------
class ContextPreview(str):
    """``%llm context``'s result: the text itself (so ``repr`` is exactly what is sent), with its size."""

    def __new__(cls, text: str, tokens: int, budget: int, tokenizer: str) -> ContextPreview:
        preview = super().__new__(cls, text)
        preview.tokens, preview.budget, preview.tokenizer = tokens, budget, tokenizer
        return preview

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        footer = f"{self.tokens} tokens ({self.tokenizer}) of the {self.budget}-token budget per variable"
        return (f'<pre style="white-space:pre-wrap;margin:0">{html.escape(str(self))}</pre>'
                f'<div style="font-size:12px;color:var(--jp-ui-font-color2,#616161)">{html.escape(footer)}</div>')


def context_preview(expression: str, namespace: dict[str, Any], tokens: int, model: str | None) -> ContextPreview:
    """What ``{expression}`` becomes in a ``%%llm`` prompt (``expression`` with or without braces)."""
    template = expression if "{" in expression else "{" + expression + "}"
    text = interpolate(template, namespace, render=lambda value: render_value(value, tokens))
    return ContextPreview(text, count_tokens(text, model), tokens, tokenizer_for(model))
