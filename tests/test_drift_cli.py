"""`retrainer drift` end to end: a real cycle on a temp sqlite store, then drift checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from retrainer.config import load
from retrainer.drift.champion import champion_drift
from retrainer.errors import UserError
from retrainer.project import write_example

SHIFTED = ["age", "bmi", "bp", "s1", "s5", "s6"]  # 6 of 10 columns: over drift.share 0.5


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Path:
    """One real cycle (first champion) for the whole module; tests only read it."""
    project = tmp_path_factory.mktemp("drift-project")
    write_example(project, "diabetes")
    shutil.copyfile(store_template, project / "mlflow.db")
    result = run_cli("run", "--json", cwd=project)
    assert result.code == 0, result.stderr
    assert result.json()["decision"] == "first_champion"
    full = pd.read_csv(project / "data" / "diabetes.csv")
    features = full.drop(columns=["target"])
    features.to_csv(project / "same.csv", index=False)
    shifted = features.copy()
    for col in SHIFTED:
        shifted[col] += shifted[col].std()  # +1 sd
    shifted.to_csv(project / "shifted.csv", index=False)
    return project


def test_drift_json_on_shifted_data(trained: Path, cli) -> None:
    out = cli(
        "drift",
        "--data",
        "shifted.csv",
        "--json",
        "--fail-on-drift",
        "--html",
        "report.html",
        cwd=trained,
    )
    assert out.code == 3, out.stderr  # --fail-on-drift and the dataset drifted
    doc = out.json()
    assert set(doc) == {"dataset_drift", "columns", "prediction", "share_drifted", "rows",
                        "rules", "verdict", "weighted_share_drifted", "weighting"}
    assert doc["dataset_drift"] is True
    flagged = sorted(c["column"] for c in doc["columns"] if c["drifted"])
    assert flagged == sorted(SHIFTED)
    assert doc["share_drifted"] == pytest.approx(0.6)
    assert doc["rows"] == {"reference": 331, "current": 442}  # the champion's training rows
    for col in doc["columns"]:
        assert col["statistic"] == "psi"
        assert (col["value"] > col["threshold"]) == col["drifted"]
    # Champion predictions on the shifted rows move too.
    assert doc["prediction"]["column"] == "prediction" and doc["prediction"]["drifted"]
    page = (trained / "report.html").read_text()
    for col in ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "prediction"]:
        assert f"<h3>{col} " in page


def test_drift_on_undrifted_data_exits_0_with_a_table(trained: Path, cli) -> None:
    out = cli("drift", "--data", "same.csv", "--fail-on-drift", cwd=trained)
    assert out.code == 0, out.stderr
    assert "Drift against champion version 1" in out.stdout
    assert "no dataset drift" in out.stdout
    assert "bmi" in out.stdout


def test_drift_bad_input_exits_2_and_empty_data_is_a_user_error(trained: Path, cli) -> None:
    out = cli("drift", "--data", "missing.csv", "--json", cwd=trained)
    assert out.code == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "not found" in out.stderr
    (trained / "empty.csv").write_text("age,sex,bmi\n")
    cfg = load(trained / "retrainer.yaml")
    with pytest.raises(UserError, match="no rows"):
        champion_drift(cfg, str(trained / "empty.csv"))


def test_findings_and_a_version_without_profile(trained: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The profile is deleted below: the rebuild is the path through MLflow, not the cache
    # an earlier check may have filled.
    monkeypatch.setenv("RETRAINER_CACHE_DIR", "off")
    # Strings in a numeric column, a missing column, an all-empty column: findings.
    cur = pd.read_csv(trained / "same.csv").drop(columns=["s3"])
    cur["s4"] = np.nan
    cur["bmi"] = cur["bmi"].astype(object)
    cur.loc[:20, "bmi"] = "unknown"
    cur.to_csv(trained / "odd.csv", index=False)
    cfg = load(trained / "retrainer.yaml")
    result = champion_drift(cfg, str(trained / "odd.csv"))
    by_name = {c["column"]: c for c in result.report.to_dict()["columns"]}
    assert by_name["s3"]["drifted"] and "missing" in by_name["s3"]["note"]
    assert by_name["s4"]["drifted"] and "all values are missing" in by_name["s4"]["note"]
    assert by_name["bmi"]["drifted"] and "not numbers" in by_name["bmi"]["note"]
    assert result.report.prediction is None  # the model lacks an input column
    assert any("lacks model input columns" in n for n in result.notes)

    # An older version logged without a profile: rebuilt from its logged training input.
    profiles = list(trained.rglob("reference_profile.json"))
    assert len(profiles) == 1
    saved = profiles[0].read_text()
    logged = json.loads(saved)
    profiles[0].unlink()
    try:
        rebuilt = champion_drift(cfg, str(trained / "same.csv"))
    finally:
        profiles[0].write_text(saved)  # the module's other tests share this store
    assert rebuilt.profile_source.startswith("rebuilt from")
    # The fingerprints pick exactly the champion's training rows again.
    assert rebuilt.profile["rows"] == logged["rows"] == 331
    assert rebuilt.profile["columns"]["bmi"]["counts"] == logged["columns"]["bmi"]["counts"]
    assert not rebuilt.report.dataset_drift


def test_sampled_prediction_drift_fires_on_drift_only(trained: Path) -> None:
    """Large data gets prediction drift on a uniform sample; a forced 100-row sample of
    the 442 rows must still tell shifted data from the champion's own data."""
    cfg = load(trained / "retrainer.yaml")
    shifted = champion_drift(cfg, str(trained / "shifted.csv"), prediction_sample=100)
    same = champion_drift(cfg, str(trained / "same.csv"), prediction_sample=100)
    whole = champion_drift(cfg, str(trained / "same.csv"))  # 442 rows: all are scored
    assert shifted.report.prediction is not None and same.report.prediction is not None
    assert shifted.report.prediction.drifted and "prediction" in shifted.report.rules
    assert not same.report.prediction.drifted and not same.report.dataset_drift

    doc = same.report.to_dict()["prediction"]
    assert (doc["sample_rows"], doc["sample_of_rows"]) == (100, 442)
    assert "100-row uniform sample" in same.report.verdict
    assert any("uniform sample of 100 of the 442 rows" in n for n in same.notes)
    # The threshold is calibrated for the rows scored: 100 rows need a larger PSI.
    assert same.report.prediction.threshold > whole.report.prediction.threshold
    assert "sample_rows" not in whole.report.to_dict()["prediction"]
    assert "sample" not in whole.report.verdict
    # Seeded: the same data gives the same sample, so the same verdict.
    again = champion_drift(cfg, str(trained / "same.csv"), prediction_sample=100)
    assert again.report.prediction.value == same.report.prediction.value
    with pytest.raises(UserError, match="at least 1 row"):
        champion_drift(cfg, str(trained / "same.csv"), prediction_sample=0)


def test_a_second_check_reads_the_champion_from_the_cache_without_mlflow(
        trained: Path, cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = cli("drift", "--data", "shifted.csv", "--json", cwd=trained,
                env={"RETRAINER_CACHE_DIR": str(cache)})
    assert first.code == 0, first.stderr
    entries = list((cache / "champions").iterdir())
    assert len(entries) == 1
    assert sorted(p.name for p in entries[0].iterdir()) == ["entry.json", "model.pkl"]

    # A new interpreter, as cron starts one; Python names every module it imports.
    second = cli("drift", "--data", "shifted.csv", "--json", cwd=trained, fresh=True,
                 env={"RETRAINER_CACHE_DIR": str(cache), "PYTHONPROFILEIMPORTTIME": "1"})
    assert second.code == 0, second.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in second.stderr.splitlines()
                if line.startswith("import time:")}
    assert "sklearn.linear_model" in imported  # the champion was unpickled and scored
    assert not {m for m in imported if m.split(".")[0] in ("mlflow", "skops", "sqlalchemy")}
    assert second.json() == first.json()

    # Off: nothing is written anywhere.
    off = cli("drift", "--data", "same.csv", "--json", cwd=trained,
              env={"RETRAINER_CACHE_DIR": "off", "XDG_CACHE_HOME": str(tmp_path / "xdg"),
                   "HOME": str(tmp_path / "home")})
    assert off.code == 0, off.stderr
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


def test_the_cache_follows_the_alias_and_never_answers_for_another_version(
        trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from retrainer.drift import champion_cache

    project = tmp_path / "project"
    shutil.copytree(trained, project)
    monkeypatch.setenv("RETRAINER_CACHE_DIR", str(tmp_path / "cache"))
    cfg = load(project / "retrainer.yaml")
    client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    data = str(project / "same.csv")

    assert champion_cache.lookup(cfg) is None  # nothing cached yet
    assert champion_drift(cfg, data).version == "1"
    hit = champion_cache.lookup(cfg)
    assert hit is not None and hit.version == "1" and hit.model is not None
    v1 = client.get_model_version(cfg.model, "1")
    assert hit.key.created_ms == v1.creation_timestamp

    # A new version becomes the champion: the cache misses, the check reads version 2
    # through MLflow and keeps it; moving the alias back finds version 1's entry again.
    v2 = client.create_model_version(cfg.model, v1.source, v1.run_id)
    client.set_registered_model_alias(cfg.model, "champion", v2.version)
    assert champion_cache.lookup(cfg) is None
    assert champion_drift(cfg, data).version == "2"
    assert champion_cache.lookup(cfg).version == "2"  # type: ignore[union-attr]
    client.set_registered_model_alias(cfg.model, "champion", "1")
    assert champion_cache.lookup(cfg).version == "1"  # type: ignore[union-attr]
    assert champion_drift(cfg, data).version == "1"

    # No champion: the cache answers nothing and the check says why.
    client.delete_registered_model_alias(cfg.model, "champion")
    assert champion_cache.lookup(cfg) is None
    with pytest.raises(UserError, match="has no champion yet"):
        champion_drift(cfg, data)

    # An entry whose key does not match (e.g. a registry recreated at the same path, whose
    # version 1 is another model) is never used.
    other = champion_cache.ChampionKey(hit.key.registry, cfg.model, "1",
                                       hit.key.created_ms + 1, hit.key.profile_tag)
    assert champion_cache.load(tmp_path / "cache", other) is None
