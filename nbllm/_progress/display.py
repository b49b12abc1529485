"""Where batch progress is shown: a notebook widget, a text bar on a terminal, or nowhere.

```python
display = ProgressDisplay(progress, pool_rows, mode="auto")
display.start()
...                      # after every item and from a ticker:
display.refresh()        # throttled: a clock read and a compare when there is nothing to do
display.close()          # always pushes the final numbers, so the saved notebook shows them
```

This is the one module that decides between front-ends (the role of ``tqdm.auto``). In a kernel it
shows ONE aggregate tqdm widget bar per batch plus ONE ``ipywidgets.HTML`` with the per-key table:
each widget bar costs 11 comm_opens and every refresh sends comm messages that count against Jupyter
Server's 1000 msg/s iopub limit, so refreshes are throttled to at most one per 0.5 s. On a terminal
it is a tqdm text bar on stderr; in a pipe or a log file it shows nothing.
"""

from __future__ import annotations

import html
import importlib.util
import sys
from typing import Any, Callable, Mapping, Sequence, TextIO

from .._exceptions import ConfigurationError
from .._keys import format_key_line, format_key_table_html
from .state import BatchProgress

__all__ = ["ProgressDisplay", "in_notebook"]

_MODES = ("auto", "widget", "text", "none")
# widget refreshes are comm messages (bar value + 2 labels + the key table): never faster than 2 Hz
_MIN_WIDGET_INTERVAL = 0.5
# tqdm's own rate and ETA use the average since the start; ours (in the postfix) follow the recent pace
_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython), like ``tqdm.autonotebook`` checks."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    if shell is None:
        return False
    # ZMQInteractiveShell has a kernel; the terminal shell and plain interpreters do not
    return getattr(shell, "kernel", None) is not None or "IPKernelApp" in getattr(shell, "config", {})


def _choose_mode(mode: str, file: TextIO | None) -> str:
    if mode not in _MODES:
        raise ConfigurationError(f"progress mode must be one of {', '.join(_MODES)}; got {mode!r}.")
    has_widgets = importlib.util.find_spec("ipywidgets") is not None
    if mode == "widget" and not has_widgets:
        raise ConfigurationError("progress mode 'widget' needs ipywidgets: pip install ipywidgets")
    if mode != "auto":
        return mode
    if has_widgets and in_notebook():
        return "widget"
    stream = file if file is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "none"


def _postfix(progress: BatchProgress) -> str:
    # the same "key=value, …" text tqdm builds from set_postfix(dict), built once for both modes
    return ", ".join(f"{key}={value}" for key, value in progress.format_dict().items())


class ProgressDisplay:
    """Shows one BatchProgress (and optionally the key pool) in the best available front-end.

    ``file`` (text mode, default stderr), ``display`` (widget mode, default
    ``IPython.display.display``) and ``clock`` (default the progress's clock) exist for tests.
    """

    def __init__(
        self,
        progress: BatchProgress,
        key_rows: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
        *,
        mode: str = "auto",
        refresh: float = 0.5,
        desc: str = "nbllm",
        file: TextIO | None = None,
        display: Callable[..., Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.progress = progress
        self.key_rows = key_rows
        self.mode = _choose_mode(mode, file)
        self.desc = desc
        self.interval = max(refresh, _MIN_WIDGET_INTERVAL) if self.mode == "widget" else refresh
        self._file = file
        self._display = display
        self._clock = clock or progress.clock
        self._bar: Any = None  # the tqdm bar while shown; None before start() and after close()
        self._html: Any = None  # widget mode: the ipywidgets.HTML under the bar
        self._html_value = ""  # what _html shows, to send a comm message only when it changes
        self._last = float("-inf")  # clock time of the last push
        self._closed = False

    def start(self) -> None:
        """Create and show the bar (nothing in mode ``none``); calling it twice does nothing."""
        if self._bar is not None or self._closed or self.mode == "none":
            return
        if self.mode == "widget":
            self._start_widget()
        else:
            self._start_text()
        self._last = self._clock()

    def _start_text(self) -> None:
        from tqdm.std import tqdm as std_tqdm

        self._bar = std_tqdm(
            total=self.progress.total, desc=self.desc, file=self._file or sys.stderr,
            dynamic_ncols=True, mininterval=self.interval, leave=True, disable=False,
            bar_format=_BAR_FORMAT, initial=self.progress.done,
        )

    def _start_widget(self) -> None:
        import ipywidgets
        from tqdm.notebook import tqdm as notebook_tqdm

        show = self._display
        if show is None:
            from IPython.display import display as show
        # display=False: the bar and the key table are shown together, by one call, below
        self._bar = notebook_tqdm(
            total=self.progress.total, desc=self.desc, dynamic_ncols=True, mininterval=self.interval,
            leave=True, display=False, bar_format=_BAR_FORMAT, initial=self.progress.done,
        )
        self._html = ipywidgets.HTML(value=self._key_html())
        self._html_value = self._html.value
        show(self._bar.container, self._html)

    def refresh(self, force: bool = False) -> None:
        """Push the current numbers, at most once per ``refresh`` seconds unless ``force``."""
        now = self._clock()
        if not force and now - self._last < self.interval:
            return
        if self._bar is None:
            return
        self._last = now
        self._push()

    def _push(self, summary: str | None = None) -> None:
        """Copy the numbers into the bar and redraw it (``summary``: widget mode, under the bar)."""
        bar = self._bar
        bar.n = self.progress.position  # set, not update(): tqdm's own throttle must not drop pushes
        postfix = _postfix(self.progress)
        if self.mode == "text":
            key_line = format_key_line(self.key_rows()) if self.key_rows is not None else ""
            bar.set_postfix_str(f"{postfix} │ {key_line}" if key_line else postfix, refresh=False)
        else:
            bar.set_postfix_str(postfix, refresh=False)
            self._set_html(self._key_html(summary))
        bar.refresh()

    def _key_html(self, summary: str | None = None) -> str:
        table = format_key_table_html(self.key_rows()) if self.key_rows is not None else ""
        if summary:
            table += f'<div style="font-size:12px;margin-top:2px">{html.escape(summary)}</div>'
        return table

    def _set_html(self, value: str) -> None:
        if value != self._html_value:  # every assignment is a comm message, even an unchanged one
            self._html.value = value
            self._html_value = value

    def close(self, final: bool = True) -> None:
        """Push a last unthrottled update and close the bar; safe to call twice.

        ``final=True`` (the batch finished) adds the one-line summary; ``final=False`` (it stopped
        early) still pushes the numbers reached, and the widget bar turns red if not all items are done.
        """
        if self._closed:
            return
        self._closed = True
        if self._bar is None:  # never started, or mode "none"
            return
        summary = self.progress.summary() if final else None
        # the widget shows the summary under the bar; the text bar keeps its numbers, summary below
        self._push(summary if self.mode == "widget" else None)
        bar, self._bar = self._bar, None
        bar.close()
        if summary and self.mode == "text":
            (self._file or sys.stderr).write(f"{self.desc}: {summary}\n")

    def __enter__(self) -> ProgressDisplay:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(final=exc_type is None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("shown" if self._bar is not None else "not started")
        return f"<ProgressDisplay {self.mode} {state}: {self.progress.format_line()}>"
