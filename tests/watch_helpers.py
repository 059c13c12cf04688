"""Helpers for the watch tests: a project with a champion, copied per test; plain MLflow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from conftest import copy_project  # noqa: F401 - re-exported

MODEL = "diabetes-ridge"
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def make_champion_project(base: Path, store_template: Path) -> Path:
    """The article's version 1: trained on all rows but the last 20, the first champion."""
    from retrainer.config import load
    from retrainer.cycle import run_cycle
    from retrainer.project import write_example

    write_example(base, "diabetes")
    shutil.copyfile(store_template, base / "mlflow.db")
    full = pd.read_csv(base / "data" / "diabetes.csv")
    week_ago = base / "data" / "week_ago.csv"
    full.iloc[:-20].to_csv(week_ago, index=False)
    record = run_cycle(load(base / "retrainer.yaml"), data=str(week_ago), trigger="setup")
    assert record["decision"] == "first_champion"
    return base


def client_for(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def watch_state(project: Path, model: str = MODEL) -> dict[str, Any]:
    """The trigger state the watcher keeps in the tracking store ({} before the first)."""
    client = client_for(project)
    exp = client.get_experiment_by_name("diabetes-retraining")
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`retrainer.model` = '{model}' and "
                      "tags.`retrainer.kind` = 'watch_state'")
    if not runs:
        return {}
    assert len(runs) == 1, "one state run per model"
    return {k.removeprefix("retrainer.watch."): json.loads(v)
            for k, v in runs[0].data.tags.items() if k.startswith("retrainer.watch.")}


def events(project: Path, kind: str) -> list[dict[str, Any]]:
    client = client_for(project)
    exp = client.get_experiment_by_name("diabetes-retraining")
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`retrainer.event` = '{kind}'")
    out = []
    for run in runs:
        path = client.download_artifacts(run.info.run_id, "event.json")
        out.append(json.loads(Path(path).read_text()))
    return out


def register_plain(tracking_uri: str, estimator: Any, data_csv: Path,
                   artifacts: Path | None = None, model: str = MODEL) -> str:
    """What a data scientist does by hand: fit, log with plain MLflow, register_model."""
    import mlflow

    frame = pd.read_csv(data_csv)
    X, y = frame[FEATURES], frame["target"]
    fitted = estimator.fit(X, y)
    mlflow.set_tracking_uri(tracking_uri)
    name = "data-science-experiments"
    client = MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=artifacts.resolve().as_uri()
                                 if artifacts is not None else None)
    mlflow.set_experiment(name)
    with mlflow.start_run():
        mlflow.log_metric("train_rows", len(frame))
        info = mlflow.sklearn.log_model(fitted, name="model", input_example=X.head(3),
                                        pip_requirements=["scikit-learn", "pandas"],
                                        serialization_format="cloudpickle")
    mv = mlflow.register_model(info.model_uri, model)
    return str(mv.version)
