"""The key pool as a table: ``pool.status()``, and the per-key lines of a batch's progress display.

```python
pool.status()                 # prints as an aligned table, renders as HTML in a notebook
format_key_line(rows)         # 'key-1 ● 12 in flight 340 done │ key-2 ⏸ cooling 2.1s │ key-3 ✗ revoked'
```

Rows are the dicts of ``KeyState.status_row``; nothing here reads a key's value, only its alias and
masked form.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from .._format import format_tokens

__all__ = ["PoolStatus", "format_key_line", "format_key_table", "format_key_table_html"]


_COLUMNS = (
    ("alias", "key"), ("masked", "masked"), ("provider", "provider"), ("state", "state"),
    ("in_flight", "in flight"), ("done", "done"), ("rate_limited", "429s"),
    ("tokens", "tokens"), ("rpm", "rpm"), ("tpm", "tpm"),
)
_NUMERIC = {"in_flight", "done", "rate_limited", "tokens", "rpm", "tpm"}


def _limit(value: Any, learned: bool) -> str:
    """An RPM/TPM limit: ``None`` → ``–``; a limit learned from headers gets a ``~`` suffix."""
    if value is None:
        return "–"
    text = format_tokens(value)
    return f"{text}~" if learned else text


def _cells(row: Mapping[str, Any]) -> list[str]:
    learned = bool(row.get("learned", False))
    cells = []
    for name, _ in _COLUMNS:
        value = row.get(name)
        if name in ("rpm", "tpm"):
            cells.append(_limit(value, learned))
        elif name == "tokens":
            cells.append(format_tokens(value or 0))
        else:
            cells.append("" if value is None else str(value))
    return cells


def format_key_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The key pool as an aligned plain-text table (numbers right-aligned)."""
    table = [[title for _, title in _COLUMNS]] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = []
    for line in table:
        cells = [
            cell.rjust(width) if name in _NUMERIC else cell.ljust(width)
            for (name, _), cell, width in zip(_COLUMNS, line, widths)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _state_colour(state: str) -> str:
    if state.startswith("ready"):
        return "#2e7d32"
    if state.startswith("disabled"):
        return "#c62828"
    return "#ef6c00"  # cooling down, waiting: temporary


def format_key_table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The key pool as a small styled HTML ``<table>``; every value is HTML-escaped."""
    cell = "padding:1px 8px;text-align:{align};white-space:nowrap"
    head = "".join(
        f'<th style="{cell.format(align="right" if name in _NUMERIC else "left")}">{html.escape(title)}</th>'
        for name, title in _COLUMNS
    )
    body = []
    for row in rows:
        tds = []
        for (name, _), text in zip(_COLUMNS, _cells(row)):
            style = cell.format(align="right" if name in _NUMERIC else "left")
            if name == "state":
                style += f";color:{_state_colour(text)}"
            tds.append(f'<td style="{style}">{html.escape(text)}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    return (
        '<table class="nbllm-keys" style="border-collapse:collapse;font-size:12px;'
        'font-family:var(--jp-code-font-family,monospace)">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _key_segment(row: Mapping[str, Any]) -> str:
    alias, state = str(row.get("alias", "?")), str(row.get("state", ""))
    if state.startswith("ready"):
        return f"{alias} ● {row.get('in_flight', 0)} in flight {row.get('done', 0)} done"
    if state.startswith("cooling"):
        return f"{alias} ⏸ {state.replace('cooling down', 'cooling', 1)}"
    if state.startswith("disabled"):
        reason = state.partition(":")[2].strip() or "disabled"
        return f"{alias} ✗ {reason}"
    return f"{alias} · {state}"


def format_key_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """``"key-1 ● 12 in flight 340 done │ key-2 ⏸ cooling 2.1s │ key-3 ✗ revoked"``."""
    return " │ ".join(_key_segment(row) for row in rows)


class PoolStatus(list):
    """``pool.status()``: a list of per-key dicts that prints as a table."""

    def __str__(self) -> str:
        return format_key_table(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return format_key_table_html(self)
