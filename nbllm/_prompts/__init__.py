"""Prompt text from templates and variables: what a ``{name}`` becomes, and a template over a table.

- ``placeholders``: ``interpolate``, ``{name}`` / ``{expr}`` placeholders filled from a namespace, JSON braces left alone.
- ``context``: a variable (a DataFrame, a long list or text) as prompt text within a token budget.
- ``table``: rows of a DataFrame or list in, one prompt per row, the answers out as columns.

Pure text work, used by ``LLM.afill`` (``nbllm._api``) and by ``%%llm`` (``nbllm._jupyter``).
"""

from .context import DEFAULT_CONTEXT_TOKENS, markdown_table, render_value
from .placeholders import find_placeholders, interpolate
from .table import answer_columns, fill_row, is_dataframe, table_rows, write_columns

__all__ = [
    "DEFAULT_CONTEXT_TOKENS",
    "answer_columns",
    "fill_row",
    "find_placeholders",
    "interpolate",
    "is_dataframe",
    "markdown_table",
    "render_value",
    "table_rows",
    "write_columns",
]
