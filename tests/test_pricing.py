"""Prices: genai-prices' bundled data read offline, nbllm's model strings, the batch discount, overrides.

The rates nbllm derives from genai-prices (a floating-point copy of each model's price, so a cost is
plain arithmetic per item) must give the same cost as genai-prices' own ``calc_price``; hypothesis
checks that for usages on both sides of the long-context tiers.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbllm import Usage
from nbllm._pricing import Rates, Tier, cost, data_date, prices, rates, set_price


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", (0.15, 0.075, 0.60)),
        ("openai:gpt-4o-mini-2024-07-18", (0.15, 0.075, 0.60)),
        ("GPT-4o", (2.50, 1.25, 10.0)),
        ("anthropic:claude-haiku-4-5", (1.0, 0.1, 5.0)),
        ("claude-3-5-haiku-20241022", (0.80, 0.08, 4.0)),
        ("openrouter:openai/gpt-4o-mini", (0.15, 0.075, 0.60)),
    ],
)
def test_list_rates_come_from_the_bundled_data_with_cached_input(model, expected):
    found = rates(model)
    assert found is not None and found.source.startswith("genai-prices")
    assert (found.input, found.cached_input, found.output) == pytest.approx(expected)


@pytest.mark.parametrize("model", ["ollama:llama3", "vllm:gpt-4o-mini", "my-local-model", "", "ft:gpt-4o-mini:acme::x"])
def test_unknown_and_local_models_have_no_price(model):
    assert rates(model) is None
    assert cost(model, Usage(10, 10)) is None


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o", "anthropic:claude-haiku-4-5", "claude-sonnet-4-5"])
def test_batch_rates_are_half_the_list_price_at_openai_and_anthropic(model):
    listed, batched = rates(model), rates(model, batch=True)
    assert batched.input == pytest.approx(listed.input / 2)
    assert batched.output == pytest.approx(listed.output / 2)
    usage = Usage(10_000, 2_000)
    assert cost(model, usage, batch=True) == pytest.approx(cost(model, usage) / 2)


def test_a_provider_without_a_batch_api_pays_its_list_price():
    usage = Usage(1000, 1000)
    assert cost("deepseek:deepseek-chat", usage, batch=True) == pytest.approx(cost("deepseek:deepseek-chat", usage))


@pytest.mark.parametrize(
    ("rates_", "usage", "cached", "expected"),
    [
        (Rates("m", 1.0, 2.0), (1_000_000, 0), 0, 1.0),
        (Rates("m", 1.0, 2.0), (0, 500_000), 0, 1.0),
        (Rates("m", 1.0, 2.0, cached_input=0.1), (1_000_000, 0), 400_000, 0.6 + 0.04),
        (Rates("m", 1.0, 2.0), (1_000_000, 0), 400_000, 1.0),  # no cached rate: all input at list
        (Rates("m", 1.0, 2.0, cached_input=0.1), (100, 0), 10_000, 0.1 * 100 / 1e6),  # cached ≤ prompt
        # a cliff tier: above 200k prompt tokens the whole request pays the tier's rates
        (Rates("m", 3.0, 15.0, tiers=(Tier(200_000, 6.0, 22.5, None),)), (200_000, 1000), 0, 0.6 + 0.015),
        (Rates("m", 3.0, 15.0, tiers=(Tier(200_000, 6.0, 22.5, None),)), (200_001, 1000), 0,
         200_001 * 6 / 1e6 + 1000 * 22.5 / 1e6),
    ],
)
def test_rates_cost_table(rates_, usage, cached, expected):
    assert rates_.cost(*usage, cached_tokens=cached) == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(prompt=st.integers(0, 400_000), completion=st.integers(0, 50_000),
       model=st.sampled_from(["gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-pro"]),
       batch=st.booleans())
def test_cost_matches_genai_prices_own_calculation(prompt, completion, model, batch):
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price

    context = {"processing": "batch"} if batch else None
    expected = calc_price(GUsage(input_tokens=prompt, output_tokens=completion), model, price_context=context)
    assert cost(model, Usage(prompt, completion), batch=batch) == pytest.approx(float(expected.total_price))


def test_set_price_overrides_and_is_removed_again():
    try:
        set_price("openai:gpt-4o-mini", input=1.0, output=2.0)
        assert cost("gpt-4o-mini", Usage(1_000_000, 1_000_000)) == pytest.approx(3.0)
        assert cost("gpt-4o-mini-2024-07-18", Usage(1, 1)) != pytest.approx(3e-6)  # another name: the data
        set_price("ollama:llama3", 0, 0)
        assert cost("ollama:llama3", Usage(5000, 5000)) == 0.0
        set_price("my-model", 0.5, 1.0, batch_input=0.25, batch_output=0.5)
        assert cost("my-model", Usage(1_000_000, 0), batch=True) == pytest.approx(0.25)
        with pytest.raises(ValueError, match="output"):
            set_price("my-model", 0.5)
    finally:
        for model in ("gpt-4o-mini", "ollama:llama3", "my-model"):
            set_price(model, None)
    assert rates("gpt-4o-mini").source.startswith("genai-prices")
    assert rates("my-model") is None


def test_prices_table_shows_the_data_and_its_date():
    source, date = data_date()
    assert source.startswith("genai-prices ") and isinstance(date, dt.date)
    table = prices("gpt-4o-mini", "ollama:llama3")
    assert [row["model"] for row in table.rows] == ["gpt-4o-mini", "ollama:llama3"]
    assert table.rows[0]["batch input"] == pytest.approx(0.075) and table.rows[1]["source"] == "unknown"
    assert date.isoformat() in repr(table) and date.isoformat() in table._repr_html_()
    assert "gpt-4o-mini" in repr(prices())  # the default table lists common models


def test_prices_are_read_offline_and_import_nbllm_does_not_load_them():
    code = ("import socket, sys\n"
            "def no_network(*a, **k): raise AssertionError('network used')\n"
            "socket.socket.connect = no_network\n"
            "import nbllm\n"
            "assert 'genai_prices' not in sys.modules\n"
            "from nbllm._pricing import cost\n"
            "print(cost('gpt-4o-mini', nbllm.Usage(1000, 500)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out) == pytest.approx(0.00045)
