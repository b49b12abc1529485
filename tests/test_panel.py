"""PromptPanel without a frontend: real LLMs against the embedded simulator, widgets without a kernel.

The simulator answers after about 0.25 s at 60 tokens/s, so the answers here take real time (a few
seconds in all); that is what lets the tests measure the update rate and the Stop latency.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import nbllm
from nbllm import LLM, PromptPanel
from nbllm._display.html import answer_html, history_html, markdown_to_html, stats_html
from nbllm._types import Response, Usage

HELLO = "Hello, how are you?"
LONG = "Write a long essay about rivers [[sim:slow]]"  # about 140 tokens, the last fifth slower
MEDIUM = "Tell me about rivers in Europe"  # about 150 tokens: 2.5 s at the simulator's pace


class RecordPrompts(nbllm.BaseCallbackHandler):
    """Keeps the text of every prompt sent (all messages joined), as on_llm_start receives it."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def on_llm_start(self, serialized, prompts, **kwargs) -> None:
        self.prompts.extend(prompts)


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# ---- one answer -----------------------------------------------------------------------------------
async def test_send_streams_then_renders_markdown_and_records_the_turn():
    panel = PromptPanel(LLM())
    response = await panel.send(HELLO)
    assert isinstance(response, Response) and response.text
    assert panel.answer == response.text and not panel.busy and panel.error == ""
    final = panel.answer_view.value
    assert "jp-RenderedHTMLCommon" in final and final.count("<p>") >= 1  # rendered markdown, not <pre>
    assert "How are you" in final or "thank" in final.lower()
    assert panel.history == [{"role": "user", "content": HELLO}, {"role": "assistant", "content": response.text}]
    stats = panel.stats_view.value
    assert f"{response.usage.completion_tokens} tokens" in stats and "tokens/s" in stats
    assert "key simulator" in stats and "first token" in stats


async def test_the_next_send_includes_the_conversation_and_the_settings():
    recorder = RecordPrompts()
    panel = PromptPanel(LLM(callbacks=[recorder]), system="Be brief.", temperature=0.2, max_tokens=50)
    first = await panel.send(HELLO)
    await panel.send("And what about rivers?")
    assert recorder.prompts[1].split("\n") == ["Be brief.", HELLO, first.text, "And what about rivers?"]
    assert len(panel.history) == 4
    assert "1 turn" in panel.history_view.value and "Hello, how are you?" in panel.history_view.value
    assert "And what about rivers?" in panel.question_view.value


async def test_settings_are_traits_linked_to_the_controls():
    panel = PromptPanel(LLM("gpt-4o-mini", temperature=0.3), models=["gpt-4o"])
    assert panel.model_box.options == ("gpt-4o-mini", "gpt-4o")
    assert (panel.model, panel.temperature, panel.max_tokens) == ("gpt-4o-mini", 0.3, 1024)
    panel.temperature_box.value = 1.1  # as if dragged in the browser
    panel.max_tokens = 77
    assert panel.temperature == 1.1 and panel.max_tokens_box.value == 77
    panel.model_box.value = "gpt-4o"
    response = await panel.send(HELLO)
    assert response.model == "gpt-4o"  # a sibling LLM for the other model, same keys
    assert "PromptPanel gpt-4o idle, 1 turns" in repr(panel)


# ---- Stop, rate, errors -------------------------------------------------------------------------------
async def test_stop_cancels_quickly_and_keeps_the_partial_text_marked_stopped():
    panel = PromptPanel(LLM())
    task = panel.send(LONG)
    assert panel.busy and panel.send_button.disabled and not panel.stop_button.disabled
    await wait_for(lambda: len(panel.answer) > 80)
    started = time.monotonic()
    panel.stop()
    response = await asyncio.wait_for(task, 2)
    latency = time.monotonic() - started
    assert latency < 0.5, latency
    assert response.finish_reason == "stopped" and not panel.busy
    assert response.text.startswith(panel.answer[:80]) and len(response.text) < 700  # partial, not the whole
    assert "(stopped)" in panel.answer_view.value and "jp-RenderedHTMLCommon" in panel.answer_view.value
    assert "stopped after" in panel.stats_view.value
    assert panel.history[-1] == {"role": "assistant", "content": response.text}
    assert not panel.send_button.disabled and panel.stop_button.disabled


async def test_answer_updates_are_throttled_to_about_ten_a_second():
    panel = PromptPanel(LLM())
    stamps: list[float] = []
    panel.answer_view.observe(lambda change: stamps.append(time.monotonic()), "value")
    started = time.monotonic()
    response = await panel.send(MEDIUM)
    duration = time.monotonic() - started
    assert duration > 1.5, duration  # a real stream, or the bound below proves nothing
    assert len(stamps) <= 10 * duration + 3, (len(stamps), duration)
    assert len(stamps) >= 8  # ... and it did stream: many intermediate states, not one final update
    assert response.usage.completion_tokens > len(stamps)  # fewer updates than tokens


async def test_an_error_is_a_short_red_line_and_the_panel_stays_usable():
    panel = PromptPanel(LLM())
    assert await panel.send("Hello [[sim:stream_error]]") is None
    assert panel.error.startswith("StreamInterruptedError") and not panel.busy
    assert "#c62828" in panel.error_view.value and "StreamInterruptedError" in panel.error_view.value
    assert panel.history == []
    assert (await panel.send(HELLO)).text and panel.error == "" and panel.error_view.value == ""


async def test_send_refuses_an_empty_prompt_and_a_second_answer():
    panel = PromptPanel(LLM())
    with pytest.raises(nbllm.ConfigurationError):
        panel.send("   ")
    panel.send_button.click()  # the empty prompt box: a red line, no exception
    assert "empty" in panel.error_view.value and not panel.busy
    task = panel.send(LONG)
    with pytest.raises(nbllm.NbllmError, match="still answering"):
        panel.send(HELLO)
    panel.stop()
    await task


# ---- buttons and callbacks ----------------------------------------------------------------------------
async def test_buttons_drive_the_panel_like_clicks_in_the_browser():
    panel = PromptPanel(LLM())
    answers: list[Response] = []
    panel.on_answer(answers.append)
    panel.prompt_box.value = HELLO
    panel.send_button.click()
    assert panel.busy and panel.prompt == ""  # the question moved up, like a chat box
    await wait_for(lambda: not panel.busy)
    assert len(answers) == 1 and answers[0].text == panel.answer
    panel.on_answer(answers.append, remove=True)
    panel.prompt = LONG
    panel.send_button.click()
    await wait_for(lambda: panel.answer != "")
    panel.stop_button.click()
    await wait_for(lambda: not panel.busy, timeout=0.5)
    assert len(answers) == 1  # unregistered
    panel.clear_button.click()
    assert panel.history == [] and panel.answer == "" and panel.answer_view.value == ""


def test_send_without_a_running_loop_runs_on_the_engine_and_stops_from_this_thread():
    panel = PromptPanel(LLM())
    future = panel.send(HELLO)  # a plain script: no loop is running here
    response = future.result(10)
    assert response.text == panel.answer and len(panel.history) == 2
    future = panel.send(LONG)
    deadline = time.monotonic() + 10
    while len(panel.answer) < 40:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    panel.stop()  # another thread than the engine's: the cancel is handed to the engine loop
    assert future.result(2).finish_reason == "stopped"
    assert time.monotonic() - started < 0.5 and "(stopped)" in panel.answer_view.value


def test_panel_is_exported_lazily_and_displays_as_a_widget():
    assert nbllm.PromptPanel is PromptPanel
    panel = PromptPanel(LLM())
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("<PromptPanel")
    assert "nbllm-panel" in panel._dom_classes


# ---- pure formatting ----------------------------------------------------------------------------------
def test_markdown_is_rendered_and_raw_html_escaped():
    rendered = markdown_to_html("# Rivers\n\n**Long** rivers\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<h1>Rivers</h1>" in rendered and "<strong>Long</strong>" in rendered and "<table>" in rendered
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered


def test_streaming_html_is_escaped_plain_text_and_notes_show_in_parentheses():
    streaming = answer_html({"text/plain": "a <b> & **c**"})
    assert "a &lt;b&gt; &amp; **c**" in streaming and "white-space:pre-wrap" in streaming
    assert "(stopped)" in answer_html({"text/markdown": "partial"}, note="stopped")


def test_stats_and_history_formatting():
    response = Response("x", Usage(5, 40), model="gpt-4o-mini", latency=1.25, time_to_first_token=0.25,
                       key_alias="team-a")
    assert stats_html(response).count("·") == 5
    assert "40 tokens · 40.0 tokens/s · first token 0.25 s · 1.25 s · key team-a · gpt-4o-mini" in stats_html(response)
    assert history_html([]) == ""
    long_answer = "word " * 200
    compact = history_html([{"role": "user", "content": "q"}, {"role": "assistant", "content": long_answer}])
    assert "(1 turn)" in compact and "…" in compact and len(compact) < 1000


def test_history_shows_the_latest_turns_compactly():
    messages = [{"role": role, "content": f"{role} {i}"} for i in range(5) for role in ("user", "assistant")]
    compact = history_html(messages)
    assert "(5 turns)" in compact and "… 2 earlier turns" in compact
    assert "user 4" in compact and "user 2" in compact and "user 1" not in compact


async def test_clear_during_an_answer_stops_it_and_nothing_comes_back():
    panel = PromptPanel(LLM())
    await panel.send(HELLO)
    task = panel.send(LONG)
    await wait_for(lambda: len(panel.answer) > 40)
    panel.clear()
    response = await task
    assert response.finish_reason == "stopped" and not panel.busy
    assert panel.history == [] and panel.answer_view.value == "" and panel.stats_view.value == ""
