"""What a batch would cost and take, before anything is sent: ``llm.estimate(prompts)``.

```python
est = llm.estimate(prompts, max_tokens=200)
est                  # 200 prompts (12 already in the store) · 9.8k prompt tokens · output 40–200 tokens each
                     # · $0.0061–$0.025 · ~0:24 at the keys' limits
est.cost_high        # USD if every answer ran to its worst case
```

Prompt tokens are counted (``nbllm._tokens``: tiktoken where its encoding is at hand, else a measured
approximation). Output tokens: typical from the answers seen for these prompts' model — this batch's
items already in the store first, else the model's recent answers in the store — and at worst
``max_tokens`` (else a margin over the longest seen). Prices from ``nbllm._pricing`` with their date;
time from the limits the keys told or taught the pool (unknown until they are known).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._format import format_cost, format_count, format_duration, format_tokens
from .._pricing import Rates, data_date
from .budget import OutputGuess

__all__ = ["Estimate", "build_estimate", "limits_time"]


@dataclass(frozen=True)
class Estimate:
    """The numbers of ``llm.estimate``; ``str()`` or the notebook display reads them as one line."""

    model: str
    items: int
    cached: int
    prompt_tokens: int
    output_typical: int | None
    output_worst: int
    output_worst_from: str  # "max_tokens", "answers seen" or "assumed"
    cost_low: float | None
    cost_high: float | None
    seconds: float | None
    tokenizer: str
    prices: str

    @property
    def to_send(self) -> int:
        return self.items - self.cached

    def lines(self) -> list[str]:
        cached = f" ({format_count(self.cached)} already in the store, free)" if self.cached else ""
        typical = "?" if self.output_typical is None else format_count(self.output_typical)
        cost = "unknown (no price for this model: nbllm.set_price)" if self.cost_high is None else (
            f"{format_cost(self.cost_low or 0.0)} – {format_cost(self.cost_high)}")
        time = ("unknown until the keys' limits are known (told, or learned from the first answers)"
                if self.seconds is None else f"~{format_duration(self.seconds)} at the keys' limits")
        return [
            f"{format_count(self.items)} prompts to {self.model}{cached}",
            f"prompt tokens: {format_tokens(self.prompt_tokens)} ({self.tokenizer})",
            f"output tokens per answer: typical {typical}, at most {format_count(self.output_worst)} "
            f"({self.output_worst_from})",
            f"cost: {cost} ({self.prices})",
            f"time: {time}",
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return f"<Estimate {self.lines()[0]}; {self.lines()[3]}>"

    def to_html(self) -> str:
        """The estimate as a small HTML block (what a notebook shows)."""
        rows = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines()[1:])
        return f"<div><b>Estimate: {html.escape(self.lines()[0])}</b><ul style='margin:2px 0'>{rows}</ul></div>"

    _repr_html_ = to_html


def build_estimate(model: str, prompt_tokens: Sequence[int], cached: int, guess: OutputGuess,
                   rates: Rates | None, tokenizer: str, key_rows: Sequence[Mapping[str, Any]]) -> Estimate:
    """The estimate for the prompts still to send (``prompt_tokens`` one count each) plus ``cached`` free ones."""
    worst = guess.worst
    worst_from = "max_tokens" if guess.max_tokens else ("answers seen" if guess.longest is not None else "assumed")
    low = high = None
    if rates is not None:
        typical = guess.typical or 0
        low = sum(rates.cost(p, typical) for p in prompt_tokens)
        high = sum(rates.cost(p, worst) for p in prompt_tokens)
    output_tokens = (guess.typical or worst) * len(prompt_tokens)
    seconds = limits_time(len(prompt_tokens), sum(prompt_tokens) + output_tokens, key_rows)
    source, date = data_date() if rates is not None and rates.source.startswith("genai") else (None, None)
    prices = (f"{source} data, newest price change {date}" if source else
              (rates.source if rates is not None else "no price"))
    return Estimate(model, len(prompt_tokens) + cached, cached, sum(prompt_tokens), guess.typical, worst,
                    worst_from, low, high, seconds, tokenizer, prices)


def limits_time(requests: int, tokens: int, key_rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Seconds the keys' per-minute limits need for ``requests`` and ``tokens``; None if a limit is unknown."""
    live = [row for row in key_rows if not str(row.get("state", "")).startswith("disabled")]
    if not requests:
        return 0.0
    if not live or any(row.get("rpm") is None for row in live):
        return None
    minutes = requests / sum(row["rpm"] for row in live)
    if all(row.get("tpm") is not None for row in live):
        minutes = max(minutes, tokens / max(sum(row["tpm"] for row in live), 1))
    return minutes * 60.0
