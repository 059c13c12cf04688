"""An inherited MLFLOW_REGISTRY_URI never splits a store the config names.

Issue 10: with `MLFLOW_REGISTRY_URI` exported (as `mlflow.set_registry_uri` does for child
processes) and a config naming another tracking store, runs went to the config's store
while versions and aliases went to the environment's: two half-registries, silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import edit_config, run_cli, snapshot

MODEL = "diabetes-ridge"


def _store(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


@pytest.mark.parametrize("named_by", ["config", "flag"])
def test_runs_versions_and_aliases_land_in_the_named_store(
        project: Path, tmp_path_factory: pytest.TempPathFactory, fresh_store,
        named_by: str) -> None:
    other = fresh_store(tmp_path_factory.mktemp("env-registry"))
    here = _store(project)
    args = ["run", "--json"]
    if named_by == "flag":
        edit_config(project, tracking_uri=None)
        args += ["--tracking-uri", here]
    result = run_cli(*args, cwd=project, env={"MLFLOW_REGISTRY_URI": other})
    assert result.code == 0, result.stderr
    record = result.json()
    assert record["decision"] == "first_champion"

    # Everything in the named store: the run, the version (of that run), the alias.
    snap = snapshot(here, MODEL)
    assert snap["aliases"] == {"champion": "1", "challenger": "1"}
    client = MlflowClient(tracking_uri=here, registry_uri=here)
    mv = client.get_model_version(MODEL, "1")
    assert mv.run_id == record["challenger"]["run_id"]
    assert client.get_run(mv.run_id).info.run_id == mv.run_id
    # ...and nothing in the environment's.
    assert snapshot(other, MODEL) == {}

    warnings = [line for line in result.stderr.splitlines() if "MLFLOW_REGISTRY_URI" in line]
    assert len(warnings) == 1, result.stderr
    assert "ignoring MLFLOW_REGISTRY_URI=" in warnings[0]
    assert ("--tracking-uri names" if named_by == "flag" else "retrainer.yaml names") \
        in warnings[0]

    # The status agrees: one store, so no separate registry is shown.
    status = run_cli("status", "--json", cwd=project,
                     env={"MLFLOW_REGISTRY_URI": other},
                     ) if named_by == "config" else None
    if status is not None:
        assert status.code == 0, status.stderr
        doc = status.json()
        assert doc["registry_uri"] == doc["tracking_uri"] == here
        assert doc["champion"]["version"] == "1"


def test_registry_uri_in_the_config_is_kept_and_status_shows_it(
        project: Path, tmp_path_factory: pytest.TempPathFactory, fresh_store) -> None:
    registry = fresh_store(tmp_path_factory.mktemp("team-registry"))
    edit_config(project, registry_uri=registry)
    result = run_cli("run", "--json", cwd=project,
                     env={"MLFLOW_REGISTRY_URI": _store(project)})
    assert result.code == 0, result.stderr
    assert "MLFLOW_REGISTRY_URI" not in result.stderr  # the config chose: nothing ignored
    assert snapshot(registry, MODEL)["aliases"]["champion"] == "1"
    assert snapshot(_store(project), MODEL) == {}

    status = run_cli("status", "--json", cwd=project)
    assert status.code == 0, status.stderr
    doc = status.json()
    assert doc["registry_uri"] == registry != doc["tracking_uri"]
    human = run_cli("status", cwd=project, env={"COLUMNS": "400"})
    assert human.code == 0, human.stderr
    assert f"registry {registry}" in human.stdout


def test_registry_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retrainer.config import load

    (tmp_path / "retrainer.yaml").write_text(
        "model: m\ndata: {source: d.csv}\ntrain: {estimator: sklearn.linear_model.Ridge}\n")
    here = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # Nothing set: the registry is the (embedded) tracking store.
    cfg = load(tmp_path / "retrainer.yaml")
    assert cfg.registry_uri == cfg.tracking_uri == here
    # An environment registry beside the embedded store is ignored too.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://registry.example:5000")
    assert load(tmp_path / "retrainer.yaml").registry_uri == here
    # Both stores from the environment: the environment names both.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    cfg = load(tmp_path / "retrainer.yaml")
    assert (cfg.tracking_uri, cfg.registry_uri) == ("http://tracking.example:5000",
                                                    "http://registry.example:5000")
    # ...unless the flag names the tracking store.
    assert load(tmp_path / "retrainer.yaml", "http://flag.example").registry_uri == \
        "http://flag.example"
    # Databricks: MLflow's own default registry beside a workspace is Unity Catalog.
    assert load(tmp_path / "retrainer.yaml", "databricks").registry_uri == "databricks-uc"
    assert load(tmp_path / "retrainer.yaml", "databricks://prod").registry_uri == \
        "databricks-uc://prod"
