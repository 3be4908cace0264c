"""The package's import graph has no cycles (issue 19).

Every ``import``/``from ... import`` in ``src/semcat`` counts, at module level and inside
functions alike: a deferred import that climbs back up the layers is still a circle, it only
fails later. Imports under ``if TYPE_CHECKING:`` are annotations and do not count.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "semcat"


def _modules(package: Path) -> dict[str, Path]:
    out = {}
    for f in package.rglob("*.py"):
        parts = list(f.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The package module a dotted name lives in (``semcat.a.b.func`` → ``semcat.a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``module`` imports anywhere outside ``if TYPE_CHECKING:`` blocks."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(filter(None, (_owner(a.name, modules) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:  # ``from semcat.x import y`` may import the submodule semcat.x.y
                target = f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                owner = _owner(target, modules)
                if owner:
                    found.add(owner)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(module)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → the package modules it imports."""
    modules = _modules(package)
    return {m: _imported(m, p, modules) for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search, sorted for a stable answer)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert "semcat.commands.demo" in graph["semcat.cli"]  # the walk sees the real package's edges
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(("source", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": set(), "c": {"a", "b"}}, None),
])
def test_find_cycle_sees_a_circle_through_several_modules(source, expected) -> None:
    assert find_cycle(source) == expected


def test_deferred_imports_count_and_type_checking_ones_do_not(tmp_path: Path) -> None:
    pkg = tmp_path / "semcat"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "low.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from semcat.high import X\n")
    (pkg / "high.py").write_text("from semcat import low\n")
    (pkg / "sub" / "deep.py").write_text("def f():\n    from ..high import X\n")
    graph = import_graph(pkg)
    assert graph["semcat.low"] == set() and graph["semcat.high"] == {"semcat.low"}
    assert graph["semcat.sub.deep"] == {"semcat.high"}
    assert find_cycle(graph) is None
    (pkg / "low.py").write_text("def f():\n    import semcat.high\n")
    assert find_cycle(import_graph(pkg)) == ["semcat.high", "semcat.low", "semcat.high"]
