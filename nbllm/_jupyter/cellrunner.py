"""One ``%%llm`` answer: a resolved request in, one streamed answer (and its side effects) out.

``_magics`` parses options and settings into a ``CellRequest``; ``CellRunner.run`` streams the answer
into a ``LiveRenderer`` on the caller's loop — the kernel loop when the cell became a top-level await,
the engine loop when it goes through ``run_blocking`` (autoawait off, or the ``%llm`` line form).

With ``--schema`` the answer is not streamed (an answer that fails validation is re-asked, so its text
is not final): the cell shows a placeholder, then the parsed object as JSON — or, when no answer fit,
the last raw answer and the error.

What a cell leaves behind: the rendered answer; ``-o NAME`` bound to the ``Response`` (``.parsed``); with ``--chat``
the exchange appended to the conversation; with ``-f code`` the code offered as the next cell. An
``NbllmError`` becomes a short red message under the partial text. An interrupt keeps the partial text,
binds ``-o NAME`` to a Response with that text and ``finish_reason="interrupted"``, and re-raises.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import _engine
from .._call import CallRunner, LLMSettings
from .._display import LiveRenderer, error_bundle, extract_code
from .._exceptions import ConfigurationError, NbllmError, StructuredOutputError
from .._structured import as_schema
from .._types import Message, Response

__all__ = ["CellRequest", "CellRunner", "GenerationInterrupted", "run_blocking", "runner_for"]

T = TypeVar("T")

# After an interrupt, how long the blocked kernel thread waits for the engine side to send the final
# display update, so it reaches the cell before the cell's reply does.
_CLEANUP_SECONDS = 1.0


class GenerationInterrupted(asyncio.CancelledError):
    """The cell was interrupted while the answer streamed; the partial answer stays in the output.

    A CancelledError, not a KeyboardInterrupt: raised inside a task (``gather`` of several cells), a
    KeyboardInterrupt escapes the task and stops the kernel's loop, while a cancellation stays one.
    """

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback through asyncio's internals
        return [f"{type(self).__name__}: {self}"]


@dataclass
class CellRequest:
    """Everything one ``%%llm`` answer needs, after options, settings and ``{name}`` filling."""

    prompt: str
    fmt: str = "markdown"
    output: str | None = None
    stream: bool = True
    chat: bool = False
    refresh_hz: float = 10.0
    overrides: dict[str, Any] = field(default_factory=dict)  # system / temperature / max_tokens
    schema: Any = None  # --schema: a Pydantic model class or a JSON Schema dict


# One runner per (model, base_url, key) so every cell with the same settings shares one pool and its limits.
_runners: dict[tuple[str | None, str | None, str | None], CallRunner] = {}
_runners_lock = threading.Lock()


def runner_for(model: str | None, base_url: str | None = None, api_key_env: str | None = None) -> CallRunner:
    """The cached runner for these settings; the key is read from ``api_key_env`` (never from a cell)."""
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigurationError(
                f"The environment variable {api_key_env} is not set; set it before the kernel starts "
                "(or in a .env file) and run %llm_config again."
            )
    cache_key = (model, base_url, key)  # the key itself only ever lives in this in-memory dict
    with _runners_lock:
        runner = _runners.get(cache_key)
        if runner is None:
            runner = _runners[cache_key] = CallRunner(LLMSettings(model, base_url=base_url, api_key=key))
        return runner


class CellRunner:
    """Per-shell state of ``%%llm``: the chat conversation; ``run`` answers one request."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.history: list[Message] = []  # the --chat conversation, user and assistant turns

    def messages_for(self, request: CellRequest) -> str | list[Message]:
        """The prompt as sent: the bare text, or the conversation so far plus this turn."""
        if not request.chat:
            return request.prompt
        return [*self.history, {"role": "user", "content": request.prompt}]

    async def run(self, runner: CallRunner, request: CellRequest) -> Response | None:
        """Stream one answer into the cell; returns the Response, or None after an nbllm error."""
        view = LiveRenderer(request.fmt, refresh_hz=request.refresh_hz)
        started = time.monotonic()
        try:
            async with view:
                response = await _generate(runner, self.messages_for(request), request, view)
        except (asyncio.CancelledError, KeyboardInterrupt):
            partial = Response(view.text, model=runner.settings.model or "", finish_reason="interrupted",
                               latency=time.monotonic() - started)
            self._bind(request.output, partial)
            raise
        except NbllmError as error:
            _show(error_bundle(error))
            return None
        self._finish(request, response)
        return response

    def _finish(self, request: CellRequest, response: Response) -> None:
        self._bind(request.output, response)
        if request.chat:
            self.history += [{"role": "user", "content": request.prompt},
                             {"role": "assistant", "content": response.text}]
        if request.fmt == "code" and response.text.strip():
            code, _ = extract_code(response.text)
            self.shell.set_next_input(code, replace=False)

    def _bind(self, name: str | None, response: Response) -> None:
        if name:
            self.shell.user_ns[name] = response


async def _generate(runner: CallRunner, prompt: str | list[Message], request: CellRequest,
                    view: LiveRenderer) -> Response:
    """Feed the answer into ``view`` (token by token unless ``--no-stream``) and return the Response."""
    if request.schema is not None:
        return await _structured(runner, prompt, request, view)
    if not request.stream:
        response = await runner.ainvoke(prompt, overrides=request.overrides)
        view.append(response.text)
        return response
    return await runner.astream_into(prompt, view.append, overrides=request.overrides)


async def _structured(runner: CallRunner, prompt: str | list[Message], request: CellRequest,
                      view: LiveRenderer) -> Response:
    """A ``--schema`` answer: validated (and re-asked) first, then shown as the parsed object."""
    try:
        response = await runner.ainvoke(prompt, overrides={**request.overrides, "schema": request.schema})
    except StructuredOutputError as error:
        view.append(error.text)  # what the model last said stays above the error
        raise
    view.append(json.dumps(as_schema(request.schema).dump(response.parsed), indent=2, ensure_ascii=False))
    return response


def _show(data: dict[str, Any]) -> None:
    from IPython.display import display

    display(data, raw=True)


def run_blocking(coro: Coroutine[Any, Any, T], shell: Any = None) -> T:
    """Run a cell's coroutine on the engine loop while this (kernel) thread blocks.

    The magic runs ON the kernel loop's thread, so the work must run elsewhere. Its output still goes
    to this cell: the coroutine runs with this cell's parent header. On an interrupt the engine task
    is cancelled and this thread waits briefly for its final display update before re-raising.
    """
    finished = threading.Event()
    parent = _parent_header(shell)

    async def guarded() -> T:
        try:
            _adopt_parent(shell, parent)
            return await coro
        finally:
            finished.set()

    try:
        return _engine.run_sync(guarded())
    except KeyboardInterrupt:
        finished.wait(_CLEANUP_SECONDS)
        raise GenerationInterrupted("the answer was stopped; the partial text is kept above") from None


def _parent_header(shell: Any) -> Any:
    publisher = getattr(shell, "display_pub", None)
    return getattr(publisher, "parent_header", None)


def _adopt_parent(shell: Any, parent: Any) -> None:
    # ipykernel >= 7 routes output by a per-context parent header; set it for this engine task only
    setter = getattr(getattr(shell, "display_pub", None), "set_thread_parent", None)
    if setter is not None and parent:
        setter(parent)
