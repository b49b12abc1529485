"""ProgressDisplay: mode choice, throttling on a fake clock, text output, widget construction."""

from __future__ import annotations

import io
import sys
import time
import types
from typing import Any

import ipywidgets
import pytest

from nbllm._exceptions import ConfigurationError
from nbllm._progress.state import BatchProgress
from nbllm._progress.display import ProgressDisplay, in_notebook


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


KEY_ROWS = [
    {"alias": "key-1", "masked": "sk-…abcd", "provider": "openai", "state": "ready", "in_flight": 3,
     "done": 10, "rate_limited": 0, "tokens": 1200, "rpm": 500, "tpm": None},
    {"alias": "key-2", "masked": "sk-…wxyz", "provider": "openai", "state": "disabled: revoked",
     "in_flight": 0, "done": 0, "rate_limited": 0, "tokens": 0, "rpm": None, "tpm": None},
]


def writes(out: io.StringIO) -> int:
    return out.getvalue().count("\r")  # tqdm redraws a text bar with one "\r…" write


def test_text_mode_is_throttled() -> None:
    clock = FakeClock()
    progress = BatchProgress(total=1000, model="gpt-4o-mini", clock=clock)
    out = io.StringIO()
    display = ProgressDisplay(progress, lambda: KEY_ROWS, mode="text", refresh=0.5, file=out)
    display.start()
    after_start = writes(out)
    assert after_start == 1
    for _ in range(100):  # a burst: 100 items in 0.1 s, refresh after each
        clock.now += 0.001
        progress.item_done(ok=True, prompt_tokens=10, completion_tokens=5)
        display.refresh()
    assert writes(out) - after_start <= 2
    clock.now += 0.5
    display.refresh()
    assert writes(out) == after_start + 1
    line = out.getvalue().rsplit("\r", 1)[-1]
    assert "100/1000" in line and "ok=100" in line and "req/min" in line
    assert "key-1 ● 3 in flight 10 done │ key-2 ✗ revoked" in line
    display.refresh(force=True)
    assert writes(out) == after_start + 2


def test_text_close_pushes_final_state_and_summary() -> None:
    clock = FakeClock()
    progress = BatchProgress(total=3, clock=clock)
    out = io.StringIO()
    display = ProgressDisplay(progress, None, mode="text", file=out, desc="squares")
    display.start()
    for _ in range(3):
        progress.item_done(ok=True)
        display.refresh()  # all throttled
    assert "3/3" not in out.getvalue()
    clock.now += 0.2  # still inside the 0.5 s interval
    display.close()
    display.close()  # idempotent
    text = out.getvalue()
    assert "3/3" in text.rsplit("\r", 1)[-1]
    assert text.endswith("squares: 3/3 done in 0:00 · ✓3 ✗0 ⟲0 · 0 tokens · 900 req/min average\n")
    display.refresh(force=True)  # after close: nothing
    assert out.getvalue() == text


def test_close_not_final_has_no_summary() -> None:
    progress = BatchProgress(total=5, clock=FakeClock())
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with ProgressDisplay(progress, None, mode="text", file=out):
            progress.item_done(ok=True)
            raise KeyboardInterrupt
    assert "1/5" in out.getvalue() and "done in" not in out.getvalue()


def test_auto_mode_in_plain_pytest_is_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert not in_notebook()
    progress = BatchProgress(total=2)
    display = ProgressDisplay(progress, lambda: KEY_ROWS)
    assert display.mode == "none"
    display.start()
    progress.item_done(ok=True)
    display.refresh(force=True)
    display.close()
    assert capsys.readouterr() == ("", "")


def test_auto_mode_on_a_terminal_is_text() -> None:
    assert ProgressDisplay(BatchProgress(1), None, file=TTY()).mode == "text"


def test_unknown_mode_and_missing_ipywidgets(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="widget"):
        ProgressDisplay(BatchProgress(1), None, mode="fancy")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigurationError, match="pip install ipywidgets"):
        ProgressDisplay(BatchProgress(1), None, mode="widget")
    assert ProgressDisplay(BatchProgress(1), None, file=TTY()).mode == "text"


def test_in_notebook_detects_a_kernel_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert not in_notebook()
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(config={}))
    assert not in_notebook()  # terminal IPython: a shell without a kernel
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object(), config={}))
    assert in_notebook()
    assert ProgressDisplay(BatchProgress(1), None).mode == "widget"


class Shown:
    """A stand-in for IPython.display.display that records what would be shown."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *objs: Any) -> None:
        self.calls.append(objs)


def test_widget_mode_one_bar_and_one_html() -> None:
    clock = FakeClock()
    rows = [dict(KEY_ROWS[0])]
    progress = BatchProgress(total=4, model="gpt-4o-mini", clock=clock)
    shown = Shown()
    display = ProgressDisplay(progress, lambda: rows, mode="widget", refresh=0.1, display=shown)
    assert display.interval == 0.5  # widget refreshes are never faster than 2 Hz
    display.start()
    display.start()
    assert len(shown.calls) == 1
    (container, html), = shown.calls
    assert isinstance(container, ipywidgets.HBox) and isinstance(html, ipywidgets.HTML)
    bar = next(w for w in container.children if isinstance(w, ipywidgets.FloatProgress))
    assert bar.max == 4 and "key-1" in html.value

    html_changes: list[str] = []
    html.observe(lambda change: html_changes.append(change["new"]), names="value")
    progress.item_done(ok=True, prompt_tokens=10, completion_tokens=5)
    display.refresh()  # throttled
    assert bar.value == 0
    clock.now += 1
    display.refresh()
    assert bar.value == 1 and "ok=1" in container.children[2].value
    assert html_changes == []  # the key table did not change: no comm message for it
    rows[0]["done"] = 11
    clock.now += 1
    display.refresh()
    assert len(html_changes) == 1 and ">11<" in html.value

    for _ in range(3):
        progress.item_done(ok=True)
    display.close()
    assert bar.value == 4 and bar.bar_style == "success"
    assert "4/4 done in" in html.value and len(shown.calls) == 1


def test_widget_close_early_turns_red_and_keeps_numbers() -> None:
    progress = BatchProgress(total=10, clock=FakeClock())
    shown = Shown()
    display = ProgressDisplay(progress, None, mode="widget", display=shown)
    display.start()
    progress.item_done(ok=False)
    display.close(final=False)
    (container, html), = shown.calls
    bar = container.children[1]
    assert bar.value == 1 and bar.bar_style == "danger"
    assert "failed=1" in container.children[2].value
    assert html.value == ""  # no key table given, and no summary for an unfinished batch


def test_two_batches_have_their_own_widgets() -> None:
    shown = Shown()
    a = ProgressDisplay(BatchProgress(5, clock=FakeClock()), None, mode="widget", display=shown)
    b = ProgressDisplay(BatchProgress(7, clock=FakeClock()), None, mode="widget", display=shown)
    a.start()
    b.start()
    (bar_a, html_a), (bar_b, html_b) = shown.calls
    assert bar_a is not bar_b and html_a is not html_b
    assert bar_a.children[1].max == 5 and bar_b.children[1].max == 7
    a.close()
    b.close()


def test_throttled_refresh_is_cheap() -> None:
    progress = BatchProgress(total=100_000)
    display = ProgressDisplay(progress, lambda: KEY_ROWS, mode="text", refresh=3600, file=io.StringIO())
    display.start()
    started = time.perf_counter()
    for _ in range(100_000):
        display.refresh()
    assert time.perf_counter() - started < 0.2
    display.close()
