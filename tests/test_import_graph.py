"""No import cycles between cxrsearch modules.

Every module of the package is parsed with ``ast``; all imports count: module level, under
``if TYPE_CHECKING:`` and inside functions. Only edges between cxrsearch modules are kept (third-party
imports, heavy or not, are no concern here). Any cycle fails the test, listed module by module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cxrsearch

PACKAGE = Path(cxrsearch.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("cxrsearch", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The cxrsearch module ``name`` refers to (itself, else its longest known prefix)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # `from a.b import c`: the submodule a.b.c when c is one, else a.b itself
            subs = [f"{stem}.{alias.name}" for alias in node.names]
            names = [s for s in subs if s in modules]
            if len(names) < len(subs):
                names.append(stem)
        for name in names:
            if name == "cxrsearch" or name.startswith("cxrsearch."):
                target = _resolve(name, modules)
                if target is not None and target != module:
                    out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def _path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a component, for the failure message."""
    members = set(component)
    start = component[0]
    seen = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return [*seen[v], start]
            if w not in seen:
                seen[w] = [*seen[v], w]
                todo.append(w)
    return component


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "cxrsearch.cli.main" in graph and "cxrsearch.store.edge" in graph
    assert any(graph.values())


def test_find_cycles_reports_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert _path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


# Cycles present when this test was written, still to be broken; the test fails on any other cycle
# (and on a listed one that changes), and when a listed one is gone (so the list shrinks).
KNOWN_CYCLES: list[list[str]] = []


def test_no_import_cycles_between_cxrsearch_modules():
    graph = import_graph()
    cycles = [c for c in find_cycles(graph) if c not in KNOWN_CYCLES]
    listed = "\n".join(" -> ".join(_path(graph, c)) + f"   (all of: {', '.join(c)})" for c in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) between cxrsearch modules:\n{listed}"
    gone = [c for c in KNOWN_CYCLES if c not in find_cycles(graph)]
    assert not gone, f"known cycles now broken, drop them from KNOWN_CYCLES: {gone}"
