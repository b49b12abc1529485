"""``PromptPanel``: a prompt box in a notebook whose answer streams in below it.

```python
panel = nbllm.PromptPanel(model="gpt-4o-mini", system="Answer in one paragraph.")
panel                                      # shows it: type a prompt, click Send (Stop, Clear)
response = await panel.send("Hello, how are you?")   # or drive it from code
panel.history                              # [{"role": "user", ...}, {"role": "assistant", ...}]
panel.on_answer(lambda response: print(response.usage))
panel.compare_toggle.value = True          # "Compare": the next prompt also goes to compare_model_box's model
```

Send runs the answer as an asyncio task on the loop that is running (the kernel's), so the kernel is
idle while the answer streams and the Stop click reaches the kernel (widget messages are handled
while it is idle, not while a cell blocks); Stop cancels the task, which cancels the request on nbllm's
engine.
The answer goes through the same ``LiveRenderer`` as ``%%llm``: at most ``refresh_hz`` updates a second
of escaped plain text while it arrives (sharing one process-wide update budget with every other live
answer), then one update with the rendered markdown (``nbllm._display.html``). Every update of a widget is a
comm message carrying its whole value, so per-token updates would exceed Jupyter Server's iopub limit.

The panel's public state is traitlets on the Python side (``answer``, ``busy``, ``prompt``, ``model``…),
linked to its controls. They are deliberately not ``sync=True``: the child widgets already carry what
the browser shows, and syncing ``answer`` too would send every update's full text twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Union

import ipywidgets as widgets
from ipywidgets.widgets.widget import CallbackDispatcher
from traitlets import Bool, Float, Int, Unicode, link, observe

from .. import _engine
from .._call import CallRunner, LLMSettings
from .._display import (
    LiveRenderer,
    answer_html,
    error_bundle,
    history_html,
    live_stats_html,
    question_html,
    stats_html,
)
from .._exceptions import ConfigurationError, NbllmError
from .._types import Message, Response, Usage
from .compare import CompareMode

__all__ = ["DEFAULT_MODELS", "PromptPanel"]

# offered in the model box after the LLM's own model; any other model string can be typed in
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "anthropic:claude-haiku-4-5", "anthropic:claude-sonnet-4-5")
_DEFAULT_TEMPERATURE = 0.7
_DEFAULT_MAX_TOKENS = 1024

Running = Union["asyncio.Task[Response | None]", "concurrent.futures.Future[Response | None]"]


class PromptPanel(CompareMode, widgets.VBox):
    """A prompt box, model settings, Send / Stop / Clear, the streamed answer and the conversation.

    ``llm``: the ``nbllm.LLM`` to ask (default: one for ``model``, keys from the environment or the
    simulator). ``models``: the choices in the model box (default: the LLM's model and
    ``DEFAULT_MODELS``). ``system``, ``temperature``, ``max_tokens``: the initial settings (default:
    the LLM's, else no system prompt, 0.7 and 1024); they can be changed in the panel or as traits.

    Its parts are attributes too (``prompt_box``, ``model_box``, ``temperature_box``, ``max_tokens_box``,
    ``system_box``, ``send_button``, ``stop_button``, ``clear_button``, ``question_view``, ``answer_view``,
    ``stats_view``, ``error_view``, ``history_view``), for tests and restyling. Example::

        panel = PromptPanel(nbllm.LLM("gpt-4o-mini"), system="Be brief.")
        panel.on_answer(lambda response: print(response.usage))
        panel   # then type and click Send, or: await panel.send("Hello")
    """

    prompt = Unicode("", help="The prompt box's text; Send (or send() without a prompt) asks it.")
    model = Unicode("", help="Model of the next answer, e.g. 'gpt-4o-mini' ('' = the LLM's own model).")
    system = Unicode("", help="System prompt sent before the conversation ('' = none).")
    temperature = Float(_DEFAULT_TEMPERATURE, min=0.0, max=2.0, help="Sampling temperature of the next answer.")
    max_tokens = Int(_DEFAULT_MAX_TOKENS, min=1, help="Most tokens in the next answer.")
    refresh_hz = Float(10.0, min=0.5, max=30.0, help="Most answer updates a second while streaming.")
    answer = Unicode("", read_only=True, help="The answer so far: grows at refresh_hz while busy, then final.")
    busy = Bool(False, read_only=True, help="True while an answer streams.")
    error = Unicode("", read_only=True, help="The last answer's error as 'Type: message' ('' if none).")

    def __init__(self, llm: Any = None, *, model: str | None = None, models: Sequence[str] | None = None,
                 system: str | None = None, temperature: float | None = None, max_tokens: int | None = None,
                 refresh_hz: float = 10.0, **kwargs: Any) -> None:
        # the panel's calls go through the LLM's runner (its keys, limits and store), or one of its own
        self.runner: CallRunner = llm.runner if llm is not None else CallRunner(LLMSettings(model))
        settings = self.runner.settings
        model = model or settings.model or ""
        choices = _model_choices(model, models)
        self._build(choices)
        self._build_compare(choices)
        kwargs.setdefault("layout", widgets.Layout(border="1px solid var(--jp-border-color2, #e0e0e0)",
                                                   padding="6px 8px"))
        super().__init__(children=self._layout(), **kwargs)
        self.add_class("nbllm-panel")
        for name in ("prompt", "model", "system", "temperature", "max_tokens"):
            link((self, name), (self._controls[name], "value"))
        self.model, self.refresh_hz = model, refresh_hz
        self.system = system if system is not None else (settings.system or "")
        self.temperature = _first(temperature, settings.temperature, _DEFAULT_TEMPERATURE)
        self.max_tokens = _first(max_tokens, settings.max_tokens, _DEFAULT_MAX_TOKENS)
        self._history: list[Message] = []
        self._runners: dict[str, CallRunner] = {}  # one runner per other model chosen, each keeps its route
        self._answer_callbacks = CallbackDispatcher()
        self._task: Running | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the answer runs on
        self._current: asyncio.Task[Any] | None = None  # the task running _run, once it has started
        self._view: LiveRenderer | None = None
        self._stopping = False  # set by stop(): the cancellation is ours, the answer ends "(stopped)"
        self._cleared = False  # set by clear() during an answer: its last updates must not come back
        self._chunks, self._started, self._first_token = 0, 0.0, None
        self.send_button.on_click(lambda _: self._click(self._send_from_box))
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear())

    # ---- building -----------------------------------------------------------------------------------
    def _build(self, choices: Sequence[str]) -> None:
        """Create the child widgets (``_layout`` arranges them)."""
        wide = widgets.Layout(width="100%")
        initial = {"description_width": "initial"}
        self.prompt_box = widgets.Textarea(placeholder="Ask something, then click Send", rows=4, layout=wide)
        self.model_box = widgets.Combobox(options=list(choices), ensure_option=False, description="Model",
                                          placeholder="default model", style=initial,
                                          layout=widgets.Layout(width="280px"))
        self.temperature_box = widgets.FloatSlider(min=0.0, max=2.0, step=0.05, description="Temperature",
                                                   readout_format=".2f", style=initial,
                                                   layout=widgets.Layout(width="300px"))
        self.max_tokens_box = widgets.BoundedIntText(min=1, max=1_000_000, description="Max tokens",
                                                     style=initial, layout=widgets.Layout(width="170px"))
        self.system_box = widgets.Textarea(placeholder="System prompt (optional)", rows=3, layout=wide)
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.stop_button = widgets.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.clear_button = widgets.Button(description="Clear", icon="eraser",
                                           tooltip="Forget the conversation and clear the answer")
        self.history_view, self.question_view = widgets.HTML(), widgets.HTML()
        self.answer_view, self.stats_view, self.error_view = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self._controls = {"prompt": self.prompt_box, "model": self.model_box, "system": self.system_box,
                          "temperature": self.temperature_box, "max_tokens": self.max_tokens_box}
        for part in ("prompt_box", "send_button", "stop_button", "clear_button", "answer_view",
                     "stats_view", "error_view", "history_view"):
            getattr(self, part).add_class(f"nbllm-panel-{part.replace('_', '-')}")  # CSS and test hooks

    def _layout(self) -> list[widgets.Widget]:
        system = widgets.Accordion(children=[self.system_box], titles=("System prompt",))
        settings = widgets.HBox([self.model_box, self.temperature_box, self.max_tokens_box, self.compare_toggle,
                                 self.compare_model_box],
                                layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        buttons = widgets.HBox([self.send_button, self.stop_button, self.clear_button])
        answer = widgets.VBox([self.question_view, self.answer_view, self.stats_view, self.error_view])
        return [settings, system, self.history_view, answer, self.prompt_box, buttons]

    def __repr__(self) -> str:
        state = "answering" if self.busy else "idle"
        return f"<PromptPanel {self.model or '(default model)'} {state}, {len(self._history) // 2} turns>"

    # ---- public API ---------------------------------------------------------------------------------
    @property
    def history(self) -> list[Message]:
        """The conversation so far (user and assistant messages, oldest first); a copy."""
        return [dict(message) for message in self._history]

    def send(self, prompt: str | None = None) -> Running:
        """Ask ``prompt`` (default: the prompt box's text) after the conversation so far.

        Returns the running answer at once: an ``asyncio.Task`` on the running loop (``await`` it), or,
        with no loop running, a ``concurrent.futures.Future`` on nbllm's engine (``.result()``). It
        resolves to the ``Response`` (``finish_reason="stopped"`` after Stop) or None after an error,
        which the panel shows as a red line; in compare mode to ``{model: Response}``. Raises if the
        prompt is empty or an answer is running.
        """
        if self.busy:
            raise NbllmError("The panel is still answering; call stop() (or click Stop) first.")
        text = self.prompt if prompt is None else prompt
        if not text.strip():
            raise ConfigurationError("The prompt is empty: type one in the box, or pass send('...').")
        messages = [*self._history, {"role": "user", "content": text}]
        runner = self._runner_for(self.model)
        if self.comparing:  # two models side by side; {model: Response}
            name = self.model.strip() or runner.settings.model or runner.model
            runners = self._compare_runners(runner, self._runner_for(self.compare_model_box.value), name)
            coro: Coroutine[Any, Any, Any] = self._run_compare(runners, messages, self._overrides())
        else:
            coro = self._run(text, messages, runner, self._overrides())
        self._begin(text)
        self._task, self._loop = _schedule(coro)
        self._task.add_done_callback(self._done)
        return self._task

    def stop(self) -> None:
        """Cancel the answer in progress; its partial text stays, marked "(stopped)"."""
        task = self._task
        if task is None or task.done():
            return
        self._stopping = True
        if self._loop is not None:
            _call_on_loop(self._loop, self._cancel_current)

    def _cancel_current(self) -> None:
        # on the answer's loop; a task that has not started yet sees _stopping on its first step instead
        # (cancelling it then would end it before _run could keep the "(stopped)" answer)
        if self._current is not None and not self._current.done():
            self._current.cancel()

    def clear(self) -> None:
        """Stop any answer, forget the conversation and clear the answer area."""
        self._cleared = self.busy
        self.stop()
        self._history.clear()
        for view in (self.history_view, self.question_view, self.answer_view, self.stats_view, self.error_view):
            view.value = ""
        self.set_trait("answer", "")
        self.set_trait("error", "")

    def on_answer(self, callback: Callable[[Response], Any], remove: bool = False) -> None:
        """Call ``callback(response)`` after every answer (also stopped ones); ``remove=True`` unregisters."""
        self._answer_callbacks.register_callback(callback, remove=remove)

    # ---- one answer ---------------------------------------------------------------------------------
    def _send_from_box(self) -> None:
        self.send()
        self.prompt = ""  # like a chat box: the question moves up into the answer area

    def _click(self, action: Callable[[], Any]) -> None:
        """Run a button's action; a mistake (empty prompt, bad model string) becomes the red line."""
        try:
            action()
        except NbllmError as error:
            self._show_error(error)

    def _begin(self, prompt: str) -> None:
        self._stopping, self._cleared, self._chunks, self._first_token = False, False, 0, None
        self._started = time.monotonic()
        self.set_trait("answer", "")
        self.set_trait("error", "")
        self.set_trait("busy", True)
        self.history_view.value = history_html(self._history)
        self.question_view.value = question_html(prompt)
        self.stats_view.value = live_stats_html(0, 0.0, None)
        self.error_view.value = ""

    async def _run(self, prompt: str, messages: list[Message], runner: CallRunner,
                   overrides: dict[str, Any]) -> Response | None:
        """The task Send starts: stream, then record the turn; Stop ends it with the partial answer."""
        self._current = asyncio.current_task()
        view = self._view = LiveRenderer("markdown", refresh_hz=self.refresh_hz, sink=self._show)
        try:
            if self._stopping:  # Stop came before this task's first step
                raise asyncio.CancelledError
            response = await self._stream(runner, messages, overrides, view)
        except asyncio.CancelledError:
            if not self._stopping:  # an interrupt or a cancel from outside: not ours to swallow
                self._end(None)
                raise
            _uncancel()
            view.finish()  # (already done unless it was stopped before it started)
            response = Response(view.text, Usage(completion_tokens=self._chunks), model=runner.settings.model or "",
                                finish_reason="stopped", latency=time.monotonic() - self._started,
                                time_to_first_token=self._first_token)
        except Exception as error:  # noqa: BLE001 - shown in the panel; nobody awaits a clicked Send
            self._show_error(error)
            self._end(None)
            return None
        self._end(response, prompt)
        return response

    async def _stream(self, runner: CallRunner, messages: list[Message], overrides: dict[str, Any],
                      view: LiveRenderer) -> Response:
        async with view:
            try:
                return await runner.astream_into(messages, lambda chunk: self._on_chunk(chunk, view),
                                                 overrides=overrides)
            except asyncio.CancelledError:
                if self._stopping:
                    view.finish()  # final markdown without the renderer's "interrupted"; _show adds "(stopped)"
                raise

    def _on_chunk(self, chunk: str, view: LiveRenderer) -> None:
        if self._first_token is None:
            self._first_token = time.monotonic() - self._started
        self._chunks += 1
        view.append(chunk)

    def _show(self, data: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        """The LiveRenderer's sink: called at most ``refresh_hz`` times a second, then once at the end."""
        if self._cleared:
            return
        final = "text/markdown" in data
        note = "stopped" if final and self._stopping else None
        self.answer_view.value = answer_html(data, note)
        if self._view is not None:
            self.set_trait("answer", self._view.text)
        if not final:
            self.stats_view.value = live_stats_html(self._chunks, time.monotonic() - self._started, self._first_token)

    def _end(self, response: Response | None, prompt: str | None = None) -> None:
        """Record the turn (also a stopped one with some text), show the numbers, call on_answer."""
        stopped = response is not None and response.finish_reason == "stopped"
        if self._cleared:
            pass  # Clear came during the answer: neither the turn nor its numbers come back
        elif response is not None:
            if prompt is not None and (response.text or not stopped):
                self._history += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response.text}]
            self.stats_view.value = stats_html(response, stopped=stopped)
        elif not self.error:
            self.stats_view.value = ""
        self.set_trait("busy", False)
        if response is not None:
            self._answer_callbacks(response)

    def _show_error(self, error: BaseException) -> None:
        self.error_view.value = error_bundle(error)["text/html"]
        self.set_trait("error", f"{type(error).__name__}: {error}")
        self.stats_view.value = ""

    def _done(self, task: Running) -> None:
        # a task cancelled before its first step never ran _run's cleanup: the panel must not stay busy
        if task is self._task and self.busy:
            self.set_trait("busy", False)
        if not task.cancelled():
            task.exception()  # a clicked Send is never awaited: asyncio must not log "never retrieved"

    @observe("busy")
    def _busy_changed(self, change: Mapping[str, Any]) -> None:
        self.send_button.disabled = change["new"]
        self.stop_button.disabled = not change["new"]

    # ---- settings -----------------------------------------------------------------------------------
    def _overrides(self) -> dict[str, Any]:
        # system=None (not absent) when the box is empty, so a cleared box also drops the LLM's own
        return {"system": self.system.strip() and self.system or None,
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _runner_for(self, model: str) -> CallRunner:
        """The panel's runner for its own model; for another model, one with the same keys and settings."""
        model = model.strip()
        if not model or model == (self.runner.settings.model or ""):
            return self.runner
        if model not in self._runners:
            self._runners[model] = self.runner.for_model(model)
        return self._runners[model]


def _model_choices(model: str, models: Sequence[str] | None) -> list[str]:
    choices = [model] if model else []
    for name in models if models is not None else DEFAULT_MODELS:
        if name not in choices:
            choices.append(name)
    return choices


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def _schedule(coro: Coroutine[Any, Any, Response | None]) -> tuple[Running, asyncio.AbstractEventLoop]:
    """A task on the running loop (the kernel's); with none running (a script), on nbllm's engine."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        engine = _engine.get_engine()
        return engine.submit(coro), engine.loop
    return loop.create_task(coro, name="nbllm-prompt-panel"), loop


def _call_on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], Any]) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback()
    else:  # Stop from another thread: the task must be cancelled on its own loop
        loop.call_soon_threadsafe(callback)


def _uncancel() -> None:
    # the task swallows our own Stop: undo its cancel count so enclosing timeouts/TaskGroups stay right
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()


