"""Doors one way: no import cycles between edgebnn's modules, and the rooms stay in order.

Every import counts, at module level or inside a function (an import moved into a function
to dodge a cycle still is one), and so does naming a package (``import edgebnn`` from
inside it). Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; those
count as edges too, except for the packages the importer itself lives in (they ran first). The graph is read from the source with :mod:`ast`: nothing is
imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]

#: Which rooms a room may import (its own always allowed): daemon -> engine -> kernels, and
#: the model formats read into the engine's networks (never the other way).
_BELOW_DAEMON = {
    "edgebnn",
    "edgebnn._version",
    "edgebnn.engine",
    "edgebnn.engine.formats",
    "edgebnn.kernels",
    "edgebnn.package_data",
}
ALLOWED: dict[str, set[str]] = {
    "edgebnn.kernels": set(),
    "edgebnn.engine": {"edgebnn.kernels", "edgebnn.package_data"},
    "edgebnn.engine.formats": {
        "edgebnn._version",
        "edgebnn.engine",
        "edgebnn.kernels",
        "edgebnn.package_data",
    },
    "edgebnn.daemon": _BELOW_DAEMON,
    "edgebnn.bench": _BELOW_DAEMON | {"edgebnn.daemon"},
    "edgebnn.systemd": set(),
}


def _modules() -> dict[str, Path]:
    """Module name -> source file, from pyproject's package-dir mapping."""
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules = {}
    for package, folder in setup["package-dir"].items():
        for path in sorted((REPO / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]
) -> tuple[set[str], set[str]]:
    """The edgebnn modules one import statement names, and the packages it runs on the way."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            keep = len(parts) - node.level + (1 if is_package else 0)
            base = ".".join(parts[:keep] + ([base] if base else []))
        # `from pkg import x`: x is a module, or a name defined in pkg itself.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    named: set[str] = set()
    passed: set[str] = set()
    for name in names:
        parts = name.split(".")
        prefixes = [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
        present = [p for p in prefixes if p in known]
        if present:
            named.add(present[-1])
            passed.update(present[:-1])
    return named, passed


def import_graph() -> dict[str, set[str]]:
    """Module -> the edgebnn modules it loads (see the module docstring)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.stem == "__init__"
        own = {".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 1)}
        if is_package:
            own.add(module)
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                named, passed = _targets(node, module, is_package, known)
                edges |= (named | (passed - own)) - {module}
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _room(module: str) -> str:
    """The longest room name ``module`` lives in (or the module itself)."""
    rooms = [r for r in ALLOWED if module == r or module.startswith(r + ".")]
    return max(rooms, key=len) if rooms else module


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_doors_one_way(room: str) -> None:
    wrong = []
    for module, edges in import_graph().items():
        if _room(module) != room:
            continue
        for target in edges:
            target_room = _room(target)
            if target_room != room and target_room not in ALLOWED[room]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_detector_sees_a_cycle() -> None:
    """The check itself can fail: a two-module loop is found."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
