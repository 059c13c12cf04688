"""A champion registered with plain MLflow and promoted by retrainer can be monitored.

Issue 10: such a version has no `reference_profile.json` and its run logged no training
data, so `retrainer drift` exited 2 and the drift trigger could never fire again. Judging
it now attaches a profile built from the holdout rows it was judged on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import run_cli
from watch_helpers import FEATURES, MODEL, copy_project, register_plain


@pytest.fixture
def champion_project(watch_champion: Path) -> Path:
    """The session's article champion (watch_fixtures): made once per test process, not
    once more per module; tests copy it and never change it."""
    return watch_champion


@pytest.fixture
def proj(champion_project: Path, tmp_path: Path) -> Path:
    return copy_project(champion_project, tmp_path / "proj")


def _current(proj: Path, shift_sd: float) -> str:
    frame = pd.read_csv(proj / "data" / "diabetes.csv")
    for col in ("bmi", "bp", "s5"):
        frame[col] += shift_sd * frame[col].std()
    frame.to_csv(proj / "current.csv", index=False)
    return "current.csv"


def _profile_at(client: MlflowClient, where: str, tmp: Path) -> dict:
    run_id, _, path = where.removeprefix("runs:/").partition("/")
    return json.loads(Path(client.download_artifacts(run_id, path, str(tmp))).read_text())


def test_drift_works_on_a_plain_mlflow_champion_promoted_by_retrainer(proj: Path,
                                                                     tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    uri = f"sqlite:///{proj / 'mlflow.db'}"
    version = register_plain(uri, LinearRegression(), proj / "data" / "diabetes.csv",
                             proj / "ds-artifacts")
    assert version == "2"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version(MODEL, version).run_id
    assert not client.get_run(run_id).inputs.dataset_inputs  # its run logged no data

    promoted = run_cli("promote", version, "--json", cwd=proj)
    assert promoted.code == 0, promoted.stderr
    record = promoted.json()
    assert record["decision"] == "promoted"

    drift = run_cli("drift", "--data", _current(proj, 3.0), "--json", cwd=proj)
    assert drift.code == 0, drift.stderr
    doc = drift.json()
    assert doc["dataset_drift"] is True
    assert sorted(c["column"] for c in doc["columns"] if c["drifted"]) == ["bmi", "bp", "s5"]
    assert doc["rows"]["reference"] == record["holdout"]["rows"]
    assert doc["weighting"]["method"] == "permutation"
    assert doc["prediction"]["column"] == "prediction"

    # The profile sits on the version's own run, named by a version tag, and says where
    # its rows came from.
    tags = client.get_model_version(MODEL, version).tags
    where = tags["retrainer.reference_profile"]
    assert where == f"runs:/{run_id}/reference_profile.json"
    profile = _profile_at(client, where, tmp_path)
    source = profile["source"]
    assert source["kind"] == "judged_rows" and source["version"] == version
    assert source["rows"] == record["holdout"]["rows"]
    assert source["decision_id"] == record["cycle_id"]
    assert set(profile["columns"]) == set(FEATURES)

    human = run_cli("drift", "--data", _current(proj, 0.0), cwd=proj)
    assert human.code == 0, human.stderr
    assert "reference profile built from the" in human.stdout
    assert "rows version 2 was judged on" in human.stdout
    assert "no dataset drift" in human.stdout


def test_a_version_without_a_run_gets_a_profile_run_of_its_own(proj: Path) -> None:
    """Registered from a model folder (no run at all): the profile gets a run of its own."""
    import mlflow
    from sklearn.linear_model import LinearRegression

    from retrainer.config import load
    from retrainer.cycle import judge_version
    from retrainer.drift.champion import champion_drift

    frame = pd.read_csv(proj / "data" / "diabetes.csv")
    folder = proj / "exported-model"
    mlflow.sklearn.save_model(LinearRegression().fit(frame[FEATURES], frame["target"]),
                              str(folder), serialization_format="cloudpickle",
                              input_example=frame[FEATURES].head(3),
                              pip_requirements=["scikit-learn"])
    uri = f"sqlite:///{proj / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.create_model_version(MODEL, str(folder))
    assert not mv.run_id

    cfg = load(proj / "retrainer.yaml")
    record = judge_version(cfg, str(mv.version))
    assert record["decision"] == "promoted"
    where = client.get_model_version(MODEL, str(mv.version)).tags[
        "retrainer.reference_profile"]
    run = client.get_run(where.removeprefix("runs:/").split("/")[0])
    assert run.data.tags["retrainer.kind"] == "reference_profile"
    assert run.data.tags["retrainer.version"] == str(mv.version)

    result = champion_drift(load(proj / "retrainer.yaml"), str(proj / _current(proj, 3.0)))
    assert result.version == str(mv.version)
    assert result.profile_source.startswith("built from the ")
    assert result.report.dataset_drift
    # The history shows the judgement, not the profile's run.
    history = run_cli("history", "--json", cwd=proj).json()["entries"]
    assert all(e["what"] != "reference_profile" for e in history)
