"""Stream one answer into ONE live output: throttled plain text while it arrives, formatted at the end.

```python
async with LiveRenderer("markdown") as view:
    async for chunk in llm.astream(prompt):
        view.append(chunk)
view.text                                   # everything that arrived
```

In a kernel the answer is one ``display(..., display_id=True)`` output that is updated in place: plain
text at most ``refresh_hz`` times a second (and only when it changed) while streaming, then ONE final
update rendered as markdown, text, code, json or html. Every token as its own message would exceed
Jupyter Server's iopub limit (``iopub_msg_rate_limit``, 1000 msg/s by default), which *drops* the
messages over it rather than queueing them; so all live renderers in
the process also share one update budget. The final update is always sent, also after an error or an
interrupt (then with a short note), so a saved notebook never keeps a stale half answer.

A ticker task drives the updates, and it matters even when nothing changes: an interrupt of a
top-level ``await`` is delivered as a cancellation that only lands when the kernel loop next wakes
(measured: 4.5 s late behind a 5 s sleep, 0.3 s with 0.1 s ticks), and the ticker wakes it.

Outside a kernel (terminal IPython, plain Python) the tokens are printed as they come instead.
``sink=`` replaces the display with any ``callable(data, metadata)`` taking MIME bundles (the
PromptPanel passes one that feeds a widget).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import sys
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, TextIO

from .._exceptions import ConfigurationError, NbllmError

__all__ = ["FORMATS", "DisplaySink", "LiveRenderer", "default_sink", "error_bundle", "extract_code", "render_bundle"]

FORMATS = ("markdown", "text", "code", "json", "html")

Bundle = dict[str, Any]
Sink = Callable[[Bundle, Bundle], None]

# Updates per second shared by every live renderer in the process: 20 streams still get 10 Hz each,
# 50 get 4 Hz; with the final updates this stays well under Jupyter Server's 1000 msg/s.
_SHARED_BUDGET = 200.0
# The ticker never sleeps longer than this, so an interrupt lands within about this long.
_MAX_TICK = 0.1
_PLACEHOLDER = "…"
_FENCE = re.compile(r"^(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^\1[ \t]*$", re.DOTALL | re.MULTILINE)


# ---- pure rendering ---------------------------------------------------------------------------------
def render_bundle(text: str, fmt: str, *, note: str | None = None,
                  language: str | None = None) -> tuple[Bundle, Bundle]:
    """The final ``(data, metadata)`` MIME bundle for ``text`` in ``fmt``, with an optional short note."""
    if fmt not in FORMATS:
        raise ConfigurationError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    plain = text + (("\n" if text else "") + f"[{note}]" if note else "")
    if fmt == "text" or (not text and note):
        return {"text/plain": plain}, {}
    if fmt == "html":
        suffix = f"<p><em>{html.escape(note)}</em></p>" if note else ""
        return {"text/html": text + suffix, "text/plain": plain}, {}
    if fmt == "json" and note is None:
        parsed = _parse_json(text)
        if isinstance(parsed, (dict, list)):
            pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
            return {"application/json": parsed, "text/plain": pretty}, {"application/json": {"expanded": True}}
    if fmt in ("json", "code"):
        code, found = extract_code(text)
        markdown = fence(code, "json" if fmt == "json" else (language or found or "python"))
    else:
        markdown = hard_line_breaks(text)
    if note:
        markdown += f"\n\n*[{note}]*"
    return {"text/markdown": markdown, "text/plain": plain}, {}


def hard_line_breaks(text: str) -> str:
    """Keep the model's single line breaks (verse, addresses) when Markdown would join the lines.

    Chat interfaces show a model's newlines as written; Markdown turns a lone newline into a space. Two
    trailing spaces make it a hard break; fenced code blocks are left alone.
    """
    out: list[str] = []
    in_fence = False
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not in_fence and line.strip() and following.strip() and not line.endswith(("  ", "\\")):
            line += "  "
        out.append(line)
    return "\n".join(out)


_STREAMING_PRE = (
    '<pre style="white-space: pre-wrap; word-break: normal; overflow-wrap: anywhere; '
    'font-family: var(--jp-content-font-family, inherit); margin: 0">{}</pre>'
)


def streaming_bundle(text: str) -> Bundle:
    """What is shown while tokens arrive: escaped preformatted text, cheap to re-render in the browser.

    An HTML ``<pre>`` rather than bare text/plain: JupyterLab breaks plain output mid-word
    (``word-break: break-all``), which makes a streaming answer jump as it grows.
    """
    plain = text or _PLACEHOLDER
    return {"text/html": _STREAMING_PRE.format(html.escape(plain)), "text/plain": plain}


def extract_code(text: str) -> tuple[str, str | None]:
    """``(code, language)`` of the first fenced block in ``text``, or ``(text, None)`` when there is none."""
    match = _FENCE.search(text)
    if match is None:
        return text.strip("\n"), None
    return match.group(3).rstrip("\n"), match.group(2) or None


def fence(code: str, language: str) -> str:
    """A fenced markdown block whose fence is longer than any run of backticks inside ``code``."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{language}\n{code}\n{ticks}"


def _parse_json(text: str) -> Any:
    """The JSON value in ``text`` (bare or in a fenced block), or None when it is not valid JSON."""
    for candidate in (text, extract_code(text)[0]):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def error_bundle(error: BaseException) -> Bundle:
    """A short red message for an nbllm error (its message already says what to do), not a traceback."""
    name = type(error).__name__
    message = str(error) or name
    styled = (
        '<div style="color:#c62828;border-left:3px solid #c62828;padding:2px 8px;white-space:pre-wrap">'
        f"<b>{html.escape(name)}</b>: {html.escape(message)}</div>"
    )
    return {"text/html": styled, "text/plain": f"{name}: {message}"}


def note_for(exc: BaseException | None) -> str | None:
    """The short note shown under a partial answer, by how the answer ended."""
    if exc is None:
        return None
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        return "interrupted"
    if isinstance(exc, NbllmError):
        return f"stopped: {type(exc).__name__}"
    return "stopped by an error"


# ---- sinks ------------------------------------------------------------------------------------------
class DisplaySink:
    """One ``display(..., display_id=True)`` created on the first bundle and updated in place after."""

    __slots__ = ("handle",)

    def __init__(self) -> None:
        self.handle: Any = None

    def __call__(self, data: Bundle, metadata: Bundle) -> None:
        from IPython.display import display

        if self.handle is None:
            self.handle = display(data, metadata=metadata, raw=True, display_id=True)
        else:
            self.handle.update(data, metadata=metadata, raw=True)


def default_sink() -> Sink | None:
    """A display sink inside a Jupyter kernel; None (print tokens) in a terminal or plain Python."""
    from .._progress import in_notebook

    return DisplaySink() if in_notebook() else None


# ---- the live renderer ------------------------------------------------------------------------------
class LiveRenderer:
    """One live view of one streamed answer; see the module docstring for the usage.

    ``fmt``: the final format (markdown, text, code, json, html). ``refresh_hz``: most updates a second
    while streaming. ``sink``: where bundles go (default: a display in a kernel, else print tokens).
    ``out``: the stream tokens are printed to when there is no sink (default ``sys.stdout``).
    Without ``async with``: ``start()``, ``append()``, ``refresh()`` from your own timer, ``finish()``.
    """

    # every renderer still streaming in this process; they share _SHARED_BUDGET updates a second
    _live: ClassVar[weakref.WeakSet[LiveRenderer]] = weakref.WeakSet()

    def __init__(self, fmt: str = "markdown", *, refresh_hz: float = 10.0, language: str | None = None,
                 sink: Sink | None = None, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if fmt not in FORMATS:
            raise ConfigurationError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
        if refresh_hz <= 0:
            raise ConfigurationError(f"refresh_hz must be positive, got {refresh_hz}.")
        self.fmt, self.refresh_hz, self.language = fmt, refresh_hz, language
        self._sink = sink if sink is not None else default_sink()
        self._out = out
        self._clock = clock
        self._chunks: list[str] = []  # appended pieces, joined lazily when text is read
        self._shown = ""  # the text of the last bundle sent, to skip updates that change nothing
        self._last_push = float("-inf")
        self._ticker: asyncio.Task[None] | None = None
        self.started = self.finished = False
        self.updates = 0  # bundles sent to the sink (tests and benchmarks read it)

    def __repr__(self) -> str:
        state = "finished" if self.finished else ("streaming" if self.started else "new")
        return f"<LiveRenderer {self.fmt} {state} chars={len(self.text)} updates={self.updates}>"

    @property
    def text(self) -> str:
        """Everything appended so far."""
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    @property
    def interval(self) -> float:
        """Seconds between streaming updates: ``1/refresh_hz``, longer when many renderers are live."""
        return max(1.0 / self.refresh_hz, len(self._live) / _SHARED_BUDGET)

    def start(self) -> LiveRenderer:
        """Show the (empty) output now, so the answer has its place before the first token."""
        if not self.started:
            self.started = True
            self._live.add(self)
            self._push(streaming_bundle(""), {})
        return self

    def append(self, chunk: str) -> None:
        """Add a piece of the answer; shown by the next ``refresh`` (printed at once outside a kernel)."""
        if not chunk:
            return
        self._chunks.append(chunk)
        if self._sink is None:
            out = self._out or sys.stdout
            out.write(chunk)
            out.flush()

    def refresh(self) -> bool:
        """Send a plain-text update if the text changed and the interval has passed; True if sent."""
        if self._sink is None or self.finished:
            return False
        now = self._clock()
        text = self.text
        # a little slack: the ticker sleeps exactly one interval and timers may fire a hair early
        if text == self._shown or now - self._last_push < self.interval * 0.95:
            return False
        self._shown, self._last_push = text, now
        self._push(streaming_bundle(text), {})
        return True

    def finish(self, note: str | None = None) -> None:
        """Send the one final update in the chosen format (idempotent); ``note`` e.g. ``"interrupted"``."""
        if self.finished:
            return
        self.start()
        self.finished = True
        self._live.discard(self)
        if self._sink is None:
            out = self._out or sys.stdout
            newline = "\n" if self.text else ""
            out.write(f"{newline}[{note}]\n" if note else newline)
            out.flush()
            return
        data, metadata = render_bundle(self.text, self.fmt, note=note, language=self.language)
        self._push(data, metadata)

    def _push(self, data: Bundle, metadata: Bundle) -> None:
        if self._sink is not None:
            self._sink(data, metadata)
            self.updates += 1

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(min(self.interval, _MAX_TICK))
            self.refresh()

    async def __aenter__(self) -> LiveRenderer:
        self.start()
        self._ticker = asyncio.create_task(self._tick(), name="nbllm-live-renderer")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._ticker is not None:
            # not awaited: after an interrupt this task is being cancelled, and the ticker holds nothing
            self._ticker.cancel()
            self._ticker = None
        self.finish(note_for(exc))
