"""The retrain cycle end to end on a real embedded MLflow store (sqlite + local artifacts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import edit_config, registry_snapshot
from retrainer.config import load
from retrainer.cycle import run_cycle
from retrainer.errors import UserError

REL = 1e-4  # "within 0.01%"


def _week_ago(project: Path, rows: int = 20) -> str:
    full = pd.read_csv(project / "data" / "diabetes.csv")
    path = project / "data" / "week_ago.csv"
    full.iloc[:-rows].to_csv(path, index=False)
    return str(path)


def _client(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


@pytest.fixture
def article(project: Path) -> tuple[Path, dict, dict]:
    """The article's scenario: v1 on all rows but the last 20, then retrain on all rows."""
    cfg = load(project / "retrainer.yaml")
    first = run_cycle(cfg, data=_week_ago(project))
    second = run_cycle(cfg)
    return project, first, second


def test_article_scenario_reproduces_all_three_tables(article: tuple[Path, dict, dict]) -> None:
    project, first, second = article
    assert first["decision"] == "first_champion"
    assert first["champion"] is None

    # 1. As each run logged it: the article's table (two different test splits).
    logged_new = second["challenger"]["metrics_as_logged"]
    logged_prod = second["champion"]["metrics_as_logged"]
    assert logged_new["mse"] == pytest.approx(3105.47, rel=REL)
    assert logged_new["rmse"] == pytest.approx(55.727, rel=REL)
    assert logged_new["r2"] == pytest.approx(0.4384, rel=REL * 5)
    assert logged_prod["mse"] == pytest.approx(3442.99, rel=REL)
    assert logged_prod["rmse"] == pytest.approx(58.677, rel=REL)
    assert logged_prod["r2"] == pytest.approx(0.4155, rel=REL * 5)

    # 2. The naive re-score on the new 111-row split: v1 looks better (it trained on 44).
    naive = second["naive"]
    assert second["holdout"]["rows"] == 111
    assert second["holdout"]["excluded"] == {"champion_trained_on": 44}
    assert naive["champion"]["mse"] == pytest.approx(3099.17, rel=REL)
    assert naive["champion"]["r2"] == pytest.approx(0.4395, rel=REL * 5)
    assert naive["challenger"]["mse"] == pytest.approx(3105.47, rel=REL)
    assert naive["champion"]["mse"] < naive["challenger"]["mse"]

    # 3. The clean holdout: 67 rows neither model trained on; v2 slightly better.
    assert second["holdout"]["clean_rows"] == 67
    assert second["challenger"]["metrics"]["mse"] == pytest.approx(3171.03, rel=REL)
    assert second["challenger"]["metrics"]["rmse"] == pytest.approx(56.312, rel=REL)
    assert second["challenger"]["metrics"]["r2"] == pytest.approx(0.4252, rel=REL * 5)
    assert second["champion"]["metrics"]["mse"] == pytest.approx(3185.98, rel=REL)
    assert second["champion"]["metrics"]["rmse"] == pytest.approx(56.445, rel=REL)
    assert second["champion"]["metrics"]["r2"] == pytest.approx(0.4225, rel=REL * 5)

    assert second["decision"] == "promoted"
    assert all(c["passed"] for c in second["checks"])
    # The margin is honest and small: the bootstrap interval of the mse difference spans 0.
    lo, hi = second["differences"]["mse"]["ci95"]
    assert lo < second["differences"]["mse"]["delta"] < hi
    assert lo < 0 < hi

    snap = registry_snapshot(project)
    assert snap["aliases"] == {"champion": "2", "challenger": "2", "previous": "1"}
    client = _client(project)
    v1 = client.get_model_version("diabetes-ridge", "1")
    assert "retrainer.archived_at" in v1.tags
    assert client.get_model_version("diabetes-ridge", "2").tags["retrainer.decision"] == \
        "promoted"


def test_decision_record_is_logged_on_the_challenger_run(article: tuple[Path, dict, dict]) -> None:
    project, _, second = article
    client = _client(project)
    run_id = second["challenger"]["run_id"]
    logged = client.download_artifacts(run_id, "decision.json")
    import json

    assert json.loads(Path(logged).read_text())["decision"] == "promoted"
    md = Path(client.download_artifacts(run_id, "decision.md")).read_text()
    assert "67 rows neither model trained on" in md
    run = client.get_run(run_id)
    assert run.data.tags["retrainer.model"] == "diabetes-ridge"
    assert run.data.tags["retrainer.decision"] == "promoted"
    # Training-row fingerprints and the training dataset are logged with the run.
    fps = np.load(client.download_artifacts(run_id, "retrainer/train_fingerprints.npy"))
    assert len(fps) == second["data"]["train_rows"] == 331
    assert run.inputs.dataset_inputs, "the training data is logged as a dataset input"


def test_worse_challenger_keeps_the_champion(project: Path) -> None:
    cfg = load(project / "retrainer.yaml")
    run_cycle(cfg)
    # Same code, crippled by its parameters: a far worse model.
    edit_config(project, train={"entrypoint": "train.py:train",
                                "params": {"alpha": 1000.0, "solver": "cholesky"}})
    record = run_cycle(load(project / "retrainer.yaml"))
    assert record["decision"] == "kept_champion"
    assert "rmse" in record["reason"]
    failed = [c["name"] for c in record["checks"] if not c["passed"]]
    assert "rmse beats champion" in failed
    snap = registry_snapshot(project)
    assert snap["aliases"]["champion"] == "1"
    assert snap["aliases"]["challenger"] == "2"
    assert "previous" not in snap["aliases"]


def test_dry_run_moves_nothing(project: Path) -> None:
    cfg = load(project / "retrainer.yaml")
    run_cycle(cfg, data=_week_ago(project))
    before = registry_snapshot(project)["aliases"]
    edit_config(project, gate={"mode": "dry_run"})
    record = run_cycle(load(project / "retrainer.yaml"))
    assert record["decision"] == "dry_run_would_promote"
    assert registry_snapshot(project)["aliases"] == before


def test_gate_disabled_promotes_even_a_worse_model(project: Path) -> None:
    run_cycle(load(project / "retrainer.yaml"))
    edit_config(project, gate={"mode": "disabled"},
                train={"entrypoint": "train.py:train", "params": {"alpha": 1000.0}})
    record = run_cycle(load(project / "retrainer.yaml"))
    assert record["decision"] == "promoted"
    assert record["reason"].startswith("gate disabled")
    assert registry_snapshot(project)["aliases"]["champion"] == "2"


def test_too_few_clean_rows_keeps_the_champion_and_says_why(project: Path) -> None:
    cfg = load(project / "retrainer.yaml")
    run_cycle(cfg, data=_week_ago(project))
    edit_config(project, gate={"min_clean_rows": 100})
    record = run_cycle(load(project / "retrainer.yaml"))
    assert record["decision"] == "kept_champion"
    assert "67 clean rows < min_clean_rows 100" in record["reason"]


def test_confidence_gate_rejects_a_small_margin(project: Path) -> None:
    cfg = load(project / "retrainer.yaml")
    run_cycle(cfg, data=_week_ago(project))
    edit_config(project, gate={"confidence": 0.95})
    record = run_cycle(load(project / "retrainer.yaml"))
    assert record["decision"] == "kept_champion"
    check = next(c for c in record["checks"] if c["name"] == "mse interval clears 0")
    assert not check["passed"] and "includes 0" in check["detail"]


def test_schema_breaking_challenger_is_rejected(project: Path) -> None:
    run_cycle(load(project / "retrainer.yaml"))
    edit_config(project, data={"source": "data/diabetes.csv", "target": "target",
                               "drop": ["bmi"]})
    record = run_cycle(load(project / "retrainer.yaml"))
    assert record["decision"] == "kept_champion"
    assert record["schema"]["removed"] == ["bmi"]
    assert not record["schema"]["compatible"]
    assert "removed bmi" in record["reason"]
    # ... unless the team says the change is fine.
    edit_config(project, gate={"schema": "allow", "all_metrics_improve": False,
                               "thresholds": {}})
    record = run_cycle(load(project / "retrainer.yaml"))
    check = next(c for c in record["checks"] if c["name"] == "schema compatible")
    assert check["passed"] and "allowed" in check["detail"]


def test_estimator_path_instead_of_entrypoint(project: Path) -> None:
    edit_config(project, replace=("train",), train={"estimator": "sklearn.linear_model.Ridge",
                                "params": {"alpha": 1.0, "solver": "cholesky"}})
    record = run_cycle(load(project / "retrainer.yaml"))
    assert record["decision"] == "first_champion"
    assert record["challenger"]["metrics"]["mse"] == pytest.approx(3105.47, rel=REL)


def test_classification_example(tmp_path: Path, fresh_store) -> None:
    fresh_store(tmp_path)
    (tmp_path / "retrainer.yaml").write_text(
        "model: wine\n"
        "data: {source: 'sklearn:wine', target: target}\n"
        "train:\n"
        "  estimator: sklearn.ensemble.RandomForestClassifier\n"
        "  params: {n_estimators: 30, random_state: 0}\n"
        "metrics: [accuracy, f1, log_loss, roc_auc]\n"
        "gate: {thresholds: {accuracy: {threshold: 0.8}}, all_metrics_improve: false}\n")
    cfg = load(tmp_path / "retrainer.yaml")
    record = run_cycle(cfg)
    assert record["task"] == "classification"
    assert record["decision"] == "first_champion"
    metrics = record["challenger"]["metrics"]
    assert 0.8 <= metrics["accuracy"] <= 1.0
    assert metrics["log_loss"] > 0 and 0.5 < metrics["roc_auc"] <= 1.0
    # A second cycle on the same data: the champion is scored, its training rows excluded.
    second = run_cycle(cfg)
    assert second["holdout"]["excluded"]["champion_trained_on"] == 0
    assert second["champion"]["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"])


def test_regression_metric_on_a_classifier_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "retrainer.yaml").write_text(
        "model: iris\ndata: {source: 'sklearn:iris'}\n"
        "train: {estimator: sklearn.tree.DecisionTreeClassifier}\nmetrics: [rmse]\n")
    with pytest.raises(UserError, match="rmse"):
        run_cycle(load(tmp_path / "retrainer.yaml"))
    assert registry_snapshot(tmp_path, "iris") == {}


def test_hash_split_keeps_rows_on_their_side_as_data_grows(project: Path) -> None:
    edit_config(project, split={"method": "hash", "test_size": 0.25, "seed": 7})
    cfg = load(project / "retrainer.yaml")
    first = run_cycle(cfg, data=_week_ago(project))
    second = run_cycle(cfg)
    # No holdout row of the second cycle was a training row of the first: nothing excluded.
    assert second["holdout"]["excluded"].get("champion_trained_on", 0) == 0
    assert second["holdout"]["clean_rows"] == second["holdout"]["rows"]
    assert first["data"]["holdout_rows"] <= second["data"]["holdout_rows"]


def test_a_cycle_with_an_unloadable_champion_column_writes_nothing(project: Path) -> None:
    run_cycle(load(project / "retrainer.yaml"))
    before = registry_snapshot(project)
    frame = pd.read_csv(project / "data" / "diabetes.csv").drop(columns=["bmi"])
    path = project / "data" / "no_bmi.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(UserError, match="bmi"):
        run_cycle(load(project / "retrainer.yaml"), data=str(path))
    assert registry_snapshot(project) == before


def test_skops_untrusted_types_are_trusted_for_the_teams_estimator(project: Path) -> None:
    # HistGradientBoosting holds TreePredictor objects that skops does not trust by default.
    edit_config(project, replace=("train",), gate={"all_metrics_improve": False},
                train={"estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
                       "params": {"max_iter": 20, "random_state": 0}})
    cfg = load(project / "retrainer.yaml")
    run_cycle(cfg, data=_week_ago(project))
    record = run_cycle(cfg)  # loads version 1 back from the registry to score it
    assert record["champion"]["version"] == "1"
    assert record["champion"]["metrics"]["rmse"] > 0


def test_entrypoint_with_the_teams_own_model_class(project: Path) -> None:
    (project / "train.py").write_text(
        "import numpy as np\n"
        "from sklearn.linear_model import Ridge\n\n\n"
        "class ShrunkRidge:\n"
        "    \"\"\"A team's own wrapper class, defined in the training script.\"\"\"\n\n"
        "    def __init__(self, model, shrink):\n"
        "        self.model, self.shrink = model, shrink\n\n"
        "    def predict(self, X):\n"
        "        return np.asarray(self.model.predict(X)) * self.shrink\n\n\n"
        "def train(X, y, params):\n"
        "    return ShrunkRidge(Ridge(alpha=params['alpha']).fit(X, y), 1.0)\n")
    cfg = load(project / "retrainer.yaml")
    run_cycle(cfg, data=_week_ago(project))
    record = run_cycle(cfg)
    assert record["champion"]["metrics"]["mse"] == pytest.approx(3185.98, rel=REL)


@pytest.mark.spark
def test_spark_table_source(project: Path, spark: object) -> None:
    from retrainer.data import read_source

    frame = pd.read_csv(project / "data" / "diabetes.csv")
    frame.to_parquet(project / "data" / "diabetes.parquet")
    got = read_source(f"spark:{project / 'data' / 'diabetes.parquet'}", project)
    assert got.shape == frame.shape
    np.testing.assert_allclose(got["bmi"].to_numpy(), frame["bmi"].to_numpy())
