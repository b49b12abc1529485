"""The package's shape, checked from its source: no import circles, packages used only through their
interface, no private names borrowed across modules, and hard dependencies limited to what nbllm imports.

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import is still a
dependency, and a circle of them is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nbllm"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _imports(name: str) -> Iterator[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every ``import`` in module ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, "", node.lineno


def _resolve(target: str, name: str) -> tuple[str, str]:
    """(module the import reads, name read from it or '' when ``name`` is itself a module)."""
    if f"{target}.{name}" in MODULES:
        return f"{target}.{name}", ""
    return target, name


def _internal_edges() -> Iterator[tuple[str, str, str, int]]:
    """(importer, imported module, name, line) for imports of nbllm's own modules."""
    for importer in MODULES:
        for target, name, line in _imports(importer):
            module, attr = _resolve(target, name)
            if module in MODULES:
                yield importer, module, attr, line


def _package_of(module: str) -> str:
    return module if module in PACKAGES else module.rpartition(".")[0]


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for importer, module, _, _ in _internal_edges():
        if module != "nbllm" and not importer.startswith(module + "."):  # a package's own __init__ is its parent
            graph[importer].add(module)
    visiting, done, circles = set(), set(), []

    def visit(node: str, path: list[str]) -> None:
        visiting.add(node)
        for nxt in graph[node]:
            if nxt in visiting:
                circles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        visiting.discard(node)
        done.add(node)

    for start in graph:
        if start not in done:
            visit(start, [start])
    assert circles == []


def test_other_packages_are_used_through_their_interface() -> None:
    """Outside a subpackage, code imports the subpackage, never one of its modules (tests may)."""
    reaching_in = []
    for importer, module, _, line in _internal_edges():
        owner = _package_of(module)
        if module in PACKAGES or owner in ("nbllm", ""):
            continue  # a package's interface, or a foundation module at the top
        if not (importer == owner or importer.startswith(owner + ".")):
            reaching_in.append(f"{importer}:{line} imports {module}")
    assert reaching_in == []


def test_no_private_names_are_imported_across_modules() -> None:
    borrowed = [
        f"{importer}:{line} imports {module}.{name}"
        for importer, module, name, line in _internal_edges()
        if name.startswith("_") and not name.startswith("__")
    ]
    assert borrowed == []


def test_no_private_attributes_of_other_objects_are_read() -> None:
    """``x._name`` only on ``self``/``cls`` (or objects of the same module's classes, listed here)."""
    same_module = {("nbllm._keys.pool", "_pool")}  # Lease and KeyPool share one module
    found = []
    for name, path in MODULES.items():
        if name.startswith("nbllm._sim"):
            continue  # the simulator is a separate program with its own conventions
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            base = node.value
            while isinstance(base, ast.Attribute):
                if (name, base.attr) in same_module:
                    break
                base = base.value
            else:
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                if node.attr == "_replace":  # namedtuple's public API
                    continue
                found.append(f"{name}:{node.lineno} .{node.attr}")
    assert found == []


def test_hard_dependencies_are_what_import_nbllm_uses() -> None:
    """A base install imports no httpx2, aiolimiter or httpx-aiohttp: they are extras."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    hard = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in pyproject["project"]["dependencies"]}
    assert not hard & {"httpx2", "httpx", "aiolimiter", "httpx-aiohttp"}
    code = "import sys, nbllm; nbllm.LLM(); print(sorted(m for m in ('httpx2', 'aiolimiter', 'httpx_aiohttp', 'httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith("nbllm._sim")))
def test_modules_stay_small(name: str) -> None:
    lines = MODULES[name].read_text().count("\n")
    assert lines <= 420, f"{name} has {lines} lines; split it by job"
