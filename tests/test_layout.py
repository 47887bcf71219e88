"""The shape of the code (issue 14): module size, import cycles, private names across modules.

Read from the source files with ``ast`` (nothing is imported), so a failure names the file:

- every module of ``bqxdask/`` and ``benchmarks/`` has at most 500 lines;
- the modules of ``bqxdask`` import each other without a cycle, counting every import in a
  module, at its top or inside a function (a function-level import only defers the cycle);
- no module of ``bqxdask`` imports a private name (``_name``, not ``__dunder__``) of another:
  a private submodule (``from . import _faults``) is a module, not a private name.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bqxdask"
MAX_LINES = 500


@dataclass(frozen=True)
class Edge:
    target: str
    line: int


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imported_from(node: ast.ImportFrom, name: str, path: Path) -> str:
    """The absolute module ``from … import`` reads from (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path, known: dict[str, Path]) -> tuple[list[Edge], list[tuple[str, str, int]]]:
    """Edges to other bqxdask modules and the private names taken from them, anywhere in the module."""
    edges: list[Edge] = []
    private: list[tuple[str, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            edges += [Edge(a.name, node.lineno) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            source = imported_from(node, name, path)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:  # from pkg import name, pkg/name.py exists: the module
                    edges.append(Edge(submodule, node.lineno))
                elif source in known:
                    edges.append(Edge(source, node.lineno))
                    if is_private(alias.name) and source != name:
                        private.append((source, alias.name, node.lineno))
    return [e for e in edges if e.target != name], private


def graph() -> tuple[dict[str, list[Edge]], list[tuple[str, str, str, int]]]:
    known = modules()
    out: dict[str, list[Edge]] = {}
    private = []
    for name, path in known.items():
        out[name], taken = imports(name, path, known)
        private += [(name, *t) for t in taken]
    return out, private


def cycles(edges: dict[str, list[Edge]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in edges.get(v, []):
            if e.target not in index:
                visit(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in on_stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [cycle_in(c, edges) for c in components]


def cycle_in(component: list[str], edges: dict[str, list[Edge]]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    inside = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for e in edges[v]:
                if e.target == start:
                    return paths[v] + [start]
                if e.target in inside and e.target not in paths:
                    paths[e.target] = paths[v] + [e.target]
                    nxt.append(e.target)
        frontier = nxt
    raise AssertionError(f"no cycle in the component {component}")  # Tarjan guarantees one


def describe(cycle: list[str], edges: dict[str, list[Edge]]) -> str:
    hops = []
    for a, b in zip(cycle, cycle[1:]):
        line = min(e.line for e in edges[a] if e.target == b)
        hops.append(f"{a} (line {line}) → {b}")
    return "import cycle: " + ", ".join(hops)


def test_every_module_has_at_most_500_lines():
    files = sorted(PACKAGE.rglob("*.py")) + sorted((REPO / "benchmarks").rglob("*.py"))
    assert len(files) > 40
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, "modules over 500 lines: " + ", ".join(f"{k} ({v} lines)" for k, v in sorted(long.items()))


def test_no_import_cycle_among_bqxdask_modules():
    edges, _ = graph()
    assert sum(map(len, edges.values())) > 100  # the walk found the imports, function-level ones too
    found = cycles(edges)
    assert not found, "\n".join(describe(c, edges) for c in found)


def test_no_private_name_imported_from_another_bqxdask_module():
    _, private = graph()
    by_module = defaultdict(list)
    for importer, source, name, line in private:
        by_module[importer].append(f"{name} from {source} (line {line})")
    assert not by_module, "private names imported across modules: " + "; ".join(
        f"{k} imports {', '.join(v)}" for k, v in sorted(by_module.items())
    )


def test_the_checks_see_what_they_check(tmp_path):
    """The graph is built from real syntax: a cycle through a function-level import and a
    private name taken by a relative import are found in a throwaway package."""
    pkg = tmp_path / "bqxdask"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n_hidden = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import _hidden\n    return _hidden\n")
    known = {module_name(p, tmp_path): p for p in pkg.rglob("*.py")}
    edges = {}
    private = []
    for name, path in known.items():
        edges[name], taken = imports(name, path, known)
        private += taken
    assert cycles(edges) == [["bqxdask.a", "bqxdask.sub.b", "bqxdask.a"]]
    assert private == [("bqxdask.a", "_hidden", 2)]
