"""Data workflows in real kernels: ``--over`` a DataFrame, ``{df}`` of a million rows, two models side by
side, a budget that pauses and resumes — a notebook run by nbclient, and a kernel interrupted mid-batch.

The kernels talk to the simulator of ``tests/test_kernel.py`` (in this process, so its counters tell
exactly how many requests a cell sent), except the two-model cell, which uses the kernel's own embedded
simulator so that both wire formats (OpenAI and Anthropic) answer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from test_kernel import POINT, SETUP, LiveKernel, kernel_env, sim  # noqa: F401 - fixtures used here too

pytestmark = pytest.mark.kernel

ARITHMETIC = 'What is {n} + {n}? Answer as JSON {"result": ?}'
CELLS = [
    SETUP,
    POINT,
    "import json\nimport pandas as pd\nimport nbllm\ndf = pd.DataFrame({'n': range(200)})",
    f"%%llm --over df --to answer\n{ARITHMETIC}",
    "print(json.dumps({'filled': int(df['answer'].notna().sum()),\n"
    "                  'right': sum(f'\"result\": {2 * n}' in a for n, a in zip(df['n'], df['answer']))}))",
    f"%%llm --over df --to answer --estimate\n{ARITHMETIC}",
    "big = pd.DataFrame({'x': range(1_000_000), 'label': ['a | b'] * 1_000_000})",
    "%llm_config context_tokens=400\n%llm context big",
    "%%llm -o described\nHow many rows has this table? {big}",
    "print(json.dumps({'prompt_tokens': described.usage.prompt_tokens}))",
    "essays = pd.DataFrame({'i': range(40)})",
    "%%llm --over essays --to essay --max-tokens 30 --budget 0.0002\nWrite a few paragraphs about rivers, take {i}",
    "print(json.dumps({'after_pause': int(essays['essay'].notna().sum())}))",
    "%%llm --over essays --to essay --max-tokens 30 --budget 1\nWrite a few paragraphs about rivers, take {i}",
    "print(json.dumps({'after_rerun': int(essays['essay'].notna().sum())}))",
    "llm = nbllm.LLM(base_url=BASE, api_key=os.environ['NBLLM_TEST_KEY'], max_tokens=30)\n"
    "prompts = [f'Write a few paragraphs about lakes, take {i}' for i in range(40)]\n"
    "try:\n    await llm.amap(prompts, budget=0.0002)\n"
    "except nbllm.BatchPaused as paused:\n    kept = sum(r is not None for r in paused.results)\n"
    "results = await llm.last_batch.resume(budget=1)\n"
    "print(json.dumps({'kept': kept, 'resumed': sum(r.ok for r in results)}))",
    "%llm_config base_url=none api_key_env=none",
    "%%llm -m openai:gpt-4o-mini,anthropic:claude-haiku-4-5 -o both\nWhat is 6 x 7?",
    "print(json.dumps({model: [r.text, r.model, r.usage.completion_tokens] for model, r in both.items()}))",
]


@pytest.fixture(scope="module")
def workflow(kernel_env, sim, tmp_path_factory) -> tuple[nbformat.NotebookNode, dict[int, int]]:
    """The CELLS notebook run once; also {cell index: requests the simulator got while it ran}."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    sent: dict[int, int] = {}

    class Counting(NotebookClient):
        async def async_execute_cell(self, cell: Any, cell_index: int, **kwargs: Any) -> Any:
            before = sim.stats()["total"]["requests"]
            result = await super().async_execute_cell(cell, cell_index, **kwargs)
            sent[cell_index] = sim.stats()["total"]["requests"] - before
            return result

    where = tmp_path_factory.mktemp("workflow")
    Counting(nb, kernel_name="python3", timeout=180, startup_timeout=120,
             resources={"metadata": {"path": str(where)}}).execute(env=kernel_env)
    return nb, sent


def _printed(nb: nbformat.NotebookNode, index: int) -> dict[str, Any]:
    return json.loads("".join(o.text for o in nb.cells[index].outputs if o.output_type == "stream" and o.name == "stdout"))


def _result(nb: nbformat.NotebookNode, index: int) -> dict[str, Any]:
    (result,) = [o for o in nb.cells[index].outputs if o.output_type == "execute_result"]
    return result.data


def test_over_fills_a_column_for_every_row_and_shows_the_table(workflow):
    nb, sent = workflow
    assert _printed(nb, 4) == {"filled": 200, "right": 200}
    assert sent[3] == 200
    assert "answer" in _result(nb, 3)["text/html"]  # the table is the cell's result
    estimate = _result(nb, 5)["text/html"]
    assert sent[5] == 0 and "200 already in the store, free" in estimate and "answers seen" in estimate


def test_a_million_row_dataframe_stays_within_the_context_budget(workflow):
    nb, sent = workflow
    preview = _result(nb, 7)
    assert preview["text/plain"].startswith("DataFrame: 1 000 000 rows × 2 columns")
    assert "of the 400-token budget per variable" in preview["text/html"]
    assert "| 0 | 0 | a \\| b |" in preview["text/plain"]
    assert _printed(nb, 9)["prompt_tokens"] <= 400 + 30  # the simulator's own count: budget + the question


def test_a_budget_pauses_the_cell_and_a_rerun_completes_it(workflow):
    nb, sent = workflow
    note = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in nb.cells[11].outputs)
    assert "paused before exceeding the budget of $0.0002" in note
    paused = _printed(nb, 12)["after_pause"]
    assert 0 < paused < 40 and sent[11] >= paused
    assert _printed(nb, 14)["after_rerun"] == 40 and sent[13] == 40 - paused  # only the missing rows
    resumed = _printed(nb, 15)
    assert 0 < resumed["kept"] < 40 and resumed["resumed"] == 40
    assert sent[15] == 40  # resume sent only what the pause had left


def test_two_models_stream_side_by_side_and_output_holds_both(workflow):
    nb, _ = workflow
    outputs = [o for o in nb.cells[17].outputs if o.output_type == "display_data"]
    assert len(outputs) == 1  # one output for both columns, updated in place
    final = outputs[0].data["text/html"]
    assert final.count('class="nbllm-compare-column"') == 2 and "first token" in final and "$" in final
    both = _printed(nb, 18)
    assert list(both) == ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"]
    assert all("42" in text for text, _, _ in both.values())
    assert both["anthropic:claude-haiku-4-5"][1].startswith("claude")


def test_rerun_after_an_interrupt_sends_only_the_missing_rows(kernel_env, sim, tmp_path_factory):
    live = LiveKernel(kernel_env, str(tmp_path_factory.mktemp("interrupt")))
    try:
        for code in (SETUP, POINT, "import pandas as pd\nrows = pd.DataFrame({'i': range(120)})"):
            assert live.run(code)[1]["status"] == "ok"
        cell = "%%llm --over rows --to essay\nWrite a few paragraphs about rivers, take {i}"
        before = sim.stats()["total"]["ok"]
        msg_id = live.execute(cell)
        deadline = time.monotonic() + 60
        while sim.stats()["total"]["ok"] - before < 30:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        live.km.interrupt_kernel()
        live.collect(msg_id)
        reply = live.reply(msg_id)
        assert reply["status"] == "error" and reply["ename"] == "GenerationInterrupted"
        kept = int(live.printed("print(int(rows['essay'].notna().sum()))"))
        assert 30 <= kept < 120
        sent = sim.stats()["total"]["requests"]
        assert live.run(cell)[1]["status"] == "ok"
        resent = sim.stats()["total"]["requests"] - sent
        print(f"\n[measure] interrupted --over: {kept}/120 rows kept; the rerun sent {resent}")
        assert resent == 120 - kept  # rows in the table came from the store: only the missing were sent
        assert live.printed("print(int(rows['essay'].notna().sum()))") == "120\n"
    finally:
        live.close()
