"""A variable as prompt text that fits a token budget: what ``{df}`` in a prompt becomes.

```python
render_value(df, tokens=3000)     # shape, dtypes and the first rows as a Markdown table, and what was cut
render_value(long_text, 200)      # the text, cut to ~200 tokens, with a note of how much was left out
render_value(42)                  # '42': small values are written as they are (like an f-string)
```

``str(df)`` of a million-row DataFrame is a wall of padded columns, and ``str(big_list)`` can be
megabytes: too many tokens, and slow to build. Here a DataFrame or Series shows its shape, its
dtypes and as many of its first rows as fit, reading only those rows (``head``), so its size does not
matter; a NumPy array is summarised by NumPy's own ``array2string(threshold=…)``; lists, tuples, sets
and dicts show their first items; long text is cut. Whatever is cut is said in a note in brackets, so
the model (and the user, with ``%llm context {expr}``) knows the value is not complete. Tokens are
counted as ``nbllm._tokens`` counts them (tiktoken when at hand, else its approximation).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from .._format import format_count
from .._tokens import count_tokens

__all__ = ["DEFAULT_CONTEXT_TOKENS", "markdown_table", "render_value"]

DEFAULT_CONTEXT_TOKENS = 3000
_CELL_CHARS = 80  # one table cell or one item at most, so a single long value cannot take the budget
_MAX_COLUMNS = 30
_MAX_ROWS = 50
_MAX_ITEMS = 200
_NESTED_ITEMS = 20  # a container inside a value is printed up to this many items, else named


def render_value(value: Any, tokens: int = DEFAULT_CONTEXT_TOKENS, model: str | None = None) -> str:
    """``value`` as prompt text in at most about ``tokens`` tokens (see the module docstring)."""
    kind = type(value).__module__.split(".")[0]
    if kind == "pandas" and hasattr(value, "head") and hasattr(value, "shape"):
        return _fit_rows(value, tokens, model)
    if kind == "numpy" and hasattr(value, "shape") and hasattr(value, "dtype") and getattr(value, "ndim", 0):
        return _array(value, tokens, model)
    if isinstance(value, Mapping):
        items = ((f"{_short(k)}: {_short(v)}" for k, v in value.items()))
        return _fit_items(items, len(value), "{", "}", "keys", tokens, model)
    if isinstance(value, (list, tuple, set, frozenset)):
        opening, closing = {list: "[]", tuple: "()"}.get(type(value), "{}")
        return _fit_items((_short(v) for v in value), len(value), opening, closing, "items", tokens, model)
    return cut_text(format(value, ""), tokens, model)


def cut_text(text: str, tokens: int, model: str | None = None) -> str:
    """``text`` if it fits in ``tokens``, else its beginning and a note of what was cut."""
    if len(text) <= tokens or count_tokens(text, model) <= tokens:  # a token holds at least one character
        return text

    def note(keep: int) -> str:
        return f"\n[… cut: the first {format_count(keep)} of {format_count(len(text))} characters are shown]"

    target = tokens - count_tokens(note(len(text)), model)
    keep = len(text)
    while keep > 0:  # shrink by the measured ratio until it fits (two or three rounds)
        used = count_tokens(text[:keep], model)
        if used <= target:
            return text[:keep] + note(keep)
        keep = min(keep - 1, int(keep * target / used * 0.95))
    return f"[text of {format_count(len(text))} characters, left out: over the {tokens}-token budget]"


def _short(value: Any) -> str:
    """One item: its repr (strings quoted), at most ``_CELL_CHARS`` characters; a large container or a
    pandas/NumPy object inside a value is named, not printed (its repr alone could take seconds)."""
    shape = getattr(value, "shape", None)
    if shape is not None and type(value).__module__.split(".")[0] in ("pandas", "numpy"):
        text = f"<{type(value).__name__} of shape {tuple(shape)}>"
    elif isinstance(value, (Mapping, list, tuple, set, frozenset)) and len(value) > _NESTED_ITEMS:
        text = f"<{type(value).__name__} of {format_count(len(value))} items>"
    else:
        text = repr(value)
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def _fit_items(items: Any, total: int, opening: str, closing: str, what: str, tokens: int,
               model: str | None) -> str:
    """As many of ``items`` (already short strings) as fit, then a note of how many more there were."""
    shown: list[str] = []
    used = 2
    for item in itertools.islice(items, _MAX_ITEMS):
        cost = count_tokens(item, model) + 1
        if used + cost > tokens - 25:  # leave room for the note
            break
        shown.append(item)
        used += cost
    text = opening + ", ".join(shown) + closing
    if len(shown) < total:
        text += f"\n[… cut: the first {format_count(len(shown))} of {format_count(total)} {what} are shown]"
    return text


def _array(array: Any, tokens: int, model: str | None) -> str:
    import numpy

    header = f"array of shape {tuple(array.shape)}, dtype {array.dtype}"
    for edge in (3, 2, 1):
        body = numpy.array2string(array, threshold=50, edgeitems=edge, max_line_width=100)
        text = f"{header}:\n{body}"
        if count_tokens(text, model) <= tokens:
            return text
    return cut_text(text, tokens, model)


def markdown_table(rows: list[list[str]], header: list[str]) -> str:
    """A GitHub Markdown table; ``|`` and line breaks inside cells are escaped so the table holds."""
    def cell(text: str) -> str:
        flat = " ".join(str(text).split()).replace("|", "\\|")
        return flat if len(flat) <= _CELL_CHARS else flat[: _CELL_CHARS - 1] + "…"

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _frame_parts(frame: Any) -> tuple[str, list[str], Any]:
    """(summary line, column names, the frame) of a DataFrame, or of a Series seen as one column."""
    if frame.ndim == 1:  # a Series
        name = frame.name if frame.name is not None else "value"
        summary = f"Series {name!r}: {format_count(len(frame))} values, dtype {frame.dtype}"
        return summary, [str(name)], frame.to_frame(name=str(name))
    rows, columns = frame.shape
    dtypes = ", ".join(f"{name} {dtype}" for name, dtype in itertools.islice(frame.dtypes.items(), _MAX_COLUMNS))
    more = f", … {format_count(columns - _MAX_COLUMNS)} more" if columns > _MAX_COLUMNS else ""
    summary = f"DataFrame: {format_count(rows)} rows × {format_count(columns)} columns\ndtypes: {dtypes}{more}"
    return summary, [str(c) for c in frame.columns[:_MAX_COLUMNS]], frame


def _fit_rows(frame: Any, tokens: int, model: str | None) -> str:
    """Summary plus as many of the first rows as fit (only those rows are ever read)."""
    summary, columns, frame = _frame_parts(frame)
    head = frame.iloc[:_MAX_ROWS, : len(columns)]  # a view of at most 50 rows: a million-row frame costs the same
    index = [str(i) for i in head.index]
    cells = [[index[i], *(_cell(v) for v in row)] for i, row in enumerate(head.itertuples(index=False))]
    total = len(frame)

    def text_with(count: int) -> str:
        note = f"\n[first {format_count(count)} of {format_count(total)} rows shown]" if count < total else ""
        return f"{summary}\n\n{markdown_table(cells[:count], ['', *columns])}{note}" if count else f"{summary}{note}"

    fits, over = 0, len(cells) + 1  # binary search for the most rows that fit: a handful of counts
    while over - fits > 1:
        middle = (fits + over) // 2
        if count_tokens(text_with(middle), model) <= tokens:
            fits = middle
        else:
            over = middle
    text = text_with(fits)
    return text if count_tokens(text, model) <= tokens else cut_text(summary, tokens, model)


def _cell(value: Any) -> str:
    """A table cell: text as it is, numbers and dates as ``str`` shows them, containers as ``_short``."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"  # 0.123457, not 0.12345678901234566: digits a reader (and a model) can use
    if hasattr(value, "__len__") or getattr(value, "shape", None):
        return _short(value)
    return str(value)
