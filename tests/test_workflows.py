"""Data workflows over real sockets: a template over a table (afill), estimates, and the spend guard.

The simulator's own counters (requests, prompt and completion tokens it billed) are the ground truth:
a budget holds if what the simulator billed, priced at the model's rates, stays within it.
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbllm
from nbllm import BatchPaused, ConfigurationError, KeyPool, Usage
from nbllm._api import OutputGuess, SpendGuard
from nbllm._pricing import cost, rates
from nbllm._sim import KeyProfile, SimConfig, Simulator

KEY = "sk-test-workflows-0000000001"


@pytest.fixture(autouse=True)
def _approximate(monkeypatch):
    monkeypatch.setenv("NBLLM_TOKENIZER", "approx")


@pytest.fixture
def sim():
    # some latency, so a batch has requests in flight when the guard decides
    with Simulator(SimConfig(keys={KEY: KeyProfile(alias="wf")}, ttft=0.02, tokens_per_second=2000,
                             arithmetic_accuracy=(1.0, 0.0, 0.0))) as server:
        yield server


def make_llm(sim, **kw) -> nbllm.LLM:
    return nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", api_key=KEY, **kw)


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"Review {i}: {'loved it' if i % 3 else 'broke in a week'}" for i in range(n)],
                         "stars": [1 + i % 5 for i in range(n)]})


def billed(sim) -> float:
    total = sim.stats()["total"]
    return cost("gpt-4o-mini", Usage(total["prompt_tokens"], total["completion_tokens"]))


# ---- afill ---------------------------------------------------------------------------------------------
async def test_afill_writes_every_row_in_order_and_a_rerun_sends_nothing(sim):
    llm = make_llm(sim)
    df = reviews(40)
    out = await llm.afill(df, "What is {stars} + {stars}? Answer as JSON {{\"result\": ?}}", to="answer",
                          progress="none")
    assert out is df and list(df.columns) == ["text", "stars", "answer"]
    for stars, answer in zip(df["stars"], df["answer"]):
        assert f'"result": {2 * stars}' in answer
    sent = sim.stats()["total"]["requests"]
    await llm.afill(df, "What is {stars} + {stars}? Answer as JSON {{\"result\": ?}}", to="answer", progress="none")
    assert sim.stats()["total"]["requests"] == sent  # every row came from the store


async def test_afill_of_strings_and_dicts_returns_a_new_frame_with_errors_in_their_column(sim):
    llm = make_llm(sim, max_retries=0)
    out = await llm.afill(["Hello", "Say hi [[sim:500]]"], "{text}", to="reply", progress="none")
    assert list(out.columns) == ["text", "reply", "reply_error"]
    assert out["reply"][0] and pd.isna(out["reply"][1]) and "ServerError" in out["reply_error"][1]
    out = await llm.afill([{"q": "2 + 2"}], "What is {q}?", to="a", namespace={"unused": 1}, progress="none")
    assert "4" in out["a"][0]
    assert llm.fill([{"q": "3 + 3"}], "What is {q}?", to="a", progress="none")["a"][0].count("6")


async def test_an_interrupted_fill_keeps_its_rows_and_a_rerun_sends_only_the_missing(sim):
    llm = make_llm(sim, concurrency=4)
    df = reviews(60)
    task = asyncio.ensure_future(llm.afill(df, "Write a few paragraphs about {text}", to="essay", progress="none"))
    # what the client finished (the server's count runs ahead by the answers still on the wire)
    while llm.last_batch is None or sum(r is not None for r in llm.last_batch.batch.results) < 10:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    kept = int(df["essay"].notna().sum())
    assert 10 <= kept < 60
    sent = sim.stats()["total"]["requests"]
    await llm.afill(df, "Write a few paragraphs about {text}", to="essay", progress="none")
    assert df["essay"].notna().all()
    assert sim.stats()["total"]["requests"] - sent <= 60 - kept + 4  # only the missing (+ the ones cut mid-flight)


def test_a_template_without_text_is_refused(sim):
    with pytest.raises(ConfigurationError, match="template is empty"):
        make_llm(sim).afill(reviews(2), "  ", to="x")


# ---- the spend guard -----------------------------------------------------------------------------------
async def test_a_budget_pauses_before_it_is_exceeded_and_resume_completes(sim):
    llm = make_llm(sim, concurrency=16, max_tokens=60)
    prompts = [f"Write a few paragraphs about rivers, take {i}" for i in range(80)]
    budget = 0.0012  # about half of what the 80 answers cost
    batch = llm.amap(prompts, budget=budget, progress="none")
    with pytest.raises(BatchPaused) as paused:
        await batch
    done = sum(r is not None for r in paused.value.results)
    assert 0 < done < 80 and paused.value.batch is batch and llm.last_batch is batch
    assert billed(sim) <= budget  # what the server billed, in-flight requests included
    assert paused.value.spent == pytest.approx(billed(sim)) and "resume(budget=" in str(paused.value)
    sent = sim.stats()["total"]["requests"]
    results = await batch.resume(budget=1.0)
    assert all(r.ok for r in results) and sim.stats()["total"]["requests"] - sent == 80 - done
    assert "/ $1.00" in batch.progress.format_line()


async def test_rerunning_with_a_higher_budget_continues_from_the_store(sim):
    llm = make_llm(sim, concurrency=8, max_tokens=40)
    prompts = [f"Write a few paragraphs about lakes, take {i}" for i in range(30)]
    with pytest.raises(BatchPaused) as paused:
        await llm.amap(prompts, budget=0.0003, progress="none")
    done = sum(r is not None for r in paused.value.results)
    sent = sim.stats()["total"]["requests"]
    results = await llm.amap(prompts, budget=0.01, progress="none")
    assert all(r.ok for r in results) and sim.stats()["total"]["requests"] - sent == 30 - done
    assert sum(r.cached for r in results) == done


async def test_a_token_budget_and_a_paused_fill(sim):
    llm = make_llm(sim, concurrency=4, max_tokens=30)
    df = reviews(20)
    with pytest.raises(BatchPaused, match="budget_tokens") as paused:
        await llm.afill(df, "Write a few paragraphs about {text}", to="s", budget_tokens=400, progress="none")
    assert sim.stats()["total"]["tokens"] <= 400
    assert 0 < df["s"].notna().sum() < 20  # the rows that finished are in the table already
    await paused.value.batch.resume(budget_tokens=100_000)
    assert df["s"].notna().all()


def test_a_dollar_budget_needs_a_price(sim):
    llm = nbllm.LLM("my-local-model", base_url=sim.base_url + "/v1", api_key=KEY)
    with pytest.raises(ConfigurationError, match="set_price"):
        llm.amap(["hi"], budget=1.0)


@settings(max_examples=80, deadline=None)
@given(st.floats(0, 1), st.lists(st.tuples(st.floats(0, 0.1), st.floats(0, 1)), max_size=40), st.integers(1, 8))
def test_guard_never_overspends_when_requests_cost_at_most_their_reservation(budget, requests, in_flight):
    """Any order of reservations and settlements, with up to ``in_flight`` at once: spent ≤ budget."""
    guard, open_tickets = SpendGuard(budget=budget), []
    for worst, fraction in requests:
        ticket = guard.reserve(worst, 0)
        if ticket is not None:
            open_tickets.append((ticket, worst * fraction))
        if len(open_tickets) >= in_flight or ticket is None:
            settled, actual = open_tickets.pop(0) if open_tickets else (None, 0)
            if settled is not None:
                guard.settle(settled, actual, 0)
        assert guard.spent + guard.reserved <= budget + 1e-12
    for ticket, actual in open_tickets:
        guard.settle(ticket, actual, 0)
    assert guard.spent <= budget + 1e-12


def test_output_guess():
    assert OutputGuess([], max_tokens=200).worst == 200
    assert OutputGuess([]).worst == 1024 and OutputGuess([]).typical is None
    guess = OutputGuess([10, 30, 20])
    assert (guess.typical, guess.worst) == (20, 38)
    guess.add(100)
    assert guess.worst == 125


# ---- estimates -----------------------------------------------------------------------------------------
def test_estimate_counts_prompts_prices_output_and_time(sim, tmp_path):
    pool = KeyPool([{"key": KEY, "alias": "wf", "base_url": sim.base_url + "/v1", "rpm": 600, "tpm": 100_000}])
    llm = nbllm.LLM("gpt-4o-mini", pool=pool, max_tokens=100)
    prompts = [f"What is {i} + 1?" for i in range(50)]
    est = llm.estimate(prompts)
    assert sim.stats()["total"]["requests"] == 0  # nothing was sent
    assert (est.items, est.cached, est.output_worst, est.output_worst_from) == (50, 0, 100, "max_tokens")
    assert est.prompt_tokens == pytest.approx(50 * 13, rel=0.3)
    assert est.cost_high == pytest.approx(rates("gpt-4o-mini").cost(est.prompt_tokens, 50 * 100))
    assert est.seconds == pytest.approx(5.0)  # 50 requests at 600 rpm
    assert "genai-prices" in str(est) and "50 prompts to gpt-4o-mini" in est._repr_html_()
    llm.map(prompts[:20], progress="none")
    est = llm.estimate(prompts)
    assert est.cached == 20 and est.output_typical is not None and est.cost_low < est.cost_high


async def test_iterating_a_budgeted_batch_yields_what_finished_then_raises_the_pause(sim):
    llm = make_llm(sim, concurrency=4, max_tokens=60)
    prompts = [f"Write a few paragraphs about rivers, take {i}" for i in range(40)]
    seen = []
    with pytest.raises(BatchPaused):
        async for i, result in llm.amap(prompts, budget=0.0004, progress="none"):
            seen.append(i)
    assert 0 < len(seen) < 40 and billed(sim) <= 0.0004


def test_a_fill_writes_parsed_fields_as_columns(sim):
    """What structured outputs will return: answers whose ``parsed`` holds the fields."""
    from dataclasses import dataclass

    from nbllm import Response

    @dataclass
    class Parsed(Response):
        parsed: object = None

    df = reviews(3)
    fill = make_llm(sim).afill(df, "{text}", to="s")
    fill.batch.results = [Parsed("{}", parsed={"label": "pos", "score": 0.9}), None,
                          Parsed("{}", parsed={"label": "neg", "extra": 1})]
    assert fill.write() is df
    assert list(df.columns) == ["text", "stars", "s", "s.label", "s.score", "s.extra"]
    assert list(df["s.label"][[0, 2]]) == ["pos", "neg"] and pd.isna(df["s.label"][1])
    assert sim.stats()["total"]["requests"] == 0  # nothing was sent: the fill was never awaited
