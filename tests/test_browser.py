"""nbllm in a real JupyterLab, driven in headless Chromium: ``%%llm`` and the PromptPanel stream visibly.

The recipe: ``jupyter lab`` on loopback with a token and a temporary root, Debian's Chromium through
Playwright (never ``playwright install``, which would download a browser of its own; Chromium runs with
the background-networking flags off so it does not keep dialling hosts a closed network refuses), cells
run with Shift+Enter. The kernel has no key, so it answers from nbllm's embedded simulator (about 0.25 s to the
first token, then 60 tokens/s). A MutationObserver inside the page records every change of the output,
because polling from Python is too slow to see 10 Hz updates. Screenshots go to ``test-output/``
(git-ignored); the ones the README shows are copied to ``docs/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[1]
OUT, DOCS = REPO / "test-output", REPO / "docs"
TOKEN = "nbllm-browser-test-token"

MAGIC_PROMPT = "Write a few paragraphs about rivers, take 0"  # 151 tokens: about 2.5 s
PANEL_FIRST = "Hello, how are you?"
PANEL_PROMPT = "Tell me about rivers in Europe"  # about 150 tokens
STOP_PROMPT = "Write a long essay about rivers [[sim:slow]]"
# %llm status shows the key pool; it also resolves it, so the "answers come from the simulator" notice
# lands in this first cell and not in the middle of the streamed answer
COMPARE_MODELS = "gpt-4o-mini,anthropic:claude-haiku-4-5"
CELLS = ["%load_ext nbllm\n%llm status", f"%%llm\n{MAGIC_PROMPT}", "import nbllm\n\npanel = nbllm.PromptPanel()\npanel",
         f"%%llm -m {COMPARE_MODELS} -o both\n{PANEL_PROMPT}"]

# Records every distinct text of one element (found again on each mutation, since outputs are replaced)
# and whether the "final" element is present yet; the observer is installed before the cell runs.
RECORD_JS = """([root, textSel, finalSel]) => {
  const rootEl = typeof root === 'number' ? document.querySelectorAll('.jp-Notebook .jp-Cell')[root]
                                          : document.querySelector(root);
  const rec = window.__nbllmRecord = [];
  const sample = () => {
    const el = rootEl.querySelector(textSel);
    const text = el ? el.innerText.trim() : '';
    const last = rec[rec.length - 1];
    const final = !!rootEl.querySelector(finalSel);
    if (!last || last.text !== text || last.final !== final) rec.push({t: performance.now(), text, final});
  };
  if (window.__nbllmObserver) window.__nbllmObserver.disconnect();
  window.__nbllmObserver = new MutationObserver(sample);
  window.__nbllmObserver.observe(rootEl, {subtree: true, childList: true, characterData: true, attributes: true});
  sample();
}"""


# the recording shows this answer streaming and then final
ANSWERED_JS = """() => {
  const rec = window.__nbllmRecord || [];
  const start = rec.findIndex(state => !state.final);
  return start >= 0 && rec.slice(start).some(state => state.final);
}"""


@dataclass
class Lab:
    port: int
    root: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={TOKEN}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_notebook(path: Path) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    # a kernelspec in the metadata: JupyterLab starts the kernel without asking which one
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def _lab_env(base: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment: no keys, a fresh store, no user config."""
    env = {name: value for name, value in os.environ.items()
           if "API_KEY" not in name and not name.endswith("BASE_URL") and not name.startswith("NBLLM_")}
    settings = base / "lab-settings"
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    # no "receive official Jupyter news?" toast, no update check: nothing on top of the screenshots
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    for name, folder in (("JUPYTERLAB_SETTINGS_DIR", settings), ("JUPYTERLAB_WORKSPACES_DIR", base / "workspaces"),
                         ("JUPYTER_CONFIG_DIR", base / "config"), ("JUPYTER_RUNTIME_DIR", base / "runtime"),
                         ("IPYTHONDIR", base / "ipython")):
        folder.mkdir(exist_ok=True)
        env[name] = str(folder)
    env["NBLLM_STORE"] = str(base / "store.sqlite3")
    return env


def _wait_for_server(lab: Lab, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}; see {lab.root.parent}/lab.log")
        try:
            with urllib.request.urlopen(lab.url("api/status"), timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("jupyter lab did not answer within 90 s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    """``jupyter lab`` on a free loopback port, serving a temporary folder with the test notebook."""
    pytest.importorskip("jupyterlab")
    pytest.importorskip("nbformat")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    base = tmp_path_factory.mktemp("browser")
    root = base / "root"
    root.mkdir()
    _write_notebook(root / "nbllm-demo.ipynb")
    lab = Lab(_free_port(), root)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={lab.port}",
               f"--ServerApp.token={TOKEN}", "--allow-root", f"--ServerApp.root_dir={root}",
               "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(base / "lab.log", "wb") as log:
        process = subprocess.Popen(command, env=_lab_env(base), cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_server(lab, process)
        yield lab
    finally:
        process.terminate()  # Jupyter shuts its kernels down on SIGTERM
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def page(lab) -> Iterator[Any]:
    """The test notebook open in headless Chromium, its kernel started and idle."""
    sync_api = pytest.importorskip("playwright.sync_api")
    OUT.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 1100}, device_scale_factor=1.5)
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(lab.url("lab/tree/nbllm-demo.ipynb"))
            page.wait_for_selector(".jp-Notebook .jp-Cell .jp-InputArea-editor")
            wait_idle(page)
            _dismiss_news(page)
            page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the notebook gets the width
            yield page
        finally:
            browser.close()


# window.jupyterapp exists with --LabApp.expose_app_in_browser: the session itself says when its kernel
# is connected and idle (the toolbar indicator can read "idle" before the kernel is even connected,
# and a cell run then is silently dropped)
KERNEL_IDLE_JS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = widget && widget.sessionContext && widget.sessionContext.session
                 && widget.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


def wait_idle(page: Any, timeout: float = 60_000) -> None:
    """Until the notebook's kernel is connected and idle."""
    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout)


def _dismiss_news(page: Any) -> None:
    # the settings file should have prevented it; click "No" if a toast asks anyway
    button = page.locator(".jp-toast-button", has_text="No")
    if button.count():
        button.first.click()


def run_cell(page: Any, index: int) -> Any:
    """Click into cell ``index``'s editor and press Shift+Enter; returns the cell's locator.

    Checks that the cell was taken (its prompt turns ``[*]:`` or gets a count) and presses again once
    if not, so a run that JupyterLab dropped does not cost a 60 s timeout.
    """
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt").first
    for _ in range(2):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if re.fullmatch(r"\[(\*|\d+)\]:", prompt.inner_text().strip()):
                return cell
            time.sleep(0.05)
    return cell


def wait_executed(cell: Any, timeout: float = 60.0) -> None:
    """Until the cell's prompt shows its execution count (``[3]:``, not ``[*]:``): it ran to the end."""
    prompt = cell.locator(".jp-InputPrompt").first
    deadline = time.monotonic() + timeout
    while not re.fullmatch(r"\[\d+\]:", prompt.inner_text().strip()):
        if time.monotonic() > deadline:
            cell.page.screenshot(path=str(OUT / "failure.png"))
            raise AssertionError(f"the cell did not finish: {prompt.inner_text()!r}; see test-output/failure.png")
        time.sleep(0.1)


def streaming_states(record: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded states with some answer text, between the previous final rendering (the panel's
    earlier answer, if any) and this answer's final rendering."""
    states: list[dict[str, Any]] = []
    started = False
    for state in record:
        if state["final"]:
            if started:
                break
            continue
        started = True
        if len(state["text"]) > 3:  # skip the empty output and the "…" placeholder
            states.append(state)
    return states


def assert_streamed(record: list[dict[str, Any]], final_text: str) -> dict[str, float]:
    """At least 3 growing plain-text states over a second or more, then the final rendering."""
    states = streaming_states(record)
    lengths = [len(state["text"]) for state in states]
    assert len(states) >= 3, f"only {len(states)} streaming states: {lengths}"
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1], lengths
    assert final_text.startswith(states[0]["text"][:20]), (states[0]["text"][:40], final_text[:40])
    assert record[-1]["final"], "the final rendering never appeared"
    span = (states[-1]["t"] - states[0]["t"]) / 1000
    rate = (len(states) - 1) / span if span > 0 else float("inf")
    assert span > 0.8, f"all text arrived within {span:.2f} s: a burst, not a stream"
    assert rate <= 12, f"{rate:.1f} updates/s while streaming"
    return {"states": len(states), "seconds": span, "rate": rate}


# the %%llm cell's preformatted output while it streams ('' before it exists)
MAGIC_OUTPUT_TEXT_JS = ("(document.querySelectorAll('.jp-Notebook .jp-Cell')[1]"
                        ".querySelector(\".jp-OutputArea-output[data-mime-type='text/html'] pre\") || {innerText: ''})"
                        ".innerText")


def record(page: Any, root: int | str, text_selector: str, final_selector: str) -> None:
    page.evaluate(RECORD_JS, [root, text_selector, final_selector])


def recorded(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("window.__nbllmRecord")


def _save(locator: Any, name: str, readme_name: str | None = None) -> Path:
    """Screenshot one element into test-output/ (and docs/ under ``readme_name``)."""
    path = OUT / name
    box = locator.bounding_box()
    # 3 px less at the bottom: the next cell's blue "active" border touches this cell's box
    clip = {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"] - 3}
    locator.page.screenshot(path=str(path), clip=clip)
    if readme_name and os.environ.get("NBLLM_UPDATE_SCREENSHOTS"):  # the README's copies change on request only
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / readme_name)
    return path


# ---- the tests ----------------------------------------------------------------------------------------
def test_llm_magic_streams_into_the_cell_then_renders_markdown(page):
    wait_executed(run_cell(page, 0))
    wait_idle(page)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
    record(page, 1, ".jp-OutputArea-output[data-mime-type='text/html'] pre", ".jp-RenderedMarkdown")
    run_cell(page, 1)
    streaming = cell.locator(".jp-OutputArea-output[data-mime-type='text/html'] pre")
    page.wait_for_function(f"() => ({MAGIC_OUTPUT_TEXT_JS}).length > 250", timeout=30_000)
    _save(cell, "llm-magic-streaming.png")  # preformatted text while it streams (only for looking at)
    assert streaming.count() == 1
    rendered = cell.locator(".jp-RenderedMarkdown.jp-RenderedHTMLCommon p").first
    rendered.wait_for(timeout=30_000)
    wait_executed(cell)
    final_text = cell.locator(".jp-RenderedMarkdown").inner_text().strip()
    assert "rivers" in final_text and len(final_text) > 500
    numbers = assert_streamed(recorded(page), final_text)
    print(f"%%llm: {numbers}")
    _save(cell, "llm-magic.png", "llm-magic.png")


def test_prompt_panel_streams_the_answer_and_shows_stats(page):
    cell = run_cell(page, 2)
    panel = cell.locator(".nbllm-panel")
    panel.locator(".nbllm-panel-send-button").wait_for()
    wait_executed(cell)
    _ask(page, panel, PANEL_FIRST)
    panel.locator(".nbllm-panel-answer-view .jp-RenderedHTMLCommon").wait_for(timeout=30_000)
    panel.locator(".nbllm-panel-send-button:not([disabled])").wait_for()

    record(page, ".nbllm-panel", ".nbllm-panel-answer-view", ".nbllm-panel-answer-view .nbllm-final")
    _ask(page, panel, PANEL_PROMPT)
    page.wait_for_function(ANSWERED_JS, timeout=30_000)  # the earlier answer is final too: wait for this one
    page.wait_for_function("() => document.querySelector('.nbllm-panel-stats-view').innerText.includes('key ')")
    final = panel.locator(".nbllm-panel-answer-view .nbllm-final")
    stats = panel.locator(".nbllm-panel-stats-view")
    assert "key simulator" in stats.inner_text() and " tokens" in stats.inner_text()
    final_text = final.inner_text().strip()
    assert "rivers in Europe" in final_text
    numbers = assert_streamed(recorded(page), final_text)
    print(f"panel: {numbers}")
    assert "1 turn" in panel.locator(".nbllm-panel-history-view").inner_text()
    page.mouse.move(0, 0)  # no hover highlight in the picture
    _save(panel, "prompt-panel.png", "prompt-panel.png")


def test_prompt_panel_stop_button_keeps_the_partial_answer(page):
    panel = page.locator(".nbllm-panel")
    panel.locator(".nbllm-panel-send-button:not([disabled])").wait_for()
    _ask(page, panel, STOP_PROMPT)
    page.wait_for_function("() => (document.querySelector('.nbllm-panel-answer-view .nbllm-streaming')"
                           " || {innerText: ''}).innerText.length > 150", timeout=30_000)
    started = time.monotonic()
    panel.locator(".nbllm-panel-stop-button").click()
    panel.locator(".nbllm-panel-answer-view .nbllm-note", has_text="(stopped)").wait_for(timeout=5_000)
    latency = time.monotonic() - started
    print(f"Stop in the browser: {latency:.2f} s from click to '(stopped)' on screen")
    assert latency < 2.0  # click -> kernel -> cancel -> final update -> rendered: well under 0.5 s kernel-side
    assert "stopped after" in panel.locator(".nbllm-panel-stats-view").inner_text()
    partial = panel.locator(".nbllm-panel-answer-view .nbllm-final").inner_text().strip()
    assert len(partial) > 150 and "rivers" in partial  # the partial answer stays, rendered
    _save(panel, "prompt-panel-stopped.png")


def _ask(page: Any, panel: Any, prompt: str) -> None:
    box = panel.locator(".nbllm-panel-prompt-box textarea")
    box.fill(prompt)  # an input event: the Textarea syncs its value to the kernel before the click
    panel.locator(".nbllm-panel-send-button").click()


# ---- models side by side ------------------------------------------------------------------------------
FIRST_COLUMN = ".nbllm-compare-column:first-child .nbllm-compare-answer"


def test_models_side_by_side_stream_in_columns(page):
    panel = page.locator(".nbllm-panel")
    panel.locator(".nbllm-panel-send-button:not([disabled])").wait_for()  # the panel's last answer is over
    cell = page.locator(".jp-Notebook .jp-Cell").nth(3)
    record(page, 3, FIRST_COLUMN, ".nbllm-compare-final")
    run_cell(page, 3)
    cell.locator(".nbllm-compare-final").wait_for(timeout=30_000)
    wait_executed(cell)
    columns = cell.locator(".nbllm-compare-column")
    assert columns.count() == 2
    assert [columns.nth(i).locator(".nbllm-compare-model").inner_text().strip() for i in range(2)] == \
        COMPARE_MODELS.split(",")
    texts = [columns.nth(i).locator(".nbllm-compare-answer").inner_text().strip() for i in range(2)]
    assert all("rivers in Europe" in text for text in texts)
    for i in range(2):
        stats = columns.nth(i).locator(".nbllm-compare-stats").inner_text()
        assert "first token" in stats and "tokens/s" in stats and "$" in stats, stats
    numbers = assert_streamed(recorded(page), texts[0])
    print(f"compare: {numbers}")
    _save(cell, "compare.png", "compare.png")


def test_panel_compare_toggle_streams_two_columns(page):
    panel = page.locator(".nbllm-panel")
    panel.scroll_into_view_if_needed()
    panel.locator(".nbllm-panel-compare-toggle").click()
    panel.locator(".nbllm-panel-compare-model input").wait_for()  # the "with" box appears
    record(page, ".nbllm-panel", f".nbllm-panel-answer-view {FIRST_COLUMN}", ".nbllm-panel-answer-view .nbllm-compare-final")
    _ask(page, panel, PANEL_PROMPT)
    panel.locator(".nbllm-panel-answer-view .nbllm-compare-final").wait_for(timeout=30_000)
    columns = panel.locator(".nbllm-panel-answer-view .nbllm-compare-column")
    assert columns.count() == 2
    assert "gpt-4o" in columns.nth(1).locator(".nbllm-compare-model").inner_text()
    numbers = assert_streamed(recorded(page), columns.nth(0).locator(".nbllm-compare-answer").inner_text().strip())
    print(f"panel compare: {numbers}")
    page.mouse.move(0, 0)
    _save(panel, "prompt-panel-compare.png")
