"""Price lookup: longest prefix, provider prefixes and date suffixes, unknown models."""

from __future__ import annotations

import pytest

from nbllm._pricing import estimate_cost, price_per_million


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", (0.15, 0.60)),
        ("openai:gpt-4o-mini-2024-07-18", (0.15, 0.60)),
        ("gpt-4o", (2.50, 10.0)),
        ("gpt-4o-2024-08-06", (2.50, 10.0)),
        ("GPT-4o", (2.50, 10.0)),
        ("gpt-4.1", (2.0, 8.0)),
        ("gpt-4.1-mini", (0.40, 1.60)),
        ("gpt-4.1-nano-2025-04-14", (0.10, 0.40)),
        ("o4-mini", (1.10, 4.40)),
        ("gpt-3.5-turbo-0125", (0.50, 1.50)),
        ("anthropic:claude-3-5-haiku-20241022", (0.80, 4.0)),
        ("claude-3-5-sonnet-latest", (3.0, 15.0)),
        ("claude-3-5-sonnet@20240620", (3.0, 15.0)),
        ("claude-3-7-sonnet-20250219", (3.0, 15.0)),
        ("claude-sonnet-4-20250514", (3.0, 15.0)),
        ("claude-opus-4-20250514", (15.0, 75.0)),
        ("claude-opus-4-1", (15.0, 75.0)),
        ("claude-opus-4-5", (5.0, 25.0)),
        ("claude-haiku-4-5", (1.0, 5.0)),
        ("deepseek:deepseek-chat", (0.27, 1.10)),
        ("openrouter:openai/gpt-4o-mini", (0.15, 0.60)),
        # unknown, or merely sharing characters with a known name
        ("llama-3-70b", None),
        ("gpt-4.10", None),
        ("gpt-4omni", None),
        ("ft:gpt-4o-mini:acme::abc123", None),
        ("", None),
    ],
)
def test_price_per_million(model: str, expected: tuple[float, float] | None) -> None:
    assert price_per_million(model) == expected


def test_estimate_cost() -> None:
    assert estimate_cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert estimate_cost("claude-sonnet-4", 1_000, 500) == pytest.approx(0.0105)
    assert estimate_cost("gpt-4o", 0, 0) == 0.0
    assert estimate_cost("my-local-model", 10, 10) is None
