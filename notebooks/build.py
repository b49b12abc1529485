"""Write the tutorial notebooks from the cell sources in ``notebooks/_cells_*.py``: ``python -m notebooks.build``.

The cells live in Python modules (one per notebook, a list of ``md(...)`` / ``code(...)``) so that a change
to a tutorial is reviewed as a diff of code, not of notebook JSON. ``build`` writes the ``.ipynb`` files
without outputs, keeping the outputs of an earlier run only if a cell's source did not change (so
rebuilding an executed notebook after a typo fix in a markdown cell keeps its outputs);
``python -m notebooks.execute`` rebuilds, runs them on the simulator and saves the outputs.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# notebook file -> the module holding its cells
SOURCES = {
    "01_async_concurrency.ipynb": "notebooks._cells_01",
    "02_streaming.ipynb": "notebooks._cells_02",
    "03_key_pool_arithmetic.ipynb": "notebooks._cells_03",
    "04_widgets_and_magics.ipynb": "notebooks._cells_04",
}

OFFLINE_NOTE = """\
> **Runs offline, or on your keys.** With no API key configured, nbllm answers from its embedded
> simulator — a real OpenAI/Anthropic-compatible HTTP server on a loopback port, with realistic latency,
> streaming pace and rate limits — and says so once. Set `OPENAI_API_KEY` (or `API_KEY=sk-a,sk-b,sk-c` plus
> `BASE_URL` in a `.env`, as seed 002 does) and the same cells run unchanged against your provider.
> The outputs saved in this notebook come from a simulator run (`make notebooks`)."""


@dataclass
class Cell:
    kind: str  # "markdown" or "code"
    source: str
    tags: tuple[str, ...] = field(default_factory=tuple)


def _clean(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def md(text: str) -> Cell:
    """A markdown cell (dedented; ``{OFFLINE_NOTE}`` is replaced by the shared offline note)."""
    return Cell("markdown", _clean(text).replace("{OFFLINE_NOTE}", OFFLINE_NOTE))


def code(text: str, *tags: str) -> Cell:
    """A code cell (dedented), with optional cell tags such as ``"parameters"``."""
    return Cell("code", _clean(text), tuple(tags))


def make_notebook(cells: Sequence[Cell], old: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """A notebook of ``cells``; outputs of ``old`` are kept for code cells whose source is unchanged."""
    previous = {}
    if old is not None:
        previous = {c.get("id"): c for c in old.cells if c.cell_type == "code"}
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
    }
    if old is not None and "widgets" in old.metadata:
        nb.metadata["widgets"] = old.metadata["widgets"]
    for i, cell in enumerate(cells):
        cell_id = f"c{i:02d}"
        if cell.kind == "markdown":
            nb.cells.append(new_markdown_cell(cell.source, id=cell_id))
            continue
        new = new_code_cell(cell.source, id=cell_id)
        if cell.tags:
            new.metadata["tags"] = list(cell.tags)
        kept = previous.get(cell_id)
        if kept is not None and kept.source == cell.source:
            new.outputs, new.execution_count = kept.outputs, kept.execution_count
        nb.cells.append(new)
    return nb


def build(only: Iterable[str] = ()) -> list[Path]:
    """Write every notebook (or those whose file name contains one of ``only``); return their paths."""
    only = list(only)
    written = []
    for name, module_name in SOURCES.items():
        if only and not any(o in name for o in only):
            continue
        module = importlib.import_module(module_name)
        path = HERE / name
        old = nbformat.read(path, as_version=4) if path.exists() else None
        nb = make_notebook(module.CELLS, old)
        nbformat.validate(nb)
        text = nbformat.writes(nb)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def sources_match(path: Path) -> bool:
    """Whether the notebook at ``path`` holds exactly the cells its source module defines (ignoring outputs)."""
    module = importlib.import_module(SOURCES[path.name])
    nb = nbformat.read(path, as_version=4)
    expected = [(c.kind, c.source, list(c.tags)) for c in module.CELLS]
    actual = [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]
    return expected == actual


if __name__ == "__main__":
    for written_path in build(sys.argv[1:]):
        print("wrote", written_path.relative_to(HERE.parent))
