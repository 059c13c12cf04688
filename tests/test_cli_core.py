"""The command-line contract, run as a user runs it: a subprocess, exit codes, stdout/stderr."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_project, edit_config, registry_snapshot, run_cli


@pytest.fixture(scope="module")
def champion_project(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Path:
    """A project whose registry already has a champion (made once, copied per test)."""
    from retrainer.config import load
    from retrainer.cycle import run_cycle
    from retrainer.project import write_example

    base = tmp_path_factory.mktemp("champion")
    write_example(base, "diabetes")
    shutil.copyfile(store_template, base / "mlflow.db")
    run_cycle(load(base / "retrainer.yaml"))
    return base


@pytest.fixture
def proj(champion_project: Path, tmp_path: Path) -> Path:
    return copy_project(champion_project, tmp_path / "proj")


def _assert_user_error(result, fragment: str) -> None:
    assert result.code == 2, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0], lines[0]
    assert result.stdout == ""


def test_help_is_fast_because_heavy_libraries_load_lazily() -> None:
    code = ("import sys, retrainer.cli; "
            "heavy = [m for m in ('mlflow', 'pandas', 'sklearn', 'numpy') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    result = run_cli("--help", cwd=".", fresh=True)  # a new interpreter, as a user starts it
    assert result.code == 0
    for command in ("init", "demo", "run", "status"):
        assert command in result.stdout


@pytest.mark.parametrize("args", [["bogus"], ["run", "--bogus"], ["promote"],
                                  ["history", "--limit", "abc"]])
def test_usage_errors_exit_2_without_a_traceback(args: list[str], tmp_path: Path) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr and "Error:" in result.stderr


def test_init_then_run_then_status(tmp_path: Path, fresh_store) -> None:
    result = run_cli("init", str(tmp_path / "p"), cwd=tmp_path)
    assert result.code == 0, result.stderr
    proj = tmp_path / "p"
    assert {p.name for p in proj.iterdir()} >= {"retrainer.yaml", "train.py", "data"}
    fresh_store(proj)
    run = run_cli("run", "--json", cwd=proj)
    assert run.code == 0, run.stderr
    record = json.loads(run.stdout)  # exactly one JSON document
    assert record["decision"] == "first_champion"
    assert record["challenger"]["version"] == "1"
    status = run_cli("status", "--json", cwd=proj)
    doc = status.json()
    assert doc["champion"]["version"] == "1"
    assert doc["last_decision"]["decision"] == "first_champion"
    again = run_cli("init", str(proj), cwd=tmp_path)
    _assert_user_error(again, "already exists")


def test_run_prints_tables_and_the_decision(proj: Path) -> None:
    result = run_cli("run", cwd=proj)
    assert result.code == 0, result.stderr
    assert "clean holdout" in result.stdout
    assert "As each run logged it" in result.stdout
    assert "kept_champion" in result.stdout or "promoted" in result.stdout


def test_fail_on_reject_exits_3(proj: Path) -> None:
    edit_config(proj, train={"params": {"alpha": 1000.0}})
    result = run_cli("run", "--fail-on-reject", "--json", cwd=proj)
    assert result.code == 3, result.stderr
    assert json.loads(result.stdout)["decision"] == "kept_champion"


def test_status_without_a_champion(tmp_path: Path, fresh_store) -> None:
    from retrainer.project import write_example

    write_example(tmp_path, "diabetes")
    fresh_store(tmp_path)
    doc = run_cli("status", "--json", cwd=tmp_path).json()
    assert doc["champion"] is None and doc["last_decision"] is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_INPUTS = {
    "missing config": (lambda p: (p / "retrainer.yaml").unlink(), [], "config file not found"),
    "unparsable config": (lambda p: (p / "retrainer.yaml").write_text("model: [\n"), [],
                          "cannot parse YAML"),
    "unknown key": (lambda p: edit_config(p, gaet={"mode": "enforce"}), [],
                    "unknown key 'gaet' (did you mean 'gate'?)"),
    "missing data file": (None, ["--data", "nope.csv"], "data file not found"),
    "empty dataset": (lambda p: (p / "empty.csv").write_text("a,target\n"),
                      ["--data", "empty.csv"], "has no rows"),
    "missing target column": (
        lambda p: pd.read_csv(p / "data/diabetes.csv").drop(columns=["target"])
        .to_csv(p / "x.csv", index=False), ["--data", "x.csv"], "target column 'target'"),
    "missing target values": (
        lambda p: pd.read_csv(p / "data/diabetes.csv").assign(
            target=lambda f: f["target"].where(f.index > 4)).to_csv(p / "x.csv", index=False),
        ["--data", "x.csv"], "5 missing values"),
    "non-numeric feature": (
        lambda p: pd.read_csv(p / "data/diabetes.csv").assign(city="Paris")
        .to_csv(p / "x.csv", index=False), ["--data", "x.csv"], "feature column 'city'"),
    "unknown metric": (lambda p: edit_config(p, metrics=["rmse", "rmsle"]), [],
                       "unknown metric 'rmsle'"),
    "estimator does not import": (
        lambda p: edit_config(p, replace=("train",),
                              train={"estimator": "sklearn.linear_model.Ridgee"}),
        [], "does not import"),
    "entrypoint raises": (
        lambda p: (p / "train.py").write_text(
            "def train(X, y, params):\n    raise ValueError('approved data is stale')\n"),
        [], "approved data is stale"),
    "unreachable tracking server": (
        None, ["--tracking-uri", f"http://127.0.0.1:{_free_port()}"],
        "cannot reach the MLflow tracking server"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_exit_2_one_line_and_registry_unchanged(proj: Path, case: str) -> None:
    prepare, args, fragment = BAD_INPUTS[case]
    before = registry_snapshot(proj)
    if prepare:
        prepare(proj)
    result = run_cli("run", "--json", *args, cwd=proj, timeout=120)
    _assert_user_error(result, fragment)
    assert registry_snapshot(proj) == before


def test_demo_json_runs_the_article(tmp_path: Path) -> None:
    result = run_cli("demo", str(tmp_path / "demo"), "--json", cwd=tmp_path)
    assert result.code == 0, result.stderr
    cycles = json.loads(result.stdout)["cycles"]
    assert [c["decision"] for c in cycles] == ["first_champion", "promoted"]
    assert cycles[1]["holdout"]["clean_rows"] == 67
    # Both policies on the article's scores: its noise-level win, judged each way.
    policies = json.loads(result.stdout)["policies"]
    assert [p["decision"] for p in policies] == ["promoted", "kept_champion", "kept_champion",
                                                 "promoted"]
    assert policies[0]["notes"] == ["the difference is within noise: 95% interval -76..+43 "
                                    "crosses 0"]
    assert "the evidence is too thin for the 1% margin" in policies[2]["reason"]
