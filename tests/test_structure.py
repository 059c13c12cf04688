"""The house rules, checked: no import cycle among retrainer's modules, no module too big.

Imports are read with `ast`, including imports inside functions and under TYPE_CHECKING:
a lazy import is still a dependency a reader has to hold in their head. Importing
`retrainer.a.b` also imports the package `retrainer.a` (its ``__init__`` runs first).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "retrainer"
MAX_LINES = 550  # "no module over ~500 lines"


def _modules() -> dict[str, Path]:
    found = {}
    for file in SRC.rglob("*.py"):
        parts = list(file.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = file
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, file in modules.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                if target not in modules or target == name:
                    continue
                deps.add(target)
                parent = target
                while "." in parent:
                    parent = parent.rpartition(".")[0]
                    # A module's own packages are already importing when it runs.
                    if parent in modules and parent != "retrainer" \
                            and not name.startswith(parent + "."):
                        deps.add(parent)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_retrainer_modules() -> None:
    graph = import_graph()
    assert len(graph) > 20  # the walk found the package
    assert cycles(graph) == []


def test_the_cycle_detector_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_low_level_steps_import_nothing_above_them() -> None:
    """The rules docs/architecture.md states under "Who may import whom"."""
    graph = import_graph()
    for leaf in ("retrainer.stamp", "retrainer.errors", "retrainer.events", "retrainer.redact"):
        assert graph[leaf] == set(), leaf
    assert graph["retrainer.locks"] <= {"retrainer.errors", "retrainer.stamp"}
    # Building a reference profile is a step training calls: nothing above it.
    assert graph["retrainer.drift.profile"] <= {"retrainer.errors"}
    deciders = ("retrainer.cycle", "retrainer.evaluation", "retrainer.training",
                "retrainer.drift", "retrainer.rollout")
    for name, deps in graph.items():
        if name.startswith("retrainer.registry"):
            assert not [d for d in deps if d.startswith(deciders)], name
        if name.startswith("retrainer.rollout"):
            assert "retrainer.cycle" not in deps, name  # the re-check is handed in
    for check in ("schedule", "new_version", "drift", "performance"):
        assert "retrainer.triggers.watcher" not in graph[f"retrainer.triggers.{check}"]


def test_no_module_is_over_the_size_of_one_idea() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_only_shap_values_imports_the_optional_shap_and_only_lazily() -> None:
    """`shap` is an optional extra that costs ~3 s to import: one module, inside functions."""
    importers = {}
    for name, file in _modules().items():
        tree = ast.parse(file.read_text())
        in_functions = {id(n) for f in ast.walk(tree)
                        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                        for n in ast.walk(f)}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "shap" or n.startswith("shap.") for n in names):
                importers.setdefault(name, []).append(id(node) not in in_functions)
    assert set(importers) == {"retrainer.shap_values"}
    assert not any(importers["retrainer.shap_values"])  # never at module level
