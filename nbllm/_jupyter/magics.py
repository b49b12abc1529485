"""``%load_ext nbllm``: the ``%%llm`` cell magic, ``%llm`` and ``%llm_config``.

```
%%llm -f json -o ans
Return the result as JSON: {"expression": "{question}", "result": ?}
```
```
%%llm --over reviews --to sentiment -m openai:gpt-4o-mini,anthropic:claude-haiku-4-5
Classify the sentiment of this review as positive, negative or neutral: {text}
```
(``--over``, ``-m a,b`` and ``--estimate`` cells are ``datacell``'s; ``%llm context {expr}`` shows what a
variable becomes in a prompt.)

``%%llm --schema Result -o ans`` (``Result`` a Pydantic model class or a JSON Schema dict in the
notebook) validates the answer, re-asks until it fits, and renders the parsed object as JSON; ``ans`` is
the Response and ``ans.parsed`` the object.

A ``%%llm`` cell becomes a top-level ``await __nbllm_cell__(line, body)`` through an input transformer
(``docs/ARCHITECTURE.md``, "Magics as top-level await"): the answer streams on the kernel loop itself,
so widget clicks still arrive, "Run All" keeps its order and an interrupt stops the answer. A magic
cannot do that — IPython calls it synchronously and never awaits a coroutine it returns — so the
registered ``%%llm`` magic is only the fallback for ``%autoawait off``: it runs the same coroutine on
nbllm's engine and blocks.

Settings are traitlets, so ``ipython_config.py`` can hold ``c.NbllmMagics.model = "openai:gpt-4o-mini"``;
``%llm_config`` shows and changes them in a session. Keys are never typed into cells: ``api_key_env=``
names the environment variable that holds one.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import keyword
import os
import shlex
from collections.abc import Awaitable, Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode

from .._call import CallRunner
from .._display import FORMATS
from .._exceptions import ConfigurationError
from .._prompts import DEFAULT_CONTEXT_TOKENS, interpolate, render_value
from .._structured import as_schema
from .._types import Response
from .cellrunner import (
    CellRequest,
    CellRunner,
    GenerationInterrupted,
    run_blocking,
    runner_for,
)
from .cellsyntax import (
    ENTRY,
    parse_llm_cell,
    parse_options,
    rewrite_llm_cell,
    split_line,
)
from .datacell import (
    DataRequest,
    compare_cell,
    context_preview,
    estimate_cell,
    over_cell,
)

__all__ = ["ENTRY", "NbllmMagics", "load_ipython_extension", "parse_llm_cell", "rewrite_llm_cell",
           "unload_ipython_extension"]

_SETTINGS = ("model", "format", "refresh_hz", "system", "temperature", "max_tokens", "stream",
             "base_url", "api_key_env", "context_tokens")


class _CellTransformer:
    """The input transformer, bound to one shell: follows ``%autoawait`` and keeps ``ENTRY`` defined."""

    nbllm_transformer = True  # marker, so a reload finds and replaces an older instance
    # keeps IPython's completeness check (terminal typing) off this transformer: a %%llm cell there must
    # stay incomplete until its blank line, like any cell magic, instead of running after its first line
    has_side_effects = True

    def __init__(self, magics: NbllmMagics) -> None:
        self.magics = magics

    def __call__(self, lines: list[str]) -> list[str]:
        shell = self.magics.shell
        rewritten = rewrite_llm_cell(lines, autoawait=_awaits_on_asyncio(shell))
        if rewritten is not lines and shell.user_ns.get(ENTRY) is not self.magics.cell_entry:
            shell.user_ns[ENTRY] = self.magics.cell_entry  # %reset clears the namespace
        return rewritten


@magics_class
class NbllmMagics(Magics):
    """``%%llm``, ``%llm`` and ``%llm_config``; every setting is configurable as ``c.NbllmMagics.<name>``."""

    model = Unicode(None, allow_none=True,
                    help="Model, e.g. 'openai:gpt-4o-mini' (default: nbllm's).").tag(config=True)
    format = Enum(FORMATS, "markdown", help="How the finished answer is rendered.").tag(config=True)
    refresh_hz = Float(10.0, min=0.5, max=30.0,
                       help="Most output updates a second while streaming.").tag(config=True)
    system = Unicode(None, allow_none=True, help="System prompt sent with every answer.").tag(config=True)
    temperature = Float(None, allow_none=True,
                        help="Sampling temperature (default: the provider's).").tag(config=True)
    max_tokens = Int(None, allow_none=True,
                     help="Most tokens in an answer (default: the provider's).").tag(config=True)
    stream = Bool(True, help="Stream answers token by token (False: show them when complete).").tag(config=True)
    base_url = Unicode(None, allow_none=True,
                       help="An OpenAI-compatible server to use instead.").tag(config=True)
    api_key_env = Unicode(None, allow_none=True,
                          help="Name of the environment variable holding the key (never the key).").tag(config=True)
    context_tokens = Int(DEFAULT_CONTEXT_TOKENS, min=50,
                         help="Most tokens one {variable} may take in a prompt.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.runner = CellRunner(shell)
        # whole-line commands of %llm; any other line is a prompt ("%llm chat about rivers" asks the model)
        self._subcommands: dict[str, Callable[[], Any]] = {
            "status": self._status, "chat": self._show_chat, "chat reset": self._reset_chat,
        }
        self._prefix_commands: dict[str, Callable[[str], Any]] = {"context": self._context}

    # ---- %%llm and %llm -----------------------------------------------------------------------------
    @magic_arguments()
    @argument("-m", "--model", help="Model for this cell, e.g. openai:gpt-4o-mini; several, comma-separated, "
              "answer side by side.")
    @argument("-s", "--system", help="System prompt for this cell.")
    @argument("-t", "--temperature", type=float, help="Sampling temperature.")
    @argument("--max-tokens", type=int, help="Most tokens in the answer.")
    @argument("-f", "--format", choices=FORMATS, help="How the finished answer is rendered.")
    @argument("-o", "--output", metavar="NAME", help="Store the Response in this variable "
              "(if interrupted: one with the partial text and finish_reason 'interrupted').")
    @argument("--no-stream", action="store_true", help="Show the answer only when it is complete.")
    @argument("-c", "--chat", action="store_true", help="Continue the conversation of earlier --chat cells.")
    @argument("--reset", action="store_true", help="Start a new conversation first.")
    @argument("--no-interpolate", action="store_true", help="Send {braces} as written, fill nothing.")
    @argument("--schema", metavar="NAME", help="A Pydantic model class or JSON Schema dict in your namespace: the "
              "answer is validated (re-asked until it fits) and shown as JSON; -o gets the Response, .parsed the object.")
    @argument("--context-tokens", type=int, metavar="N", help="Most tokens one {variable} may take (default 3000).")
    @argument("--over", metavar="NAME", help="Run the prompt once per row of this DataFrame (or list of dicts "
              "or strings); {column} is filled from each row.")
    @argument("--to", metavar="COLUMN", default="answer", help="With --over: the column the answers go into.")
    @argument("--estimate", action="store_true", help="Show what the cell would cost and take; send nothing.")
    @argument("--budget", type=float, metavar="USD", help="With --over: pause before spending more than this.")
    @argument("--budget-tokens", type=int, metavar="N", help="With --over: pause before using more tokens.")
    @line_cell_magic
    def llm(self, line: str, cell: str | None = None) -> Any:
        """Ask a model; the answer streams into the cell. ``{name}`` / ``{expr}`` are filled from your variables.

        Cell: ``%%llm [options]`` then the prompt. Line: ``%llm PROMPT``, ``%llm [options] -- PROMPT``,
        ``%llm status`` (the key pool), ``%llm chat`` / ``%llm chat reset`` (the --chat conversation),
        ``%llm context {expr}`` (what a variable becomes in a prompt).
        """
        result = self._dispatch(line, cell)
        if not inspect.isawaitable(result):
            return result  # a subcommand's table
        return _cell_value(run_blocking(result, self.shell))

    def cell_entry(self, line: str, body: str | None = None) -> Awaitable[Any]:
        """What a rewritten cell awaits (``body`` None: the ``%llm`` line form); interrupts show in one line."""
        result = self._dispatch(line, body)  # options and {names} are checked now, before any await

        async def answer() -> Any:
            if not inspect.isawaitable(result):
                return result  # a subcommand's table
            try:
                value = await result
            except GenerationInterrupted:
                raise
            except asyncio.CancelledError:
                raise GenerationInterrupted("the answer was stopped; the partial text is kept above") from None
            return _cell_value(value)

        return answer()

    def _dispatch(self, line: str, body: str | None) -> Any:
        """The answer to await for a prompt, or a subcommand's result."""
        if body is not None:
            return self.prepare(line, body)
        handler = self._subcommands.get(" ".join(line.split()))
        if handler is not None:
            return handler()
        command, _, rest = line.strip().partition(" ")
        if command in self._prefix_commands and rest.strip():
            return self._prefix_commands[command](rest.strip())
        options, prompt = split_line(line)
        if not prompt.strip():
            raise UsageError("%llm needs a prompt: %llm PROMPT, or %llm [options] -- PROMPT.")
        return self.prepare(options, prompt)

    def prepare(self, line: str, body: str) -> Awaitable[Any]:
        """Parse options and fill the prompt now (in the kernel thread); return the answer to await.

        Mistakes found here (an unknown option, an undefined ``{name}``, an unset key variable) are
        UsageErrors: IPython shows them in one line and "Run All" stops, as for any misused magic.
        """
        try:
            return self._prepare(line, body)
        except ConfigurationError as error:
            raise UsageError(str(error)) from None

    def _prepare(self, line: str, body: str) -> Any:
        args = parse_options(self.llm, line)
        if args.output is not None and (not args.output.isidentifier() or keyword.iskeyword(args.output)):
            raise UsageError(f"-o needs a variable name, got {args.output!r}.")
        if args.reset:
            self.runner.history.clear()
        tokens = _pick(args.context_tokens, self.context_tokens)
        schema = self._schema(args.schema)
        overrides = _overrides(system=_pick(args.system, self.system),
                               temperature=_pick(args.temperature, self.temperature),
                               max_tokens=_pick(args.max_tokens, self.max_tokens))
        if args.over is not None or args.estimate or "," in (args.model or ""):
            return self._data_cell(args, body, tokens, _overrides(schema=schema, **overrides))
        prompt = body if args.no_interpolate else self._fill(body, tokens)
        request = CellRequest(
            prompt, fmt=args.format or ("json" if schema is not None else self.format), output=args.output,
            chat=args.chat, schema=schema,
            stream=self.stream and not args.no_stream, refresh_hz=self.refresh_hz, overrides=overrides,
        )
        return self.runner.run(self.current_runner(args.model), request)

    def _schema(self, name: str | None) -> Any:
        """The ``--schema NAME`` object from the user's namespace, checked now (None without the option)."""
        if name is None:
            return None
        if name not in self.shell.user_ns:
            raise UsageError(f"--schema {name}: no variable {name!r} here; define a Pydantic model class or a "
                             "JSON Schema dict first.")
        schema = self.shell.user_ns[name]
        as_schema(schema)  # a ConfigurationError (not a model, not a schema) becomes a UsageError
        return schema

    def _fill(self, body: str, tokens: int) -> str:
        prompt = interpolate(body, self.shell.user_ns, render=lambda value: render_value(value, tokens))
        if not prompt.strip():
            raise UsageError("The %%llm cell has no prompt: write it below the %%llm line.")
        return prompt

    def _data_cell(self, args: Any, body: str, tokens: int, overrides: dict[str, Any]) -> Any:
        """An ``--over``, ``-m a,b`` or ``--estimate`` cell (``datacell``); the chat options do not apply."""
        if args.chat or args.no_interpolate and args.over is not None:
            raise UsageError("--over, --estimate and -m a,b cells cannot use --chat or --no-interpolate.")
        if "schema" in overrides and args.over is None and not args.estimate:
            raise UsageError("--schema compares no models side by side (a structured answer is shown once it is "
                             "valid, not streamed): use one model, or --over a table with a column per model.")
        if args.over is not None and args.over not in self.shell.user_ns:
            raise UsageError(f"--over {args.over}: no variable {args.over!r}; define the DataFrame (or list) first.")
        models = [m.strip() for m in (args.model or self.model or "").split(",") if m.strip()] or [None]
        runners = {model or self.current_runner().settings.model or self.current_runner().model:
                   self.current_runner(model) for model in dict.fromkeys(models)}
        request = DataRequest(body, over=args.over, to=args.to, output=args.output, budget=args.budget,
                              budget_tokens=args.budget_tokens, context_tokens=tokens, overrides=overrides,
                              stream=self.stream and not args.no_stream, refresh_hz=self.refresh_hz)
        if args.estimate:
            prompt = None if args.over is not None else self._fill(body, tokens)
            return estimate_cell(self.shell.user_ns, runners, request, prompt)
        if args.over is not None:
            return over_cell(self.shell.user_ns, runners, request)
        prompt = body if args.no_interpolate else self._fill(body, tokens)
        return compare_cell(self.shell.user_ns, runners, prompt, request)

    def current_runner(self, model: str | None = None) -> CallRunner:
        """The cached call runner for the current settings (``model`` overrides the configured one)."""
        return runner_for(model or self.model, self.base_url, self.api_key_env)

    # ---- subcommands of %llm (dispatched through self._subcommands) --------------------------------
    def _status(self) -> Any:
        return self.current_runner().pool.status()

    def _context(self, expression: str) -> Any:
        """``%llm context {expr}``: exactly what ``{expr}`` becomes in a prompt, and its token count."""
        try:
            return context_preview(expression, self.shell.user_ns, self.context_tokens, self.model)
        except ConfigurationError as error:
            raise UsageError(str(error)) from None

    def _show_chat(self) -> None:
        if not self.runner.history:
            print("nbllm: no conversation yet; run a %%llm --chat cell.")
        for message in self.runner.history:
            content = str(message["content"]).replace("\n", " ")
            print(f"{message['role']:>9}: {content[:100]}{'…' if len(content) > 100 else ''}")

    def _reset_chat(self) -> None:
        print(f"nbllm: conversation cleared ({len(self.runner.history)} messages).")
        self.runner.history.clear()

    # ---- %llm_config --------------------------------------------------------------------------------
    @line_magic
    def llm_config(self, line: str) -> Any:
        """Show the %%llm settings, or change them: ``%llm_config model=openai:gpt-4o-mini format=text``.

        Settings: model, format, refresh_hz, system, temperature, max_tokens, stream, base_url,
        api_key_env (the NAME of an environment variable; keys never go into a notebook). ``none``
        clears a setting. The same names work in ipython_config.py as ``c.NbllmMagics.<name>``.
        """
        for token in shlex.split(line):
            name, sep, value = token.partition("=")
            self._set(name.strip(), value.strip() if sep else None)
        return SettingsTable({name: self._shown(name) for name in _SETTINGS})

    def _set(self, name: str, value: str | None) -> None:
        if name in ("api_key", "key"):
            raise UsageError("A key typed into a cell ends up in the saved notebook. Put it in an environment "
                             "variable (or .env) and use %llm_config api_key_env=NAME.")
        if name not in _SETTINGS or value is None:
            raise UsageError(f"Use NAME=VALUE with NAME one of {', '.join(_SETTINGS)}; got {name!r}.")
        trait = self.traits()[name]
        try:
            parsed = None if value.lower() in ("none", "") and trait.allow_none else trait.from_string(value)
            self.set_trait(name, parsed)
        except (TraitError, ValueError) as error:
            raise UsageError(f"{name}={value!r} is not valid: {error}") from None

    def _shown(self, name: str) -> str:
        value = getattr(self, name)
        if name == "api_key_env" and value:
            return f"{value} ({'set' if os.environ.get(value) else 'NOT set'})"  # the name, never the key
        return "(default)" if value is None else str(value)


class SettingsTable(dict):
    """``%llm_config``'s result: a dict of setting -> shown value that renders as a table."""

    def __repr__(self) -> str:
        width = max(map(len, self), default=0)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in self.items())

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>"
                       for k, v in self.items())
        return f"<table><tr><th>setting</th><th>value</th></tr>{rows}</table>"


def _awaits_on_asyncio(shell: Any) -> bool:
    """Top-level await is on and runs on asyncio (not ``%autoawait trio``), as the rewritten cell needs."""
    from IPython.core.async_helpers import _asyncio_runner

    return bool(getattr(shell, "autoawait", False)) and getattr(shell, "loop_runner", None) is _asyncio_runner


def _cell_value(value: Any) -> Any:
    """What a cell shows as its result: a data cell's table or estimate; an answer is already on screen."""
    return None if value is None or isinstance(value, Response) else value


def _pick(option: Any, setting: Any) -> Any:
    return setting if option is None else option


def _overrides(**values: Any) -> dict[str, Any]:
    # only what is set, so the LLM's and the provider's defaults apply otherwise
    return {name: value for name, value in values.items() if value is not None}


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the ``%%llm`` transformer (again on reload, never twice)."""
    magics = ipython.magics_manager.registry.get(NbllmMagics.__name__)
    if not isinstance(magics, NbllmMagics):
        magics = NbllmMagics(ipython)
    ipython.register_magics(magics)
    cleanup = ipython.input_transformers_cleanup
    cleanup[:] = [t for t in cleanup if not getattr(t, "nbllm_transformer", False)]
    cleanup.append(_CellTransformer(magics))
    ipython.user_ns[ENTRY] = magics.cell_entry
    ipython.user_ns_hidden[ENTRY] = magics.cell_entry  # keeps it out of %who and %reset's listing


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the transformer, ``ENTRY`` and the magics (the settings object stays for a reload)."""
    cleanup = ipython.input_transformers_cleanup
    cleanup[:] = [t for t in cleanup if not getattr(t, "nbllm_transformer", False)]
    for namespace in (ipython.user_ns, ipython.user_ns_hidden):
        namespace.pop(ENTRY, None)
    table = ipython.magics_manager.magics
    for kind, name in (("line", "llm"), ("cell", "llm"), ("line", "llm_config")):
        if isinstance(getattr(table[kind].get(name), "__self__", None), NbllmMagics):
            del table[kind][name]
