"""%%llm without a kernel: the transformer, option parsing, settings, the renderer, and real shell runs.

Magics run in IPython's test shell (``globalipapp``), as anywidget tests them; answers come from a
simulator over real sockets. In a terminal shell the renderer prints tokens, so ``capsys`` sees them.
"""

from __future__ import annotations

import ast
import asyncio
import io
import json
import re

import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from traitlets.config import Config

from nbllm import Response
from nbllm._jupyter.cellrunner import GenerationInterrupted, run_blocking, runner_for
from nbllm._exceptions import AuthenticationError
from nbllm._jupyter.cellsyntax import ENTRY, parse_llm_cell, rewrite_llm_cell, split_line
from nbllm._jupyter.magics import NbllmMagics
from nbllm._display.render import LiveRenderer, error_bundle, extract_code, fence, note_for, render_bundle, streaming_bundle
from nbllm._sim import KeyProfile, SimConfig, Simulator

GOOD_KEY = "sk-test-GOODKEY1234567890abcd"
BAD_KEY = "sk-test-BADKEY0987654321wxyz"


def _lines(cell: str) -> list[str]:
    return cell.splitlines(keepends=True)


def _call_args(rewritten: list[str]) -> tuple[str, str | None]:
    """The (line, body) literals of a rewritten ``await __nbllm_cell__(line, body)``."""
    (line,) = rewritten
    call = ast.parse(line).body[0].value.value  # Expr -> Await -> Call
    assert call.func.id == ENTRY
    return tuple(ast.literal_eval(arg) for arg in call.args)


# ---- the input transformer ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "line", "body"),
    [
        ("%%llm\nHello {name}\n", "", "Hello {name}\n"),
        ("\n\n%%llm -f json -o ans\n{\"a\": 1}\n", "-f json -o ans", "{\"a\": 1}\n"),
        ("  %%llm  -m openai:gpt-4o-mini \n'quotes' \"and\" \\back\\slashes\n", "-m openai:gpt-4o-mini",
         "'quotes' \"and\" \\back\\slashes\n"),
        ("%%llm\n", "", ""),
        ("%llm what is 2 + 2?", "what is 2 + 2?", None),
        ("\n%llm status\n\n", "status", None),
    ],
)
def test_rewrite_turns_llm_cells_into_one_await(cell, line, body):
    rewritten = rewrite_llm_cell(_lines(cell))
    assert rewritten[0].startswith(f"await {ENTRY}(")
    assert _call_args(rewritten) == (line, body)


@pytest.mark.parametrize(
    "cell",
    ["x = 1\n", "", "\n\n", "%%llm_config\n", "%%time\n%%llm\nhi\n", "%llm_config model=x\n",
     "x = 1\n%llm hello\n", "%llm hello\nprint(1)\n", "# %%llm\nhi\n"],
)
def test_rewrite_leaves_other_cells_untouched(cell):
    lines = _lines(cell)
    assert rewrite_llm_cell(lines) is lines


def test_rewrite_without_autoawait_leaves_cells_to_the_magic():
    cell = _lines("%%llm -f text\nhi\n")
    assert rewrite_llm_cell(cell, autoawait=False) is cell
    # a %llm line is written out as the call IPython makes, so a trailing "?" is not a help request
    assert rewrite_llm_cell(_lines("%llm why?"), autoawait=False) == ["get_ipython().run_line_magic('llm', 'why?')\n"]
    assert parse_llm_cell(_lines("%llm why?")) == ("why?", None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [("hello there", ("", "hello there")), ("-f text -- it's late?", ("-f text", "it's late?")),
     ("-- -f is part of the prompt", ("", "-f is part of the prompt")), ("  why?  ", ("", "why?"))],
)
def test_split_line(line, expected):
    assert split_line(line) == expected


def test_split_line_asks_for_the_separator():
    with pytest.raises(UsageError, match="--"):
        split_line("-f text hello")


# ---- extension lifecycle and settings ----------------------------------------------------------------
@pytest.fixture
def ip():
    """IPython's test shell with nbllm loaded; unloaded and reset afterwards."""
    shell = globalipapp.get_ipython()  # the module swaps this function for the shell's on first call
    shell.run_line_magic("load_ext", "nbllm")
    magics = shell.magics_manager.registry["NbllmMagics"]
    yield shell
    for name in ("model", "system", "temperature", "max_tokens", "base_url", "api_key_env"):
        setattr(magics, name, None)
    magics.format, magics.stream, magics.refresh_hz = "markdown", True, 10.0
    magics.runner.history.clear()
    shell.autoawait = True
    shell.run_line_magic("unload_ext", "nbllm")


def _ours(shell) -> list:
    return [t for t in shell.input_transformers_cleanup if getattr(t, "nbllm_transformer", False)]


def test_load_is_idempotent_and_unload_removes_everything(ip):
    ip.run_line_magic("reload_ext", "nbllm")
    from nbllm._jupyter.magics import load_ipython_extension, unload_ipython_extension

    load_ipython_extension(ip)
    assert len(_ours(ip)) == 1
    assert ip.transform_cell("%%llm -f text\nhi {x}\n") == f"await {ENTRY}('-f text', 'hi {{x}}\\n')\n"
    assert ENTRY in ip.user_ns and ENTRY in ip.user_ns_hidden
    unload_ipython_extension(ip)
    assert not _ours(ip) and ENTRY not in ip.user_ns
    assert "llm" not in ip.magics_manager.magics["cell"] and "llm_config" not in ip.magics_manager.magics["line"]
    load_ipython_extension(ip)  # the fixture unloads it again


def test_transformer_follows_autoawait_and_survives_reset(ip):
    ip.autoawait = False
    assert ip.transform_cell("%%llm\nhi\n").startswith("get_ipython().run_cell_magic('llm'")
    ip.autoawait = True
    ip.run_line_magic("reset", "-f")
    assert ENTRY not in ip.user_ns
    ip.transform_cell("%%llm\nhi\n")
    assert callable(ip.user_ns[ENTRY])


def test_terminal_typing_still_waits_for_the_blank_line(ip):
    check = ip.input_transformer_manager.check_complete
    assert check("%%llm -f text\n")[0] == "incomplete"
    assert check("%%llm -f text\nhi\n\n")[0] == "complete"


def test_other_loop_runners_get_the_blocking_magic(ip):
    ip.loop_runner = lambda coro: None  # what %autoawait trio / curio does: another runner
    try:
        assert ip.transform_cell("%%llm\nhi\n").startswith("get_ipython().run_cell_magic('llm'")
    finally:
        ip.run_line_magic("autoawait", "asyncio")


def test_llm_config_sets_validates_and_shows_settings(ip):
    table = ip.run_line_magic("llm_config", "model=openai:gpt-4o-mini format=text temperature=0.2 "
                                            "max_tokens=64 stream=false 'system=Be brief.'")
    assert table["model"] == "openai:gpt-4o-mini" and table["format"] == "text"
    assert table["temperature"] == "0.2" and table["max_tokens"] == "64" and table["stream"] == "False"
    assert table["system"] == "Be brief." and "<table>" in table._repr_html_()
    assert ip.run_line_magic("llm_config", "temperature=none")["temperature"] == "(default)"
    for bad in ("format=pdf", "temperature=hot", "colour=red", "model", "refresh_hz=0"):
        with pytest.raises(UsageError):
            ip.run_line_magic("llm_config", bad)


def test_llm_config_refuses_keys_and_shows_only_the_variable_name(ip, monkeypatch):
    with pytest.raises(UsageError, match="api_key_env"):
        ip.run_line_magic("llm_config", f"api_key={GOOD_KEY}")
    monkeypatch.setenv("NBLLM_TEST_KEY", GOOD_KEY)
    table = ip.run_line_magic("llm_config", "api_key_env=NBLLM_TEST_KEY")
    assert table["api_key_env"] == "NBLLM_TEST_KEY (set)"
    assert GOOD_KEY not in repr(table) + table._repr_html_()


def test_settings_come_from_ipython_config():
    config = Config()
    config.NbllmMagics.model = "anthropic:claude-haiku-4-5"
    config.NbllmMagics.format = "code"
    config.NbllmMagics.refresh_hz = 4.0
    magics = NbllmMagics(shell=None, config=config)
    assert (magics.model, magics.format, magics.refresh_hz, magics.stream) == ("anthropic:claude-haiku-4-5", "code", 4.0, True)


def test_options_override_settings(ip, monkeypatch):
    magics = ip.magics_manager.registry["NbllmMagics"]
    magics.system, magics.temperature = "Be kind.", 0.7
    ip.user_ns["topic"] = "rivers"
    captured = {}

    async def fake_run(llm, request):
        captured["request"] = request

    monkeypatch.setattr(magics.runner, "run", fake_run)  # only the parsing is under test here
    asyncio.run(magics.prepare('-f json -o out -t 0 --max-tokens 5 --no-stream -s "Be short." -c', "About {topic}: {\"x\": 1}"))
    request = captured["request"]
    assert request.prompt == 'About rivers: {"x": 1}'
    assert (request.fmt, request.output, request.stream, request.chat) == ("json", "out", False, True)
    assert request.overrides == {"system": "Be short.", "temperature": 0.0, "max_tokens": 5}
    asyncio.run(magics.prepare("--no-interpolate", "About {topic}"))
    assert captured["request"].prompt == "About {topic}" and captured["request"].overrides["temperature"] == 0.7
    for bad_line, body in (("-f pdf", "hi"), ("-o 1x", "hi"), ("-o class", "hi"), ("-s 'unclosed", "hi"), ("", "{undefined_name}"), ("", "  \n")):
        with pytest.raises(UsageError):
            magics.prepare(bad_line, body)


def test_one_llm_per_settings_combination(monkeypatch, fast_sim):
    monkeypatch.setenv("NBLLM_TEST_KEY", GOOD_KEY)
    base = fast_sim.base_url + "/v1"
    assert runner_for("m", base, "NBLLM_TEST_KEY") is runner_for("m", base, "NBLLM_TEST_KEY")
    assert runner_for("m", base, "NBLLM_TEST_KEY") is not runner_for("other", base, "NBLLM_TEST_KEY")
    monkeypatch.delenv("NBLLM_TEST_KEY")
    with pytest.raises(Exception, match="NBLLM_TEST_KEY is not set"):
        runner_for("m", base, "NBLLM_TEST_KEY")


# ---- the renderer ------------------------------------------------------------------------------------
class Recorder:
    """A sink that keeps every bundle, and a clock the test moves by hand."""

    def __init__(self) -> None:
        self.bundles: list[tuple[dict, dict]] = []
        self.now = 0.0

    def __call__(self, data: dict, metadata: dict) -> None:
        self.bundles.append((data, metadata))

    def clock(self) -> float:
        return self.now


def test_renderer_throttles_and_skips_unchanged_text():
    rec = Recorder()
    view = LiveRenderer("markdown", refresh_hz=10, sink=rec, clock=rec.clock).start()
    assert rec.bundles == [(streaming_bundle(""), {})]  # the answer's place, before the first token
    view.append("Hel")
    assert view.refresh()
    view.append("lo")
    rec.now = 0.05
    assert not view.refresh()  # too soon
    rec.now = 0.1
    assert view.refresh()
    rec.now = 0.5
    assert not view.refresh()  # nothing new
    view.finish()
    view.finish()  # idempotent
    assert [d.get("text/plain") for d, _ in rec.bundles] == ["…", "Hel", "Hello", "Hello"]
    assert "text/markdown" in rec.bundles[-1][0] and "<pre" in rec.bundles[1][0]["text/html"]
    assert view.updates == 4 and view.text == "Hello" and not view.refresh()


def test_many_live_renderers_share_one_update_budget():
    views = [LiveRenderer("text", sink=Recorder()).start() for _ in range(40)]
    assert views[0].interval == pytest.approx(40 / 200)
    for view in views:
        view.finish()
    assert LiveRenderer("text", sink=Recorder()).start().interval == pytest.approx(0.1)


async def test_ticker_bounds_updates_and_the_final_update_survives_cancellation():
    rec = Recorder()

    async def stream(view: LiveRenderer) -> None:
        async with view:
            for i in range(10_000):
                view.append(f"t{i} ")
                await asyncio.sleep(0.002)

    view = LiveRenderer("markdown", refresh_hz=10, sink=rec)
    task = asyncio.create_task(stream(view))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 3 <= len(rec.bundles) <= 1 + 11 + 1  # placeholder + at most 10 Hz for ~1 s + final
    final, _ = rec.bundles[-1]
    assert final["text/markdown"].startswith("t0 t1 ") and final["text/markdown"].endswith("*[interrupted]*")
    assert view.finished and view not in LiveRenderer._live


def test_renderer_prints_tokens_outside_a_kernel():
    out = io.StringIO()
    view = LiveRenderer("markdown", out=out).start()  # no kernel in pytest: print mode
    view.append("Hel")
    assert out.getvalue() == "Hel"
    view.append("lo")
    view.finish("interrupted")
    assert out.getvalue() == "Hello\n[interrupted]\n" and view.updates == 0


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        ("markdown", "# Hi", {"text/markdown": "# Hi", "text/plain": "# Hi"}),
        ("text", "# Hi", {"text/plain": "# Hi"}),
        ("html", "<b>x</b>", {"text/html": "<b>x</b>", "text/plain": "<b>x</b>"}),
        ("code", "Here:\n```js\nlet a = 1;\n```\nDone.", {"text/markdown": "```js\nlet a = 1;\n```",
                                                          "text/plain": "Here:\n```js\nlet a = 1;\n```\nDone."}),
        ("code", "print(1)", {"text/markdown": "```python\nprint(1)\n```", "text/plain": "print(1)"}),
        ("json", "not json {", {"text/markdown": "```json\nnot json {\n```", "text/plain": "not json {"}),
    ],
)
def test_final_bundles(fmt, text, expected):
    assert render_bundle(text, fmt)[0] == expected


def test_json_answers_become_application_json_even_when_fenced():
    for text in ('{"result": 97}', '```json\n{"result": 97}\n```'):
        data, metadata = render_bundle(text, "json")
        assert data["application/json"] == {"result": 97} and json.loads(data["text/plain"]) == {"result": 97}
        assert metadata == {"application/json": {"expanded": True}}


def test_notes_errors_and_fences():
    assert render_bundle("", "markdown", note="interrupted")[0] == {"text/plain": "[interrupted]"}
    assert render_bundle("<i>", "html", note="stopped: X")[0]["text/html"].endswith("<em>stopped: X</em></p>")
    assert note_for(asyncio.CancelledError()) == "interrupted" and note_for(None) is None
    assert note_for(AuthenticationError("no")) == "stopped: AuthenticationError"
    bundle = error_bundle(AuthenticationError("Key <a> refused"))
    assert bundle["text/plain"] == "AuthenticationError: Key <a> refused" and "&lt;a&gt;" in bundle["text/html"]
    assert fence("a ``` b", "md") == "````md\na ``` b\n````"
    assert extract_code("no code here\n") == ("no code here", None)
    with pytest.raises(Exception, match="format"):
        LiveRenderer("pdf")


# ---- whole cells in the test shell, answered by a simulator -------------------------------------------
@pytest.fixture
def pointed(ip, monkeypatch, fast_sim):
    """The shell's %%llm pointed at the session's fast simulator with a key from the environment."""
    monkeypatch.setenv("NBLLM_TEST_KEY", GOOD_KEY)
    ip.run_line_magic("llm_config", f"base_url={fast_sim.base_url}/v1 api_key_env=NBLLM_TEST_KEY")
    return ip


def test_cell_streams_binds_output_and_sends_braces_intact(pointed, capsys):
    pointed.user_ns["question"] = "37 + 12 x 5"
    template = '请将以下表达式的计算结果返回为 JSON 格式：\n{\n  "expression": "{question}",\n  "result": ?\n}\n'
    result = pointed.run_cell(f"%%llm -o ans -f json\n{template}")
    assert result.success and result.result is None
    ans = pointed.user_ns["ans"]
    assert isinstance(ans, Response) and ans.finish_reason == "stop"
    assert json.loads(extract_code(ans.text)[0])["expression"] == "37 + 12 x 5"
    assert ans.text in capsys.readouterr().out
    # what was sent, as nbllm recorded it: the template's JSON braces exactly as written
    store = _magics(pointed).current_runner().store
    sent = json.loads(list(store.rows())[-1]["request_json"])
    assert sent["messages"][-1]["content"] == template.replace("{question}", "37 + 12 x 5")


def _magics(shell) -> NbllmMagics:
    return shell.magics_manager.registry["NbllmMagics"]


def test_chat_keeps_the_conversation_until_reset(pointed, capsys, monkeypatch):
    assert pointed.run_cell("%%llm -c -o first\nHello, how are you?").success
    assert pointed.run_cell("%%llm --chat\nTell me about rivers").success
    history = _magics(pointed).runner.history
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[1]["content"] == pointed.user_ns["first"].text
    pointed.run_cell("%llm chat")
    assert "Tell me about rivers" in capsys.readouterr().out
    captured = {}
    with monkeypatch.context() as patch:
        patch.setattr(_magics(pointed), "prepare", lambda line, body: captured.setdefault("prompt", body))
        pointed.run_cell("%llm chat about rivers")  # not the chat command: a prompt
    assert captured["prompt"] == "chat about rivers"
    pointed.run_cell("%llm  chat   reset ")
    assert not history and "cleared (4 messages)" in capsys.readouterr().out
    assert pointed.run_cell("%%llm -c --reset\nHello again").success and len(history) == 2


def test_code_format_offers_the_answer_as_next_input(pointed):
    pointed.rl_next_input = None
    assert pointed.run_cell("%%llm -f code -o c\nHello there").success
    assert pointed.rl_next_input == pointed.user_ns["c"].text.strip()


def test_line_form_and_status(pointed, capsys):
    assert pointed.run_cell("%llm -f text -o short -- Hello, how are you?").success
    assert pointed.user_ns["short"].text in capsys.readouterr().out
    status = pointed.run_cell("%llm status").result
    assert status[0]["alias"] == "key-1" and GOOD_KEY not in str(status) + status._repr_html_()


def test_blocking_bridge_when_autoawait_is_off(pointed, capsys):
    pointed.autoawait = False
    assert pointed.run_cell("%%llm -o blocked\nHello there").success
    assert pointed.user_ns["blocked"].text in capsys.readouterr().out
    assert pointed.run_cell("%%llm --no-stream -o whole\nTell me about rivers").success
    assert pointed.user_ns["whole"].text in capsys.readouterr().out


def test_nbllm_errors_are_one_short_message(ip, monkeypatch, make_sim, capsys):
    monkeypatch.setenv("NBLLM_BAD_KEY", BAD_KEY)
    with make_sim({GOOD_KEY: KeyProfile(alias="good")}) as sim:
        ip.run_line_magic("llm_config", f"base_url={sim.base_url}/v1 api_key_env=NBLLM_BAD_KEY")
        result = ip.run_cell("%%llm -o nothing\nHello")
    out = capsys.readouterr()
    assert result.success and "nothing" not in ip.user_ns  # shown, not raised
    assert re.search(r"^(AuthenticationError|NoKeyAvailableError): .*HTTP 401", out.out, re.MULTILINE)
    assert "Traceback" not in out.out + out.err
    assert BAD_KEY not in out.out + out.err


async def test_interrupt_keeps_partial_text_and_binds_it(pointed):
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=40.0)) as sim:
        pointed.run_line_magic("llm_config", f"base_url={sim.base_url}/v1")
        view_task = asyncio.ensure_future(_magics(pointed).cell_entry("-o part", "Write a few paragraphs about rivers, take 0"))
        await asyncio.sleep(1.0)
        view_task.cancel()
        with pytest.raises(GenerationInterrupted):
            await view_task
    part = pointed.user_ns["part"]
    assert part.finish_reason == "interrupted" and 10 < len(part.text) < 800


def test_run_blocking_cancels_the_engine_task_on_keyboard_interrupt():
    import _thread
    import threading

    cleaned = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.set()

    threading.Timer(0.3, _thread.interrupt_main).start()
    with pytest.raises(GenerationInterrupted):
        run_blocking(slow())
    assert cleaned.is_set()  # the final display update (here: the finally) ran before the cell ended
    assert run_blocking(asyncio.sleep(0, result=7)) == 7


def test_streaming_text_is_escaped_and_wraps_at_word_boundaries():
    bundle = streaming_bundle("<b>x</b> & more")
    assert bundle["text/plain"] == "<b>x</b> & more"
    assert "&lt;b&gt;x&lt;/b&gt; &amp; more" in bundle["text/html"] and "word-break: normal" in bundle["text/html"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a\nb", "a  \nb"),
        ("a\n\nb", "a\n\nb"),
        ("a  \nb", "a  \nb"),
        ("```\nx = 1\ny = 2\n```\nafter", "```\nx = 1\ny = 2\n```  \nafter"),
        ("- one\n- two", "- one  \n- two"),
        ("single line", "single line"),
    ],
)
def test_hard_line_breaks(text, expected):
    from nbllm._display.render import hard_line_breaks

    assert hard_line_breaks(text) == expected
