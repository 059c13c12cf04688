"""Helpers for the registry-operation tests: set-ups done in-process (fast), snapshots.

The commands under test run in subprocesses through the CLI, as a user runs them; set-up
that is not under test (a first champion, sampled data) runs in-process, where MLflow is
already imported, to keep the suite inside its time budget.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import cli_runner
from conftest import Result, edit_config, snapshot  # noqa: F401 - re-exported

WEEK_AGO = "data/diabetes_week_ago.csv"


def load_cfg(project: Path) -> Any:
    from retrainer.config import load

    return load(project / "retrainer.yaml")


def week_ago_champion(project: Path) -> dict[str, Any]:
    """The article's version 1: trained on all rows but the last 20, now the champion.

    The next `retrainer run` on all rows promotes version 2 (the article's outcome).
    """
    import pandas as pd

    from retrainer.cycle import run_cycle

    frame = pd.read_csv(project / "data" / "diabetes.csv")
    frame.iloc[:-20].to_csv(project / WEEK_AGO, index=False)
    return run_cycle(load_cfg(project), data=str(project / WEEK_AGO), trigger="setup")


def run_cycle_here(project: Path, data: str | None = None) -> dict[str, Any]:
    from retrainer.cycle import run_cycle

    return run_cycle(load_cfg(project), data=data, trigger="setup")


def history_here(project: Path) -> list[dict[str, Any]]:
    from retrainer.history import entries
    from retrainer.registry import connect

    cfg = load_cfg(project)
    return entries(connect(cfg), cfg)


def champion_state(uri: str, model: str) -> dict[str, Any]:
    """Who is champion by alias, who is in the Production stage, and the journal."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    rm = client.get_registered_model(model)
    versions = client.search_model_versions(f"name='{model}'")
    return {"champion": str(rm.aliases["champion"]) if "champion" in rm.aliases else None,
            "previous": str(rm.aliases["previous"]) if "previous" in rm.aliases else None,
            "production": sorted(str(v.version) for v in versions
                                 if v.current_stage == "Production"),
            "journal": rm.tags.get("retrainer.promotion")}


def server_project(project: Path, url: str, model: str, **changes: Any) -> Path:
    """Point a project at the shared MLflow server under its own model name."""
    edit_config(project, tracking_uri=url, model=model, experiment=model, **changes)
    return project


def sampled_csvs(project: Path, n: int) -> list[str]:
    """`n` differently sampled copies of the diabetes data (sizes 60%..100%, bootstrap)."""
    import pandas as pd

    frame = pd.read_csv(project / "data" / "diabetes.csv")
    paths = []
    for i in range(n):
        frac = 0.6 + 0.4 * i / max(n - 1, 1)
        sample = frame.sample(frac=frac, replace=True, random_state=100 + i)
        path = project / "data" / f"sample_{i}.csv"
        sample.to_csv(path, index=False)
        paths.append(str(path))
    return paths


def spawn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> cli_runner.ForkedCli:
    """Start `retrainer ARGS` in a process of its own without waiting (for concurrent and
    crash tests)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return cli_runner.start(list(args), cwd, full_env)


def finish(proc: cli_runner.ForkedCli, timeout: float = 300) -> Result:
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, err)


def run_all(commands: list[tuple[tuple[str, ...], Path, dict[str, str] | None]],
            timeout: float = 300) -> tuple[list[Result], float]:
    """Run several CLI commands at once; their results in order, and the wall time."""
    start = time.perf_counter()
    procs = [spawn(*args, cwd=cwd, env=env) for args, cwd, env in commands]
    results = [finish(p, timeout) for p in procs]
    return results, time.perf_counter() - start
