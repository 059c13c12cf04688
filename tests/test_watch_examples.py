"""The scheduling examples run the real command: cron wrapper end to end, the others checked."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import edit_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "scheduling"


def test_cron_wrapper_runs_watch_once_and_logs_one_json_line(project: Path) -> None:
    retrainer = Path(sys.executable).parent / "retrainer"
    if not retrainer.exists():
        pytest.skip("the retrainer console script is not installed beside this python")
    edit_config(project, triggers={"schedule": {"cron": "0 3 * * 1", "timezone": "UTC"}})
    env = {**os.environ, "RETRAINER_BIN": str(retrainer)}
    env.pop("MLFLOW_TRACKING_URI", None)
    # From another folder, as cron starts jobs in $HOME.
    proc = subprocess.run([str(EXAMPLES / "cron" / "retrainer-watch.sh"),
                           str(project / "retrainer.yaml")], cwd="/", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [line] = (project / "retrainer-watch.jsonl").read_text().splitlines()
    doc = json.loads(line)
    assert doc["exit"] == 0 and doc["fired"] == [] and doc["cycles"] == []
    assert doc["started"].endswith("Z")


def test_crontab_line_calls_the_wrapper() -> None:
    lines = [ln for ln in (EXAMPLES / "cron" / "crontab").read_text().splitlines()
             if ln and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(lines) == 1
    fields = lines[0].split()
    assert len(fields[:5]) == 5 and fields[5].endswith("retrainer-watch.sh")


def test_airflow_dag_runs_watch_once_with_bash_operator() -> None:
    source = (EXAMPLES / "airflow" / "retrainer_watch_dag.py").read_text()
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "BashOperator"]
    assert len(calls) == 1
    assert "watch --once --json -c" in source and "set -o pipefail" in source


def test_databricks_job_runs_the_console_script_with_watch_once() -> None:
    job = json.loads((EXAMPLES / "databricks" / "retrainer-watch-job.json").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    [task] = job["tasks"]
    wheel = task["python_wheel_task"]
    assert wheel["package_name"] == "retrainer"
    assert f'{wheel["entry_point"]} = "retrainer.cli:main"' in pyproject  # console script
    assert wheel["parameters"][:3] == ["watch", "--once", "--json"]
    assert "-c" in wheel["parameters"]
    assert job["max_concurrent_runs"] == 1
    assert job["schedule"]["quartz_cron_expression"]
