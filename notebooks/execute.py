"""Execute the tutorial notebooks and write them back with their outputs: ``python -m notebooks.execute``.

    python -m notebooks.execute                       # sync from the .py sources, run them all, write back
    python -m notebooks.execute 03                    # only the notebooks whose name contains "03"
    python -m notebooks.execute --check               # run them, check them, write nothing
    python -m notebooks.execute --no-sync --check     # run the committed .ipynb files as they are

Each tutorial's source is ``notebooks/NN_name.py``, a jupytext percent-format file paired with
``NN_name.ipynb`` (``notebooks/jupytext.toml``). Before running, the notebook is read from that source: its
cells are the .py's, while cell ids and notebook metadata carry over from the paired .ipynb, so an edit to the
.py reaches the .ipynb and a rerun changes only what ran differently.

Each notebook runs through nbclient in a fresh directory of its own (a temporary copy, so no ``.env`` of
the checkout is found), with every key variable removed from the kernel's environment and ``NBLLM_STORE``
in a temporary folder: the saved outputs are those of an offline run on nbllm's embedded simulator.
Widget state is saved so progress bars render where widgets render (nbviewer, JupyterLab).

Before anything is written, the executed notebook is scanned for key-shaped strings (``sk-…`` longer than
the masked ``sk-…abcd`` form, the simulator's default key, and any key of the calling environment); if one
is found, nothing is written and the command fails.
"""

from __future__ import annotations

import argparse
import copy
import html
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SOURCES = sorted(HERE.glob("[0-9][0-9]_*.py"))  # the percent-format source of each tutorial notebook

# a provider key in clear: "sk-" (or "sk-ant-", "sk-proj-"…) and at least 16 more key characters. The masked
# form nbllm prints ("sk-…abcd") has an ellipsis right after the dash, so it never matches.
KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")
KNOWN_SECRETS = ("sim-local-key",)  # the key nbllm's default simulator route uses
MAX_NOTEBOOK_BYTES = 1_500_000


class NotebookRunError(RuntimeError):
    """A notebook cannot be run offline, or its result must not be written (an error, a key, its size)."""


def clean_env(overrides: Mapping[str, str] | None = None, store_dir: str | Path | None = None) -> dict[str, str]:
    """The kernel's environment: this process's, minus every key and provider setting, plus overrides."""
    env = {
        name: value for name, value in os.environ.items()
        if "API_KEY" not in name and not name.endswith("BASE_URL") and not name.startswith("NBLLM_")
    }
    if store_dir is not None:
        env["NBLLM_STORE"] = str(Path(store_dir) / "store.sqlite3")
    env.update(overrides or {})
    return env


def find_secrets(text: str, extra: Iterable[str] = ()) -> list[str]:
    """Key-shaped strings in ``text`` (each shown masked, so the report itself leaks nothing)."""
    found = {m.group(0) for m in KEY_PATTERN.finditer(text)}
    for secret in (*KNOWN_SECRETS, *extra):
        if secret and len(secret) >= 8 and secret in text:
            found.add(secret)
    return sorted(f"{s[:3]}…{s[-4:]} ({len(s)} chars)" for s in found)


def _environment_secrets() -> list[str]:
    """Values of key variables in the calling environment, which must never reach a saved notebook."""
    secrets = []
    for name, value in os.environ.items():
        if "API_KEY" in name:
            secrets.extend(part.strip() for part in value.split(",") if len(part.strip()) >= 8)
    return secrets


def cell_inputs(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    """What a notebook's source file holds of each cell: its type, its source and its tags (not outputs)."""
    return [(cell.cell_type, cell.source, list(cell.metadata.get("tags", []))) for cell in nb.cells]


def notebook_from_source(source: str | Path) -> nbformat.NotebookNode:
    """The tutorial whose cells are those of the percent file ``source``, joined to its paired .ipynb.

    Cell ids, outputs and notebook metadata come from the .ipynb where a cell is unchanged (jupytext's own
    matching, as ``jupytext --update`` does). If the .ipynb holds other cells and is the newer file, it was
    edited without jupytext; rather than overwrite that edit, this stops and says how to carry it over.
    """
    source = Path(source)
    nb = jupytext.read(source)
    paired = source.with_suffix(".ipynb")
    if not paired.exists():
        return nb
    committed = nbformat.read(paired, as_version=4)
    if cell_inputs(committed) != cell_inputs(nb) and paired.stat().st_mtime > source.stat().st_mtime:
        raise NotebookRunError(
            f"{paired.name} has cells that {source.name} does not and is the newer file (edited without "
            f"jupytext?): run `jupytext --sync {paired}` to copy the edit into {source.name}, or touch "
            f"{source.name} to discard it.")
    return combine_inputs_with_outputs(nb, committed)


def execute_notebook(notebook: str | Path | nbformat.NotebookNode, workdir: str | Path | None = None,
                     env: Mapping[str, str] | None = None, timeout: int = 900,
                     name: str | None = None) -> nbformat.NotebookNode:
    """Run ``notebook`` (a notebook, or the path of an .ipynb or percent .py) in ``workdir`` and return it.

    ``workdir`` is a new temporary folder by default; the notebook is saved there as ``name``.ipynb (default:
    the file's stem). ``env`` adds to the cleaned environment (e.g. ``{"NBLLM_TUTORIAL_N": "1000"}``).
    Errors raise ``nbclient.exceptions.CellExecutionError``.
    """
    if isinstance(notebook, nbformat.NotebookNode):
        nb = copy.deepcopy(notebook)  # the caller's notebook keeps its outputs
    else:
        nb, name = jupytext.read(notebook), name or Path(notebook).stem
    name = name or "notebook"
    owned = workdir is None
    where = Path(tempfile.mkdtemp(prefix=f"nbllm-{name}-")) if owned else Path(workdir)
    where.mkdir(parents=True, exist_ok=True)
    try:
        stray = [p / ".env" for p in (where, *where.parents) if (p / ".env").is_file()]
        if stray:  # nbllm would read keys from it: the run would not be the offline one
            raise NotebookRunError(f"refusing to run {name}: the kernel would read {stray[0]}; move it away.")
        nbformat.write(nb, where / f"{name}.ipynb")  # the folder looks like the user's: the notebook in it
        client = NotebookClient(
            nb, kernel_name="python3", timeout=timeout, startup_timeout=120,
            store_widget_state=True, record_timing=False, coalesce_streams=True,
            resources={"metadata": {"path": str(where)}},
        )
        client.execute(env=clean_env(env, store_dir=where))
        finalize_widget_text(nb)
        return nb
    finally:
        if owned:
            shutil.rmtree(where, ignore_errors=True)


class _TableText(HTMLParser):
    """The text of an HTML table, one line per row, cells padded to their column's width."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.other: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif data.strip():
            self.other.append(" ".join(data.split()))

    def text(self) -> str:
        rows = [r for r in self.rows if r]
        widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max((len(r) for r in rows), default=0))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
        return "\n".join(lines + self.other)


def _widget_text(model_id: str, state: Mapping[str, dict]) -> str | None:
    """A plain-text rendering of a saved widget's final state (a tqdm bar, or an HTML table)."""
    model = state.get(model_id)
    if model is None:
        return None
    name, values = model.get("model_name"), model.get("state", {})
    if name == "HTMLModel":
        parser = _TableText()
        parser.feed(values.get("value", ""))
        return parser.text() or None
    if name == "HBoxModel":  # tqdm.notebook: [description HTML, FloatProgress, counters HTML]
        parts = [state.get(child.removeprefix("IPY_MODEL_"), {}) for child in values.get("children", [])]
        if [p.get("model_name") for p in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
            return None
        left, bar, right = (p.get("state", {}) for p in parts)
        fraction = bar.get("value", 0) / bar["max"] if bar.get("max") else 0
        filled = round(10 * min(1.0, fraction))
        text = f"{left.get('value', '')}|{'█' * filled}{' ' * (10 - filled)}|{right.get('value', '')}"
        return html.unescape(text).replace("\u2007", " ")
    if name == "VBoxModel" and "nbllm-panel" in values.get("_dom_classes", []):
        texts = [t for t in (_widget_text(m, state) for m in _html_descendants(model_id, state)) if t]
        return "\n\n".join(["[nbllm.PromptPanel]", *texts])
    return None


def _html_descendants(model_id: str, state: Mapping[str, dict]) -> list[str]:
    """The ids of the HTML widgets inside a box, in display order."""
    model = state.get(model_id, {})
    if model.get("model_name") == "HTMLModel":
        return [model_id]
    found = []
    for child in model.get("state", {}).get("children", []):
        found += _html_descendants(child.removeprefix("IPY_MODEL_"), state)
    return found


def finalize_widget_text(nb: nbformat.NotebookNode) -> int:
    """Make each widget output's text/plain show the widget's final state (what a static renderer shows).

    A widget's text/plain is its repr when it was first displayed — a progress bar at 0 % — and static
    renderers (GitHub, nbconvert to text) show that. Returns how many outputs were rewritten.
    """
    saved = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    state = saved.get("state", {})
    changed = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if not view:
                continue
            text = _widget_text(view.get("model_id", ""), state)
            if text:
                out["data"]["text/plain"] = text
                changed += 1
    return changed


def check_outputs(nb: nbformat.NotebookNode, name: str) -> str:
    """The notebook as JSON text, after checking it has no error output, no key and a modest size."""
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    if errors:
        raise NotebookRunError(f"{name}: {len(errors)} error output(s): {errors[0].get('ename')}: {errors[0].get('evalue')}")
    text = jupytext.writes(nb, fmt="ipynb") + "\n"  # as jupytext saves an .ipynb: no .py-only header fields
    leaked = find_secrets(text, _environment_secrets())
    if leaked:
        raise NotebookRunError(f"{name}: refusing to write, key-like strings in the outputs: {', '.join(leaked)}")
    if len(text.encode()) > MAX_NOTEBOOK_BYTES:
        raise NotebookRunError(f"{name}: {len(text.encode()) / 1e6:.1f} MB is too large to commit; trim the outputs.")
    return text


def _run_one(source: Path, args: argparse.Namespace, env: Mapping[str, str] | None) -> None:
    """Execute one tutorial, check it, and (unless ``--check``) write its .ipynb."""
    paired = source.with_suffix(".ipynb")
    start = time.perf_counter()
    print(f"executing {paired.name} …", flush=True)
    nb = nbformat.read(paired, as_version=4) if args.no_sync else notebook_from_source(source)
    nb = execute_notebook(nb, env=env, timeout=args.timeout, name=source.stem)
    text = check_outputs(nb, paired.name)
    elapsed = time.perf_counter() - start
    if args.check:
        print(f"  ok in {elapsed:.0f} s (not written)")
        return
    paired.write_text(text, encoding="utf-8")
    print(f"  ok in {elapsed:.0f} s, wrote {paired.relative_to(HERE.parent)} ({len(text.encode()) // 1024} KB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only notebooks whose file name contains one of these")
    parser.add_argument("--no-sync", action="store_true", help="run the .ipynb files as they are, not their .py sources")
    parser.add_argument("--check", action="store_true", help="execute and check, but write nothing back")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    parser.add_argument("--n", type=int, help="NBLLM_TUTORIAL_N for a quicker notebook 03 (only with --check)")
    args = parser.parse_args(argv)
    if args.n is not None and not args.check:
        parser.error("--n changes what the notebooks show: use it with --check only")
    env = {"NBLLM_TUTORIAL_N": str(args.n)} if args.n is not None else None

    sources = [p for p in SOURCES if not args.only or any(o in p.name for o in args.only)]
    if not sources:
        print("no notebook matched", args.only, file=sys.stderr)
        return 1
    for source in sources:
        try:
            _run_one(source, args, env)
        except NotebookRunError as error:
            print(f"  FAILED: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
