"""%%llm in real kernels: notebooks run by nbclient, and a kernel driven message by message.

The answers come from a simulator in this process (default pace: ~0.25 s to the first token, then 60
tokens/s) that knows exactly one key; kernels point at it with ``%llm_config base_url=… api_key_env=…``
and get the key from their environment, so no key is ever typed into a cell. Rates and latencies are
measured on the kernel's own message timestamps (``header.date``), not on when this process reads
them, so a busy test machine cannot make a burst look like a stream.
"""

from __future__ import annotations

import json
import os
import queue
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from jupyter_client import KernelManager
from nbclient import NotebookClient

from nbllm import Store
from nbllm._sim import KeyProfile, SimConfig, Simulator

pytestmark = pytest.mark.kernel

SECRET = "sk-test-SECRET1234567890abcd"
BAD_KEY = "sk-test-BADKEY0987654321wxyz"
LONG_PROMPT = "Write a few paragraphs about rivers, take 0"  # the simulator answers it in 151 tokens
TEMPLATE = '请将以下表达式的计算结果返回为 JSON 格式：\n{\n  "expression": "{question}",\n  "result": ?\n}\n'
DISPLAY = ("display_data", "update_display_data")
# Jupyter Server does not count these toward its iopub message rate limit
UNCOUNTED = ("status", "execute_input", "comm_open")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimConfig(keys={SECRET: KeyProfile(alias="ci")}, arithmetic_accuracy=(1.0, 0.0, 0.0))
    with Simulator(config) as server:
        yield server


@pytest.fixture(scope="module")
def kernel_env(sim, tmp_path_factory) -> dict[str, str]:
    """The kernels' environment: no real keys, a fresh store, the test key under a variable name."""
    env = {name: value for name, value in os.environ.items()
           if "API_KEY" not in name and not name.endswith("BASE_URL") and not name.startswith("NBLLM_")}
    env.update(NBLLM_STORE=str(tmp_path_factory.mktemp("kernel") / "store.sqlite3"), NBLLM_TEST_KEY=SECRET,
               NBLLM_BAD_KEY=BAD_KEY, NBLLM_TEST_BASE_URL=sim.base_url + "/v1")
    return env


SETUP = "%load_ext nbllm\nimport os\nBASE = os.environ['NBLLM_TEST_BASE_URL']"
POINT = "%llm_config base_url={BASE} api_key_env=NBLLM_TEST_KEY"  # IPython fills {BASE} in magic lines


# ---- a whole notebook, "Run All" through nbclient ---------------------------------------------------
RUN_ALL = [
    SETUP,
    POINT,
    f"%%llm -o ans\n{LONG_PROMPT}",
    "import json\nprint(json.dumps({'text': ans.text, 'usage': ans.usage.as_dict(), 'finish': ans.finish_reason}))",
    "question = '37 + 12 x 5'",
    f"%%llm -f json -o j\n{TEMPLATE}",
    "%llm status",
    "%llm_config",
    "%llm_config api_key_env=NBLLM_BAD_KEY",
    "%%llm -o failed\nHello, how are you?",
    POINT,
    "print('failed' in dir())",
    # the key-pool seed's ending, pasted as is: asyncio.run() inside the kernel needs the opt-in nesting
    "import asyncio, nbllm\nnbllm.enable_nesting()\n"
    "llm = nbllm.LLM(base_url=BASE, api_key=os.environ['NBLLM_TEST_KEY'])\n"
    "async def main():\n    return await asyncio.gather(*[llm.ainvoke(f'{i} + {i} = ?') for i in range(5)])\n"
    "results = asyncio.run(main())\nprint(json.dumps([r.text for r in results]))",
    "%%llm -o after\nHello, how are you?",
    "print('done', len(results), after.finish_reason)",
]


@pytest.fixture(scope="module")
def run_all(kernel_env, tmp_path_factory) -> tuple[nbformat.NotebookNode, str]:
    """The RUN_ALL notebook executed once; returns it and its saved JSON."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in RUN_ALL]
    where = tmp_path_factory.mktemp("run_all")
    NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=120,
                   resources={"metadata": {"path": str(where)}}).execute(env=kernel_env)
    nbformat.write(nb, where / "executed.ipynb")
    return nb, (where / "executed.ipynb").read_text(encoding="utf-8")


def _outputs(nb: nbformat.NotebookNode, source: str) -> list[dict[str, Any]]:
    return nb.cells[RUN_ALL.index(source)].outputs


def _printed(nb: nbformat.NotebookNode, source: str) -> str:
    return "".join(o.text for o in _outputs(nb, source) if o.output_type == "stream" and o.name == "stdout")


def test_final_answer_is_one_markdown_output(run_all):
    nb, _ = run_all
    outputs = _outputs(nb, RUN_ALL[2])
    assert [o.output_type for o in outputs] == ["display_data"]  # one display, updated in place
    reported = json.loads(_printed(nb, RUN_ALL[3]))
    assert outputs[0].data["text/markdown"] == reported["text"] and len(reported["text"]) > 500
    assert reported["finish"] == "stop" and reported["usage"]["completion_tokens"] > 100


def test_json_prompt_reaches_the_server_with_its_braces(run_all, kernel_env):
    nb, _ = run_all
    (output,) = _outputs(nb, RUN_ALL[5])
    assert output.data["application/json"] == {"expression": "37 + 12 x 5", "result": 97}
    sent = [json.loads(row["request_json"]) for row in Store(kernel_env["NBLLM_STORE"]).rows()]
    prompts = [request["messages"][-1]["content"] for request in sent]
    assert TEMPLATE.replace("{question}", "37 + 12 x 5") in prompts


def test_cells_ran_in_order(run_all):
    nb, _ = run_all
    assert [cell.execution_count for cell in nb.cells] == list(range(1, len(RUN_ALL) + 1))
    assert _printed(nb, RUN_ALL[-1]).strip() == "done 5 stop"


def test_errors_are_short_and_no_key_is_ever_saved(run_all, kernel_env):
    nb, saved = run_all
    outputs = _outputs(nb, RUN_ALL[9])
    assert all(o.output_type == "display_data" for o in outputs)  # no traceback, no error output
    assert "HTTP 401" in outputs[-1].data["text/plain"] and "color:#c62828" in outputs[-1].data["text/html"]
    assert _printed(nb, RUN_ALL[11]).strip() == "False"
    assert "key-1  sk-…abcd" in _outputs(nb, RUN_ALL[6])[0].data["text/plain"]  # alias and masked key only
    assert "NBLLM_TEST_KEY (set)" in _outputs(nb, RUN_ALL[7])[0].data["text/plain"]
    store_bytes = open(kernel_env["NBLLM_STORE"], "rb").read()
    for key in (SECRET, BAD_KEY):
        assert key[8:-4] not in saved and key.encode() not in store_bytes  # at most a masked sk-…abcd


def test_nesting_runs_the_seed_pattern_and_later_cells(run_all):
    nb, _ = run_all
    answers = json.loads(_printed(nb, RUN_ALL[12]))
    assert len(answers) == 5 and all(str(2 * i) in text for i, text in enumerate(answers))
    assert "text/markdown" in _outputs(nb, RUN_ALL[13])[0].data


# ---- one kernel driven message by message ------------------------------------------------------------
class LiveKernel:
    """A kernel plus a client that sorts iopub messages by the request they belong to."""

    def __init__(self, env: dict[str, str], cwd: str) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=cwd)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.iopub: dict[str, list[dict[str, Any]]] = {}  # parent msg_id -> its iopub messages so far
        self.replies: dict[str, dict[str, Any]] = {}  # parent msg_id -> execute_reply

    def execute(self, code: str) -> str:
        return self.kc.execute(code)

    def collect(self, msg_id: str, on_message: Any = None, timeout: float = 90) -> list[dict[str, Any]]:
        """The request's iopub messages up to its idle status; ``on_message(msg)`` sees each as it comes."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            mine = self.iopub.setdefault(msg_id, [])
            for msg in mine[seen:]:
                if on_message is not None:
                    on_message(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return mine
            seen = len(mine)
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self.iopub.setdefault(msg["parent_header"].get("msg_id", ""), []).append(msg)

    def reply(self, msg_id: str, timeout: float = 30) -> dict[str, Any]:
        while msg_id not in self.replies:
            msg = self.kc.get_shell_msg(timeout=timeout)
            self.replies[msg["parent_header"].get("msg_id", "")] = msg["content"]
        return self.replies[msg_id]

    def run(self, code: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        msg_id = self.execute(code)
        return self.collect(msg_id), self.reply(msg_id)

    def printed(self, code: str) -> str:
        msgs, reply = self.run(code)
        assert reply["status"] == "ok", reply
        return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")

    def drain(self, seconds: float) -> None:
        """Read whatever arrives in the next ``seconds`` (late messages would land in ``iopub``)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                msg = self.kc.get_iopub_msg(timeout=left)
            except queue.Empty:
                return
            self.iopub.setdefault(msg["parent_header"].get("msg_id", ""), []).append(msg)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(kernel_env, tmp_path_factory) -> Iterator[LiveKernel]:
    live = LiveKernel(kernel_env, str(tmp_path_factory.mktemp("live")))
    for code in (SETUP, POINT):
        assert live.run(code)[1]["status"] == "ok"
    yield live
    live.close()


def _stamp(msg: dict[str, Any]) -> float:
    return msg["header"]["date"].timestamp()  # when the kernel sent it


def _displays(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in msgs if m["msg_type"] in DISPLAY]


def test_display_messages_per_answer_are_bounded(kernel):
    msgs, reply = kernel.run(f"%%llm\n{LONG_PROMPT}")
    assert reply["status"] == "ok"
    displays = _displays(msgs)
    duration = _stamp(displays[-1]) - _stamp(displays[0])
    print(f"\n[measure] one answer: {len(displays)} display messages over {duration:.2f} s")
    assert duration > 1.5  # it really streamed (~2.5 s of tokens)
    assert 5 <= len(displays) <= 10 * duration + 2
    texts = [m["content"]["data"]["text/plain"] for m in displays[1:-1]]
    # escaped preformatted text while streaming, Markdown only once at the end
    assert all(set(m["content"]["data"]) == {"text/plain", "text/html"} for m in displays[:-1])
    assert all(m["content"]["data"]["text/html"].startswith("<pre") for m in displays[:-1])
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert displays[-1]["content"]["data"]["text/markdown"].startswith(texts[-1])


def _interrupt_when_streaming(kernel: LiveKernel, code: str) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """Run ``code``, interrupt once some text is on screen; returns messages, reply, interrupt time."""
    msg_id = kernel.execute(code)
    sent: list[float] = []

    def interrupt_once(msg: dict[str, Any]) -> None:
        if not sent and msg["msg_type"] == "update_display_data" and len(msg["content"]["data"]["text/plain"]) > 100:
            sent.append(time.time())
            kernel.km.interrupt_kernel()

    msgs = kernel.collect(msg_id, interrupt_once)
    kernel.drain(0.5)  # nothing of this answer may arrive after its cell ended
    assert len(kernel.iopub[msg_id]) == len(msgs) and sent
    return msgs, kernel.reply(msg_id), sent[0]


@pytest.mark.parametrize("form", ["cell", "line"])
def test_interrupt_stops_the_answer_and_keeps_the_partial_text(kernel, sim, form):
    aborts = sim.stats()["total"]["client_aborts"]
    code = f"%%llm -o part\n{LONG_PROMPT}" if form == "cell" else f"%llm -o part -- {LONG_PROMPT}"
    msgs, reply, interrupted_at = _interrupt_when_streaming(kernel, code)
    final = _displays(msgs)[-1]
    latency = _stamp(final) - interrupted_at
    print(f"\n[measure] interrupt ({form}): final update {latency * 1000:.0f} ms after the interrupt")
    assert latency <= 1.0
    assert final["content"]["data"]["text/markdown"].endswith("*[interrupted]*")
    assert reply["status"] == "error" and reply["ename"] == "GenerationInterrupted"
    (error,) = [m for m in msgs if m["msg_type"] == "error"]
    assert len(error["content"]["traceback"]) == 1  # one line, not asyncio's internals
    finish, length = kernel.printed("print(part.finish_reason, len(part.text))").split()
    assert finish == "interrupted" and 100 < int(length) < 800
    deadline = time.monotonic() + 5
    while sim.stats()["total"]["client_aborts"] == aborts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.stats()["total"]["client_aborts"] > aborts  # the request itself was cancelled


def test_queued_requests_run_in_order(kernel):
    codes = ["%%llm -o q1\nHello, how are you?", f"%%llm -o q2\n{LONG_PROMPT}",
             "print(q1.finish_reason, q2.finish_reason, len(q2.text) > 500)"]
    ids = [kernel.execute(code) for code in codes]  # all three sent before the first one finishes
    runs = [kernel.collect(msg_id) for msg_id in ids]
    replies = [kernel.reply(msg_id) for msg_id in ids]
    assert [r["status"] for r in replies] == ["ok"] * 3
    counts = [r["execution_count"] for r in replies]
    assert counts == sorted(counts) and len(set(counts)) == 3
    for before, after in zip(runs, runs[1:]):
        assert _stamp(before[-1]) <= _stamp(after[0])  # idle of one request, then busy of the next
    for run in runs[:2]:
        assert "text/markdown" in _displays(run)[-1]["content"]["data"]
    printed = [m["content"]["text"] for m in runs[2] if m["msg_type"] == "stream"]
    assert printed == ["stop stop True\n"]


def test_twenty_streams_share_the_iopub_budget(kernel):
    code = ("import asyncio\n_ = await asyncio.gather(*[__nbllm_cell__(f'-o s{i}', "
            "f'Write a few paragraphs about rivers, take {i}') for i in range(20)])")
    msgs, reply = kernel.run(code)
    assert reply["status"] == "ok"
    counted = sorted(_stamp(m) for m in msgs if m["msg_type"] not in UNCOUNTED)
    peak = max(sum(1 for t in counted[i:] if t < start + 1.0) for i, start in enumerate(counted))
    span = counted[-1] - counted[0]
    print(f"\n[measure] 20 streams: {len(counted)} iopub messages in {span:.2f} s, "
          f"mean {len(counted) / span:.0f}/s, peak {peak} in any 1 s")
    assert peak < 300
    finals = {}
    for m in _displays(msgs):
        finals[m["content"]["transient"]["display_id"]] = m["content"]["data"]
    assert len(finals) == 20 and all("text/markdown" in data for data in finals.values())
    assert kernel.printed("print(sum(globals()[f's{i}'].finish_reason == 'stop' for i in range(20)))") == "20\n"
