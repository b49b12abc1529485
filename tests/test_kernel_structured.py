"""``%%llm --schema NAME`` in a real kernel (nbclient, "Run All"): the parsed object rendered, ``-o`` bound.

The answers come from a simulator in this process that knows one key; the kernel gets the key from its
environment (``api_key_env``), never from a cell. The first answer of the structured cell is broken on
purpose (``[[sim:broken_json_wrong_type:once]]``), so the cell shows the object of the re-ask.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from nbllm._sim import KeyProfile, SimConfig, Simulator

pytestmark = pytest.mark.kernel

SECRET = "sk-test-STRUCTURED1234567890ab"
PROMPT = 'Return JSON: {{"expression": "{question}", "result": ?}}'

CELLS = [
    "%load_ext nbllm\nimport os, json, pydantic\n"
    "%llm_config base_url={os.environ['NBLLM_TEST_BASE_URL']} api_key_env=NBLLM_TEST_KEY",
    "class Result(pydantic.BaseModel):\n    expression: str\n    result: int\n\n"
    "math = {'type': 'object', 'properties': {'expression': {'type': 'string'}, 'result': {'type': 'integer'}},"
    " 'required': ['expression', 'result']}\nquestion = '37 + 12 x 5'",
    "%%llm --schema Result -o r\n" + PROMPT.format(question="{question}") + " [[sim:broken_json_wrong_type:once]]",
    "print(json.dumps({'parsed': r.parsed.model_dump(), 'type': type(r.parsed).__name__, "
    "'attempts': [a.errors for a in r.attempts]}))",
    "%%llm --schema math -o d\n" + PROMPT.format(question="6 x 7"),
    "print(json.dumps(d.parsed))",
    "%%llm --schema Result -o never\n" + PROMPT.format(question="1 + 1") + " [[sim:broken_json_missing_field]]",
    "print('never' in dir())",
    "%%llm --schema Missing\nhello",
    "%%llm --schema question\nhello",
]


@pytest.fixture(scope="module")
def notebook(tmp_path_factory) -> Iterator[nbformat.NotebookNode]:
    config = SimConfig(keys={SECRET: KeyProfile(alias="ci")}, arithmetic_accuracy=(1.0, 0.0, 0.0), ttft=0.05)
    with Simulator(config) as sim:
        env = {name: value for name, value in os.environ.items()
               if "API_KEY" not in name and not name.endswith("BASE_URL") and not name.startswith("NBLLM_")}
        where = tmp_path_factory.mktemp("structured")
        env.update(NBLLM_STORE=str(where / "store.sqlite3"), NBLLM_TEST_KEY=SECRET,
                   NBLLM_TEST_BASE_URL=sim.base_url + "/v1")
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
        NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=120, allow_errors=True,
                       resources={"metadata": {"path": str(where)}}).execute(env=env)
        yield nb


def _outputs(nb: nbformat.NotebookNode, i: int) -> list[dict[str, Any]]:
    return nb.cells[i].outputs


def _printed(nb: nbformat.NotebookNode, i: int) -> str:
    return "".join(o.text for o in _outputs(nb, i) if o.output_type == "stream" and o.name == "stdout")


def test_the_cell_renders_the_parsed_object_of_the_reask(notebook) -> None:
    (output,) = _outputs(notebook, 2)  # one display, updated in place
    assert output.data["application/json"] == {"expression": "37 + 12 x 5", "result": 97}
    shown = json.loads(_printed(notebook, 3))
    assert shown["parsed"] == {"expression": "37 + 12 x 5", "result": 97} and shown["type"] == "Result"
    assert len(shown["attempts"]) == 2 and "valid integer" in shown["attempts"][0][0] and shown["attempts"][1] == []


def test_a_json_schema_dict_works_too(notebook) -> None:
    assert _outputs(notebook, 4)[0].data["application/json"] == {"expression": "6 x 7", "result": 42}
    assert json.loads(_printed(notebook, 5)) == {"expression": "6 x 7", "result": 42}


def test_an_answer_that_never_fits_shows_the_raw_text_and_a_short_error(notebook) -> None:
    outputs = _outputs(notebook, 6)
    assert all(o.output_type == "display_data" for o in outputs)  # no traceback
    assert '"expression": "1 + 1"' in outputs[0].data["text/plain"]  # the last raw answer stays visible
    assert "StructuredOutputError" in outputs[-1].data["text/plain"] and "Field required" in outputs[-1].data["text/plain"]
    assert _printed(notebook, 7).strip() == "False"  # -o is bound only to an answer


@pytest.mark.parametrize("i, message", [(8, "no variable 'Missing'"), (9, "Pydantic model class or a JSON Schema dict")])
def test_a_wrong_schema_name_is_a_one_line_usage_error(notebook, i, message) -> None:
    # IPython shows a magic's UsageError as one line on stderr, not as a traceback
    (error,) = [o.text for o in _outputs(notebook, i) if o.output_type == "stream" and o.name == "stderr"]
    assert error.startswith("UsageError: --schema") or error.startswith("UsageError: schema=")
    assert message in error and error.count("\n") == 1
