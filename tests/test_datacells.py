"""%%llm data cells in IPython's test shell against a simulator: --over, -m a,b, --estimate, %llm context.

(The same cells run in real kernels in ``tests/test_kernel_workflows.py``.)
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp

from nbllm import Response
from nbllm._display.columns import Column, CompareView, compare_html
from nbllm._sim import SimConfig, Simulator

KEY = "sk-test-datacells-000000001"


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=0.0, arithmetic_accuracy=(1.0, 0.0, 0.0))) as server:
        yield server


@pytest.fixture
def shell(sim, monkeypatch):
    monkeypatch.setenv("NBLLM_TEST_KEY", KEY)
    monkeypatch.setenv("NBLLM_TOKENIZER", "approx")
    ip = globalipapp.get_ipython()
    ip.run_line_magic("load_ext", "nbllm")
    ip.run_line_magic("llm_config", f"base_url={sim.base_url}/v1 api_key_env=NBLLM_TEST_KEY")
    yield ip
    magics = ip.magics_manager.registry["NbllmMagics"]
    magics.base_url = magics.api_key_env = None
    magics.context_tokens = 3000
    ip.run_line_magic("unload_ext", "nbllm")


def test_over_fills_a_column_and_returns_the_table(shell):
    shell.user_ns["df"] = pd.DataFrame({"n": [1, 2, 3]})
    result = shell.run_cell('%%llm --over df --to answer -o table\nWhat is {n} + {n}? Answer as JSON {"result": ?}')
    assert result.success and result.result is shell.user_ns["df"] is shell.user_ns["table"]
    for n, answer in zip(shell.user_ns["df"]["n"], shell.user_ns["df"]["answer"]):
        assert f'"result": {2 * n}' in answer


def test_over_a_list_gives_a_new_table_and_one_column_per_model(shell):
    shell.user_ns["notes"] = ["Hello", "What is 2 + 2?"]
    result = shell.run_cell("%%llm --over notes --to reply -m gpt-4o-mini,gpt-4o\n{text}")
    table = result.result
    assert list(table.columns) == ["text", "reply[gpt-4o-mini]", "reply[gpt-4o]"]
    assert table["reply[gpt-4o]"].notna().all() and shell.user_ns["notes"] == ["Hello", "What is 2 + 2?"]


def test_over_mistakes_are_usage_errors_before_anything_is_sent(shell, sim):
    sent = sim.stats()["total"]["requests"]
    for cell, message in [("%%llm --over nothing\n{text}", "no variable 'nothing'"),
                          ("%%llm --over rows\n{missing}", "'missing' is not defined"),
                          ("%%llm --over rows --chat\n{text}", "--chat")]:
        shell.user_ns["rows"] = [{"text": "x"}]
        with pytest.raises(UsageError, match=message):
            shell.run_cell(cell).raise_error()
    assert sim.stats()["total"]["requests"] == sent


def test_estimate_sends_nothing(shell, sim):
    shell.user_ns["df"] = pd.DataFrame({"text": ["a b c"] * 10})
    sent = sim.stats()["total"]["requests"]
    estimate = shell.run_cell("%%llm --over df --estimate --max-tokens 50\nSummarise: {text}").result
    assert estimate.items == 10 and estimate.output_worst == 50 and estimate.cost_high > 0
    several = shell.run_cell("%%llm --estimate -m gpt-4o-mini,gpt-4o\nHello").result
    assert [e.model for e in several] == ["gpt-4o-mini", "gpt-4o"] and "gpt-4o" in several._repr_html_()
    assert sim.stats()["total"]["requests"] == sent


def test_budget_in_a_cell_pauses_with_a_note_and_a_rerun_continues(shell, sim, capsys):
    shell.user_ns["df"] = pd.DataFrame({"i": range(30)})
    cell = "%%llm --over df --to essay --max-tokens 40 --budget {budget}\nWrite a few paragraphs about rivers, take {{i}}"
    result = shell.run_cell(cell.format(budget=0.0002))
    assert result.success
    done = int(shell.user_ns["df"]["essay"].notna().sum())
    assert 0 < done < 30 and "paused before exceeding the budget of $0.0002" in capsys.readouterr().out
    sent = sim.stats()["total"]["requests"]
    assert shell.run_cell(cell.format(budget=1)).success
    assert shell.user_ns["df"]["essay"].notna().all() and sim.stats()["total"]["requests"] - sent == 30 - done


def test_models_side_by_side_bind_both_answers(shell, capsys):
    result = shell.run_cell("%%llm -m gpt-4o-mini,gpt-4o -o both\nWhat is 6 x 7?")
    assert result.success and result.result is None
    both = shell.user_ns["both"]
    assert list(both) == ["gpt-4o-mini", "gpt-4o"] and all("42" in r.text for r in both.values())
    out = capsys.readouterr().out  # outside a kernel: both answers printed at the end, each under its model
    assert "── gpt-4o-mini ──" in out and "── gpt-4o ──" in out


def test_context_shows_exactly_what_a_variable_becomes(shell):
    shell.user_ns["big"] = pd.DataFrame({"x": range(1_000_000)})
    shell.run_line_magic("llm_config", "context_tokens=200")
    preview = shell.run_cell("%llm context big").result
    assert preview.startswith("DataFrame: 1 000 000 rows × 1 columns") and preview.tokens <= 200
    assert repr(preview) == str(preview) and "200-token budget" in preview._repr_html_()
    assert shell.run_cell("%llm context {len(big)}").result == "1000000"
    shell.run_cell("%%llm -o ans --context-tokens 100\nDescribe {big}")
    assert shell.user_ns["ans"].ok


# ---- the compare view ----------------------------------------------------------------------------------
def test_compare_html_columns_stream_then_render():
    a, b = Column("gpt-4o-mini", 0.0, chunks=["**bold** <b>"], ttft=0.2), Column("gpt-4o", 0.0)
    live = compare_html([a, b], final=False, now=1.0)
    assert live.count('class="nbllm-compare-column"') == 2 and "**bold** &lt;b&gt;" in live
    assert "waiting for the first token" in live
    a.response = Response("**bold** <b>", model="gpt-4o-mini", latency=1.0, time_to_first_token=0.2)
    b.error = ValueError("nope")
    final = compare_html([a, b], final=True, now=1.0, note="interrupted")
    assert "<strong>bold</strong>" in final and "&lt;b&gt;" in final and "ValueError" in final
    assert "[interrupted]" in final and "$" in final


async def test_compare_view_is_one_throttled_output():
    sent, clock = [], [0.0]
    view = CompareView(["a", "b"], refresh_hz=10, sink=lambda data, meta: sent.append(data), clock=lambda: clock[0])
    async with view:
        for step in range(50):  # 5 s of tokens in both columns
            clock[0] = step * 0.1
            view.append("a", f"x{step} ")
            view.append("b", f"y{step} ")
            view.throttle.refresh()
        view.done("a", Response("done a", model="a"))
        view.done("b", Response("done b", model="b"))
    assert len(sent) <= 52  # one update per tick at most, for both columns together, plus start and end
    assert "done a" in sent[-1]["text/plain"] and "done b" in sent[-1]["text/plain"]


# ---- the panel's compare toggle ------------------------------------------------------------------------
async def test_panel_compare_streams_two_models_side_by_side():
    from nbllm import LLM, PromptPanel

    panel = PromptPanel(LLM("gpt-4o-mini"))
    panel.compare_toggle.value = True
    assert panel.compare_model_box.layout.display == "" and panel.compare_model_box.value == "gpt-4o"
    seen: list[str] = []
    panel.answer_view.observe(lambda change: seen.append(change["new"]), names="value")
    answers = await panel.send("Tell me about rivers in Europe")
    assert list(answers) == ["gpt-4o-mini", "gpt-4o"] and all(r.ok and r.text for r in answers.values())
    final = panel.answer_view.value
    assert final.count('class="nbllm-compare-column"') == 2 and "jp-RenderedHTMLCommon" in final
    assert sum("<div style=\"white-space:pre-wrap" in html for html in seen) >= 3  # it streamed first
    assert panel.history == [] and not panel.busy  # a comparison does not continue the conversation
    panel.compare_toggle.value = False
    assert isinstance(await panel.send("Hello"), Response) and len(panel.history) == 2


async def test_panel_compare_stop_keeps_both_partial_answers():
    from nbllm import LLM, PromptPanel

    panel = PromptPanel(LLM("gpt-4o-mini"))
    panel.compare_toggle.value = True
    task = panel.send("Write a long essay about rivers [[sim:slow]]")
    while "rivers" not in panel.answer_view.value:
        await asyncio.sleep(0.02)
    panel.stop()
    answers = await task
    assert set(answers) == {"gpt-4o-mini", "gpt-4o"} and not panel.busy
    assert all(r.finish_reason == "interrupted" and r.text for r in answers.values())
    assert "[interrupted]" in panel.answer_view.value
