"""Models side by side: several answers stream at once into ONE output, one column per model.

```python
answers = await compare(runners, "Explain recursion in one paragraph.")   # {model: Response}
```

Each column shows its model, the answer (escaped text while it streams, rendered Markdown at the end)
and its numbers: time to first token, tokens, tokens/s, cost. ``%%llm -m a,b`` and the PromptPanel's
"Compare" toggle use it. All columns are one display output, updated by one ``LiveRenderer`` used as a
throttle: whatever arrives in any column, the output is re-sent at most ``refresh_hz`` times a second,
and it counts as one live renderer in the process-wide update budget (docs/ARCHITECTURE.md, "Live
rendering"), so two models cost the iopub messages of one answer.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._call import CallRunner
from .._exceptions import NbllmError
from .._format import format_cost
from .._pricing import cost
from .._types import Message, Response
from .html import GREEN, RED, markdown_to_html
from .render import Bundle, LiveRenderer, default_sink, note_for

__all__ = ["Column", "CompareView", "compare", "compare_html"]

_STREAMING = '<div style="white-space:pre-wrap;overflow-wrap:anywhere">{}</div>'
_STATS = "font-size:12px;color:var(--jp-ui-font-color2,#616161);font-family:var(--jp-code-font-family,monospace)"


@dataclass
class Column:
    """One model's answer as it arrives: its text, its first-token time, then its Response or error."""

    model: str
    started: float
    chunks: list[str] = field(default_factory=list)
    ttft: float | None = None
    response: Response | None = None
    error: BaseException | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks) if self.response is None else self.response.text

    def stats(self, now: float) -> str:
        """``first token 0.25 s · 88 tokens · 58.1 tokens/s · $0.00012``, live or final."""
        response = self.response
        parts = [] if self.ttft is None else [f"first token {self.ttft:.2f} s"]
        if response is not None:
            parts.append(f"{response.usage.completion_tokens} tokens")
            if response.tokens_per_second is not None:
                parts.append(f"{response.tokens_per_second:.1f} tokens/s")
            price = cost(self.model, response.usage)
            parts.append(format_cost(price) if price is not None else "cost unknown")
            if response.cached:
                parts.append("from the store")
        else:
            parts.append(f"≈{len(self.chunks)} tokens")
            if self.ttft is not None and now - self.started > self.ttft and len(self.chunks) > 1:
                parts.append(f"{len(self.chunks) / (now - self.started - self.ttft):.1f} tokens/s")
            if self.ttft is None and self.error is None:
                parts.append("waiting for the first token…")
        return " · ".join(parts)


def compare_html(columns: Sequence[Column], final: bool, now: float, note: str | None = None) -> str:
    """The columns as one HTML block: streaming text, or rendered Markdown once ``final``."""
    cells = []
    for column in columns:
        if column.error is not None:
            body = (f'<div style="color:{RED};white-space:pre-wrap"><b>{html.escape(type(column.error).__name__)}</b>: '
                    f"{html.escape(str(column.error))}</div>")
        elif final or column.response is not None:
            body = f'<div class="jp-RenderedHTMLCommon">{markdown_to_html(column.text)}</div>'
        else:
            body = _STREAMING.format(html.escape(column.text or "…"))
        colour = RED if column.error is not None else (GREEN if column.response is not None else "#9e9e9e")
        cells.append(
            f'<div class="nbllm-compare-column" style="flex:1 1 0;min-width:0;border-left:3px solid {colour};'
            f'padding:0 8px"><div class="nbllm-compare-model" style="font-weight:bold;{_STATS}">'
            f'{html.escape(column.model)}</div><div class="nbllm-compare-answer">{body}</div>'
            f'<div class="nbllm-compare-stats" style="{_STATS}">{html.escape(column.stats(now))}</div></div>'
        )
    footer = f'<div style="{_STATS}">[{html.escape(note)}]</div>' if note else ""
    state = " nbllm-compare-final" if final else ""  # the browser test waits for it
    return (f'<div class="nbllm-compare{state}" style="display:flex;gap:12px;align-items:flex-start">'
            f'{"".join(cells)}</div>{footer}')


def _plain(columns: Sequence[Column]) -> str:
    return "\n\n".join(f"── {c.model} ──\n{c.text if c.error is None else f'[{type(c.error).__name__}: {c.error}]'}"
                       for c in columns)


class CompareView:
    """The columns of one comparison and their single live output (``sink``: default a display)."""

    def __init__(self, models: Sequence[str], *, refresh_hz: float = 10.0,
                 sink: Callable[[Bundle, Bundle], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        started = clock()
        self.columns = {model: Column(model, started) for model in models}
        self._clock = clock
        self._sink = sink if sink is not None else default_sink()
        self.note: str | None = None  # how the comparison ended, shown under the columns ("interrupted")
        # the throttle: its text only marks that something changed; its bundles are replaced by ours
        self.throttle = LiveRenderer("markdown", refresh_hz=refresh_hz, sink=self._send, clock=clock)

    def append(self, model: str, chunk: str) -> None:
        column = self.columns[model]
        if column.ttft is None and chunk:
            column.ttft = self._clock() - column.started
        column.chunks.append(chunk)
        self.throttle.append(chunk)

    def done(self, model: str, response: Response | None = None, error: BaseException | None = None) -> None:
        column = self.columns[model]
        column.response, column.error = response, error
        if response is not None and column.ttft is None:
            column.ttft = response.time_to_first_token
        self.throttle.append("\0")  # a change worth showing, even without new text

    def _send(self, data: Bundle, metadata: Bundle) -> None:
        final = self.throttle.finished  # the throttle's one final update: render the columns' Markdown
        columns = list(self.columns.values())
        note = self.note if final else None
        bundle = {"text/html": compare_html(columns, final, self._clock(), note), "text/plain": _plain(columns)}
        if self._sink is not None:
            self._sink(bundle, {})
        elif final:
            print(_plain(columns))

    async def __aenter__(self) -> CompareView:
        await self.throttle.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.note = note_for(exc)
        await self.throttle.__aexit__(exc_type, exc, tb)


async def compare(runners: Mapping[str, CallRunner], prompt: str | list[Message], *, stream: bool = True,
                  overrides: Mapping[str, Any] | None = None, refresh_hz: float = 10.0,
                  sink: Callable[[Bundle, Bundle], None] | None = None,
                  on_interrupt: Callable[[dict[str, Response]], None] | None = None) -> dict[str, Response | None]:
    """Ask every runner ``prompt`` at once and stream the answers side by side; {model: Response or None}.

    An nbllm error ends only its own column (shown in red, None in the result). On an interrupt
    ``on_interrupt`` gets every answer so far (``finish_reason="interrupted"``) before it is re-raised.
    """
    view = CompareView(list(runners), refresh_hz=refresh_hz, sink=sink)
    answers: dict[str, Response | None] = {}

    async def one(model: str, runner: CallRunner) -> None:
        try:
            if stream:
                response = await runner.astream_into(prompt, lambda chunk: view.append(model, chunk),
                                                     overrides=dict(overrides or {}))
            else:
                response = await runner.ainvoke(prompt, overrides=dict(overrides or {}))
            answers[model] = response
            view.done(model, response)
        except NbllmError as error:
            answers[model] = None
            view.done(model, error=error)

    try:
        async with view:
            await asyncio.gather(*(one(model, runner) for model, runner in runners.items()))
    except (asyncio.CancelledError, KeyboardInterrupt):
        if on_interrupt is not None:
            on_interrupt(_partial(view))
        raise
    return {model: answers.get(model) for model in runners}


def _partial(view: CompareView) -> dict[str, Response]:
    now = time.monotonic()
    return {model: column.response or Response(column.text, model=model, finish_reason="interrupted",
                                               latency=now - column.started, time_to_first_token=column.ttft)
            for model, column in view.columns.items()}

