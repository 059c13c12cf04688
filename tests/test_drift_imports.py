"""The drift package's import rules: the profile stays low level, nothing cycles through drift.

Training builds the reference profile, so `drift.profile` must import nothing that
imports training; only `drift.champion` may reach up to the registry and evaluation.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import retrainer

SRC = Path(retrainer.__file__).resolve().parent.parent
UP = {"retrainer.registry", "retrainer.evaluation", "retrainer.training", "retrainer.cycle"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Each src/retrainer module -> the retrainer modules it imports, wherever the import is.

    Importing `retrainer.drift.x` also imports the package `retrainer.drift`.
    """
    files = {_module_name(p): p for p in (SRC / "retrainer").rglob("*.py")}
    files = {m: p for m, p in files.items() if ".examples" not in m}

    def resolve(dotted: str) -> set[str]:
        parts = dotted.split(".")
        prefixes = (".".join(parts[:i]) for i in range(2, len(parts) + 1))
        return {name for name in prefixes if name in files}

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    deps |= resolve(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                deps |= resolve(node.module)
                for alias in node.names:
                    deps |= resolve(f"{node.module}.{alias.name}")
        graph[module] = deps - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module."""
    reach = {m: _reachable(graph, m) for m in graph}
    seen: set[str] = set()
    out = []
    for m in sorted(graph):
        if m in seen:
            continue
        comp = {m} | {o for o in reach[m] if m in reach[o]}
        seen |= comp
        if len(comp) > 1:
            out.append(comp)
    return out


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    todo, found = [start], set()
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in found:
                found.add(dep)
                todo.append(dep)
    return found


def test_graph_sees_imports_inside_functions() -> None:
    # training imports the profile inside a function: the graph must still see it.
    graph = _import_graph()
    assert "retrainer.drift.profile" in graph["retrainer.training"]
    assert "retrainer.drift" in graph["retrainer.training"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_cycle_through_drift_or_training() -> None:
    graph = _import_graph()
    drift_modules = {m for m in graph if m.startswith("retrainer.drift")}
    for cycle in _cycles(graph):
        assert not cycle & (drift_modules | {"retrainer.training"}), sorted(cycle)
    assert {d for d in graph["retrainer.training"] if d in drift_modules} == {
        "retrainer.drift",
        "retrainer.drift.profile",
    }
    assert graph["retrainer.drift"] == set()  # the package's __init__ imports nothing
    assert graph["retrainer.drift.profile"] == {"retrainer.errors"}
    # Only the champion entry point reaches up to the registry, evaluation, training.
    for module in drift_modules - {"retrainer.drift.champion"}:
        assert not _reachable(graph, module) & UP, module


def test_importing_the_profile_loads_no_statistics_or_mlflow() -> None:
    code = (
        "import json, sys; import retrainer.drift.profile; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('retrainer', 'scipy', 'mlflow', 'sklearn', 'pyspark'))))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert loaded == {
        "retrainer",
        "retrainer.errors",
        "retrainer.drift",
        "retrainer.drift.profile",
    }


def test_drift_command_modules_load_no_mlflow_sklearn_or_scipy_stats() -> None:
    # `retrainer drift` is mostly start-up: the statistics use scipy.special only, and the
    # registry and the model (MLflow, scikit-learn) load when the command reaches them.
    code = (
        "import json, sys; import retrainer.drift.champion, retrainer.cli.drift_watch; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mlflow', 'sklearn', 'skops') or m.startswith(('scipy.stats', 'scipy.spatial')))))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == []
