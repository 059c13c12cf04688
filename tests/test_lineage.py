"""The training rows logged as an MLflow dataset input without MLflow's per-cell inference.

On a real sqlite store: what is logged must read back like `mlflow.log_input` of
`mlflow.data.from_pandas` (the fields the MLflow UI shows), with our digest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from retrainer import lineage, provenance
from retrainer.data import Dataset, fingerprints


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=50), "b": rng.integers(0, 9, size=50),
                          "c": rng.normal(size=50), "target": rng.normal(size=50)})
    frame.loc[40, "c"] = np.nan  # an optional column
    return frame


@pytest.fixture
def store(tmp_path: Path, fresh_store: Callable[[Path], str]) -> MlflowClient:
    uri = fresh_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    # The fluent API remembers the last experiment set in this process (another test's,
    # in another store): name this store's own.
    mlflow.set_experiment("lineage")
    yield MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


def _dataset(frame: pd.DataFrame, source: str) -> Dataset:
    return Dataset(frame, "target", ["a", "b", "c"], source)


def test_logged_dataset_reads_back_like_mlflows_own(store: MlflowClient, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Types come from a sample; the missing value in row 40 lies outside it.
    monkeypatch.setattr(lineage, "SCHEMA_SAMPLE_ROWS", 10)
    frame = _frame()
    csv = tmp_path / "rows.csv"
    frame.to_csv(csv, index=False)
    train = _dataset(frame, str(csv))
    with mlflow.start_run() as ours:
        lineage.log_training_dataset(ours.info.run_id, train, fingerprints(train), client=store)
    with mlflow.start_run() as theirs:
        mlflow.log_input(mlflow.data.from_pandas(frame, source=str(csv), targets="target",
                                                 name=str(csv)[-200:]), context="training")

    [got] = store.get_run(ours.info.run_id).inputs.dataset_inputs
    [want] = store.get_run(theirs.info.run_id).inputs.dataset_inputs
    assert got.dataset.name == want.dataset.name == str(csv)
    assert got.dataset.source_type == want.dataset.source_type == "local"
    assert got.dataset.source == want.dataset.source
    # The schema MLflow would have inferred cell by cell: same types, c optional.
    assert json.loads(got.dataset.schema) == json.loads(want.dataset.schema)
    colspec = {c["name"]: c for c in json.loads(got.dataset.schema)["mlflow_colspec"]}
    assert colspec["c"]["required"] is False and colspec["a"]["required"] is True
    assert colspec["b"]["type"] == "long" and colspec["target"]["type"] == "double"
    assert json.loads(got.dataset.profile) == {"num_rows": 50, "num_elements": 200}
    assert got.dataset.digest == lineage.digest(fingerprints(train), ["a", "b", "c", "target"])
    assert len(got.dataset.digest) == 8
    assert [(t.key, t.value) for t in got.tags] == [("mlflow.data.context", "training")]
    # What retrainer itself reads back of a candidate's run.
    [seen] = provenance.dataset_inputs(store.get_run(ours.info.run_id))
    assert seen == {"name": str(csv), "digest": got.dataset.digest, "source_type": "local",
                    "source": str(csv), "context": "training", "rows": 50}


def test_digest_follows_the_rows() -> None:
    frame = _frame()
    base = lineage.digest(fingerprints(_dataset(frame, "x")), ["a", "b", "c", "target"])
    assert base == lineage.digest(fingerprints(_dataset(frame.copy(), "x")),
                                  ["a", "b", "c", "target"])
    changed = frame.copy()
    changed.loc[3, "a"] += 1e-9
    assert lineage.digest(fingerprints(_dataset(changed, "x")), ["a", "b", "c", "target"]) != base
    fewer = frame.iloc[:-1]
    assert lineage.digest(fingerprints(_dataset(fewer, "x")), ["a", "b", "c", "target"]) != base


def test_an_unresolvable_source_is_logged_as_code_with_no_credentials(
        store: MlflowClient) -> None:
    train = _dataset(_frame(), "python:secret_loader:rows")
    with mlflow.start_run() as run:
        lineage.log_training_dataset(run.info.run_id, train, fingerprints(train), client=store)
    [got] = store.get_run(run.info.run_id).inputs.dataset_inputs
    assert got.dataset.source_type == "code"
    url = "postgresql://alice:hunter2@db.example.com/prod"
    entity = lineage.dataset_entity(_dataset(_frame(), url), np.zeros(50, dtype=np.uint64))
    assert "hunter2" not in entity.name + entity.source
