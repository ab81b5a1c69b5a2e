"""The package's shape: the Workspace is a facade over the parts, never imported back by them."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"


def import_graph() -> dict[str, set[str]]:
    """Module → the embedops modules it imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    modules = {_name(p): p for p in (SRC / "embedops").rglob("*.py") if "demo_corpus" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("embedops"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("embedops"))
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_workspace_is_in_no_import_cycle() -> None:
    graph = import_graph()
    below = reachable(graph, "embedops.workspace")
    back = sorted(m for m in below if "embedops.workspace" in graph[m])
    assert back == [], f"imported by the workspace, yet importing it back: {back}"


def test_migrations_get_their_collaborators_from_the_composition_root() -> None:
    graph = import_graph()
    assert "embedops.workspace" not in reachable(graph, "embedops.migrate.run")
    assert "embedops.evaluate.gate" not in reachable(graph, "embedops.migrate.run")
    assert {"embedops.migrate.run", "embedops.evaluate.gate"} <= graph["embedops.compose"]


def test_the_parts_the_workspace_delegates_to_are_given_what_they_use() -> None:
    graph = import_graph()
    parts = {"embedops.sync.driver", "embedops.sync.targets", "embedops.search.front"}
    assert parts <= graph["embedops.workspace"]
    for part in parts:
        assert "embedops.workspace" not in reachable(graph, part), part
