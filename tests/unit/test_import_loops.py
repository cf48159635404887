"""No import loops in the installed ``moodstream`` package, function-level imports included.

Every module under ``moodstream/`` (following the links to ``worker/``, ``producer/``,
``shared/``, ``trainer/``) is parsed with :mod:`ast`; each ``import`` statement
anywhere in it (module level, in a function, in a ``try``) is an edge to the
module it names. Imports under ``if TYPE_CHECKING:`` are not edges: they never
run. A loop is reported with its path (``a -> b -> a``).

Implicit parent-package imports (importing ``a.b.c`` runs ``a/__init__.py`` and
``a/b/__init__.py``) are not edges: a package's ``__init__`` is already running
or done when one of its modules imports a sibling.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "moodstream"
PACKAGE = "moodstream"

# Loops known and kept, each with the reason a fix is not a small move: (a, b, ...)
# as the loop's modules in order, starting from its smallest name.
KNOWN: dict[tuple[str, ...], str] = {}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, walking through the package's symlinked parts."""
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(ROOT, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        rel = Path(folder).relative_to(ROOT)
        parts = [PACKAGE, *rel.parts]
        for name in files:
            if name.endswith(".py"):
                stem = name[:-3]
                found[".".join(parts if stem == "__init__" else [*parts, stem])] = Path(folder) / name
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement in ``tree`` may load (``from a import b``
    gives both ``a`` and ``a.b``), skipping ``if TYPE_CHECKING:`` bodies."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = imported_names(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in mods and t != name}
    return graph


def loops(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """One loop per strongly connected component of more than one module (Tarjan), as
    the shortest path from its smallest module back to itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            components.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    found = []
    for comp in components:
        if len(comp) > 1:
            start = min(comp)
            found.append(_shortest_loop(graph, start, comp))
    return sorted(found)


def _shortest_loop(graph: dict[str, set[str]], start: str, comp: set[str]) -> tuple[str, ...]:
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first, inside the component, back to start
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return tuple(reversed(path))
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no loop through {start}")  # a component of >1 always has one


def test_the_walk_reaches_every_part_of_the_package():
    mods = modules()
    for part in ("worker", "producer", "shared", "trainer"):
        assert f"{PACKAGE}.{part}" in mods, f"{part} not reached through moodstream/{part}"
    assert f"{PACKAGE}.worker.pipeline" in mods and f"{PACKAGE}.shared.settings" in mods


def test_function_level_imports_and_type_checking_are_told_apart():
    tree = ast.parse("import a\n"
                     "from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    import skipped\n"
                     "def f():\n    from .sibling import thing\n    import b.c\n")
    names = imported_names(tree, "pkg.mod", is_package=False)
    assert {"a", "pkg.sibling", "pkg.sibling.thing", "b.c"} <= names and "skipped" not in names
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert loops(graph) == [("a", "b", "c")]


def test_no_import_loops():
    found = {loop: None for loop in loops(import_graph())}
    unknown = [" -> ".join([*loop, loop[0]]) for loop in found if loop not in KNOWN]
    assert not unknown, "import loops (function-level imports count):\n" + "\n".join(unknown)
    stale = [loop for loop in KNOWN if loop not in found]
    assert not stale, f"known loops that are gone, drop them from KNOWN: {stale}"
