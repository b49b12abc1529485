"""Known list prices of common models, for cost estimates in progress lines and summaries.

```python
>>> price_per_million("openai:gpt-4o-mini-2024-07-18")
(0.15, 0.6)
>>> estimate_cost("claude-sonnet-4-20250514", 1_000, 500)
0.0105
```

Prices are USD per million tokens (input, output), as published by the providers; they are an
estimate only (no cached-input or batch discounts). Unknown models return ``None`` rather than a guess.
"""

from __future__ import annotations

__all__ = ["estimate_cost", "price_per_million"]

# model-name prefix -> (input, output) USD per 1M tokens; matched by longest prefix
_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    # Opus 4.5 dropped to 5/25; without this row the "claude-opus-4" prefix would claim it
    "claude-opus-4-5": (5.00, 25.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "deepseek-chat": (0.27, 1.10),
}
# longest first, so "gpt-4o-mini" wins over "gpt-4o"
_PREFIXES = sorted(_PRICES, key=len, reverse=True)
# what may follow a known prefix: a date or version suffix ("-20241022", "@20240620"), nothing else,
# so "gpt-4.1" does not claim a hypothetical "gpt-4.10" and "ft:gpt-4o-mini:org::id" stays unknown
_BOUNDARY = ("-", "@")


def _normalize(model: str) -> str:
    """``"openai:GPT-4o"`` → ``"gpt-4o"``; ``"openai/gpt-4o"`` (router style) → ``"gpt-4o"``."""
    name = model.strip().lower()
    head, sep, tail = name.partition(":")
    if sep and head.isidentifier():  # "provider:model"; a fine-tune id "ft:..." is left unknown below
        name = tail if head != "ft" else name
    return name.rsplit("/", 1)[-1]


def price_per_million(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for ``model``, or ``None`` if it is not a known model."""
    name = _normalize(model)
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if not rest or rest.startswith(_BOUNDARY):
                return _PRICES[prefix]
    return None


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Estimated USD cost of the given token counts, or ``None`` for an unknown model."""
    price = price_per_million(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
