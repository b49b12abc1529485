"""One template over the rows of a table, answers into a column: ``await llm.afill(df, template, to=…)``.

```python
df = await llm.afill(reviews, "Classify the sentiment of this review: {text}", to="sentiment")
df[["text", "sentiment"]]          # one answer per row, in row order; failed rows empty, their error in
                                   # sentiment_error; parsed fields (structured outputs) in sentiment.<field>
fill = llm.afill(df, template, to="sentiment", budget=0.05)   # a spend guard, as for amap
await fill.resume(budget=0.10)     # after a BatchPaused: continue, then the column is complete
```

It is a batch (``Batch``): the key pool, the progress bar, the store, and a rerun after an interrupt
sends only the rows still missing. ``%%llm --over NAME --to COLUMN`` is built on it. The columns are
written also when the batch stops early (paused, interrupted), so the rows that finished are visible.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, NoReturn

from .._exceptions import BatchPaused, ConfigurationError
from .._prompts import (
    DEFAULT_CONTEXT_TOKENS,
    answer_columns,
    fill_row,
    table_rows,
    write_columns,
)
from .batch import Batch
from .estimate import Estimate

__all__ = ["Fill", "fill_prompts"]


def fill_prompts(data: Any, template: str, namespace: Mapping[str, Any] | None = None,
                 context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, one prompt per row): ``{column}`` from each row, other ``{names}`` from ``namespace``."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigurationError("The template is empty: pass the prompt with {column} placeholders.")
    rows = table_rows(data)
    return rows, [fill_row(template, row, namespace, context_tokens) for row in rows]


class Fill:
    """A running fill; ``await`` it for the table (the DataFrame given, or a new one)."""

    def __init__(self, batch: Batch, data: Any, rows: list[dict[str, Any]], to: str) -> None:
        if not to or not isinstance(to, str):
            raise ConfigurationError("to= needs the name of the column to write the answers into.")
        self.batch, self.data, self.rows, self.to = batch, data, rows, to
        self.table: Any = None  # the table written, once the batch ran (also after a pause)

    def __repr__(self) -> str:
        return f"<nbllm Fill {self.to!r} over {len(self.rows)} rows: {self.batch.progress.format_line()}>"

    def __await__(self) -> Generator[Any, None, Any]:
        return self._run().__await__()

    async def _run(self) -> Any:
        try:
            await self.batch
        except BaseException as error:
            self._raise_stopped(error)
        return self.write()

    def run_blocking(self) -> Any:
        """Run the fill while this thread blocks (``LLM.fill``); the same table as awaiting it."""
        try:
            self.batch.run_blocking()
        except BaseException as error:
            self._raise_stopped(error)
        return self.write()

    def _raise_stopped(self, error: BaseException) -> NoReturn:
        """The batch stopped early (paused, no key left, interrupted): write what finished, then re-raise."""
        self.write()
        if isinstance(error, BatchPaused):
            # the same message: llm.last_batch is this fill, whose resume() returns the table
            raise BatchPaused(str(error), results=error.results, batch=self, spent=error.spent,
                              budget=error.budget) from None
        raise error

    def write(self) -> Any:
        """Write the answers so far into the table (rows not run yet stay empty) and return it."""
        self.table = write_columns(self.table if self.table is not None else self.data, self.rows,
                                   answer_columns(self.batch.results, self.to))
        return self.table

    def resume(self, budget: float | None = None, budget_tokens: int | None = None) -> Fill:
        """Continue after a pause with a higher limit (the whole fill's); await it for the table."""
        self.batch.resume(budget, budget_tokens)
        return self

    def estimate(self) -> Estimate:
        """What this fill would cost and take (nothing is sent)."""
        return self.batch.estimate()

