"""The table side of one template over many rows (``LLM.afill``, ``%%llm --over``): rows in, columns out.

```python
rows = table_rows(df)                                   # one dict per row, in order
prompt = fill_row(template, rows[0], namespace)         # {column} from the row, other names from namespace
columns = answer_columns(results, "sentiment")          # sentiment, sentiment_error, sentiment.<field>…
out = write_columns(df, rows, columns)                  # into df (in place), or a new DataFrame
```

Input: a pandas DataFrame, a list of dicts, or a list of strings (each is the column ``text``). Output:
column ``to`` holds each answer's text in row order, empty (None) where the row failed, with that
row's error in ``to_error``. A result that carries parsed fields (a ``parsed`` attribute holding a dict,
a pydantic model or a dataclass — what structured outputs return) also fills one column per field,
``to.field``. pandas is imported only to build the output table.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import ConfigurationError
from .context import DEFAULT_CONTEXT_TOKENS, render_value
from .placeholders import interpolate

__all__ = ["answer_columns", "fill_row", "is_dataframe", "table_rows", "write_columns"]

Row = dict[str, Any]


def is_dataframe(data: Any) -> bool:
    """True for a pandas DataFrame (without importing pandas: if it is not imported, nothing is one)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


def table_rows(data: Any) -> list[Row]:
    """One dict per row, in order: a DataFrame's records, a list's dicts, or ``{"text": s}`` per string."""
    if is_dataframe(data):
        return [{str(k): v for k, v in record.items()} for record in data.to_dict("records")]
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise ConfigurationError(
            f"Rows must be a pandas DataFrame, a list of dicts or a list of strings; got {type(data).__name__}."
        )
    rows: list[Row] = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            rows.append({"text": item})
        elif isinstance(item, Mapping):
            rows.append({str(k): v for k, v in item.items()})
        else:
            raise ConfigurationError(
                f"Row {i} is a {type(item).__name__}; a list of rows must hold dicts (one per row) or strings."
            )
    return rows


def fill_row(template: str, row: Row, namespace: Mapping[str, Any] | None = None,
             context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> str:
    """``template`` with ``{column}`` from ``row`` (``{row["a column"]}`` for any name), other names from
    ``namespace``; the same brace rules as ``%%llm``, each value kept within ``context_tokens``."""
    names = {**(namespace or {}), **row, "row": row}
    return interpolate(template, names, render=lambda value: render_value(value, context_tokens))


def _fields(parsed: Any) -> Mapping[str, Any]:
    """The fields of a parsed answer: a dict as it is, a pydantic model dumped, a dataclass as a dict."""
    if isinstance(parsed, Mapping):
        return parsed
    if hasattr(parsed, "model_dump"):
        return parsed.model_dump()
    if dataclasses.is_dataclass(parsed) and not isinstance(parsed, type):
        return dataclasses.asdict(parsed)
    return {"parsed": parsed}


def answer_columns(results: Sequence[Any], to: str) -> dict[str, list[Any]]:
    """Columns for ``results`` (Response, Failure or None for an item not run): ``to``, ``to_error``, ``to.field``."""
    texts: list[Any] = []
    errors: list[str | None] = []
    parsed: dict[str, list[Any]] = {}
    for i, result in enumerate(results):
        ok = result is not None and bool(getattr(result, "ok", False))
        texts.append(result.text if ok else None)
        error = getattr(result, "error", None) if result is not None and not ok else None
        errors.append(f"{type(error).__name__}: {error}" if error is not None else None)
        value = getattr(result, "parsed", None) if ok else None
        for name, field in (_fields(value).items() if value is not None else ()):
            parsed.setdefault(f"{to}.{name}", [None] * len(results))[i] = field
    return {to: texts, f"{to}_error": errors, **parsed}


def write_columns(data: Any, rows: list[Row], columns: Mapping[str, list[Any]]) -> Any:
    """Put ``columns`` into ``data`` if it is a DataFrame (in place, and return it), else into a new one.

    An error column is written only when a row failed or the table already has one (a rerun that
    succeeds then clears the old errors).
    """
    if is_dataframe(data):
        frame = data
    else:
        try:
            import pandas
        except ImportError:
            raise ConfigurationError("The answers of a list of rows come back as a pandas DataFrame: "
                                     "pip install pandas (or pass a DataFrame).") from None
        frame = pandas.DataFrame(rows)
    for name, values in columns.items():
        if name.endswith("_error") and name not in frame.columns and not any(v is not None for v in values):
            continue
        frame[name] = values
    return frame
