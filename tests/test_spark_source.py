"""spark: sources end to end on local Spark: the session from config, data.max_rows and
data.sample, and `retrainer drift` / the drift trigger computed in Spark (data.engine:
spark) agreeing with the pandas engine, without collecting the source.

Every test shares the process's one session (the `spark` fixture in conftest).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import edit_config, registry_snapshot
from retrainer.config import load
from retrainer.errors import UserError

pytestmark = pytest.mark.spark


def _current(proj: Path, rows: int = 1_000) -> Path:
    """Diabetes-like current data, drifted on bmi and s5 (the columns the champion weighs)."""
    base = pd.read_csv(proj / "data" / "diabetes.csv")
    rng = np.random.default_rng(5)
    cur = base.sample(rows, replace=True, random_state=5).reset_index(drop=True)
    cur["bmi"] = cur["bmi"] + 0.02 + rng.normal(0, 0.005, rows)
    cur["s5"] = cur["s5"] + 0.03
    path = proj / "data" / "current.parquet"
    cur.to_parquet(path)
    return path


def test_session_from_config_and_row_limit(spark: Any, proj: Path) -> None:
    from retrainer.data import load as load_data
    from retrainer.spark import get_spark

    # A running session is used as it is; the config's runtime settings apply to it.
    cfg = load(proj / "retrainer.yaml")
    same = get_spark(cfg.spark.model_copy(update={"conf": {"spark.sql.shuffle.partitions": 3}}))
    assert same is spark and spark.conf.get("spark.sql.shuffle.partitions") == "3"
    spark.conf.set("spark.sql.shuffle.partitions", "2")

    pd.read_csv(proj / "data" / "diabetes.csv").to_parquet(proj / "data" / "d.parquet")
    edit_config(proj, data={"source": "spark:data/d.parquet", "engine": "spark",
                            "max_rows": 400})
    with pytest.raises(UserError) as err:
        load_data(load(proj / "retrainer.yaml"))
    assert "has 442 rows, more than data.max_rows (400)" in str(err.value)
    assert "\n" not in str(err.value)

    edit_config(proj, data={"sample": True})
    got = load_data(load(proj / "retrainer.yaml"))
    assert 300 < len(got) <= 400
    assert got.sample_note and "uniform random sample" in got.sample_note
    assert "of the 442 rows of spark:data/d.parquet" in got.sample_note


def test_drift_on_spark_agrees_with_pandas_and_collects_no_source(
        spark: Any, proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retrainer.drift.champion import champion_drift
    from retrainer.triggers.drift import check_drift
    from watch_helpers import client_for

    _current(proj, rows=1_000)
    edit_config(proj, triggers={"drift": {"data": "data/current.parquet"}})
    pandas_result = champion_drift(load(proj / "retrainer.yaml"))

    edit_config(proj, data={"source": "spark:data/current.parquet", "engine": "spark"},
                triggers={"drift": {"data": "spark:data/current.parquet"}})
    spark_result = champion_drift(load(proj / "retrainer.yaml"))
    want, got = pandas_result.report, spark_result.report
    # Same counts on the same bins: the statistics agree to float rounding, and so do
    # the verdicts (docs/spark.md states the tolerance).
    assert want.dataset_drift and got.dataset_drift and got.rules == want.rules
    assert got.drifted_columns == want.drifted_columns and "bmi" in got.drifted_columns
    for a, b in zip(got.columns, want.columns, strict=True):
        assert (a.column, a.statistic, a.drifted) == (b.column, b.statistic, b.drifted)
        assert a.value == pytest.approx(b.value, rel=1e-9, abs=1e-12)
        assert a.threshold == pytest.approx(b.threshold, rel=1e-9)
    assert got.prediction is not None and want.prediction is not None
    assert got.prediction.value == pytest.approx(want.prediction.value, rel=1e-9)
    assert got.prediction.drifted == want.prediction.drifted
    assert spark_result.current_rows == pandas_result.current_rows == 1_000

    # A source larger than data.max_rows: the pandas engine refuses to collect it, the
    # Spark engine never collects it, only a bounded sample for prediction drift.
    collected: list[int] = []
    frame_class = type(spark.range(1))  # pyspark's classic DataFrame (a subclass in Spark 4)
    to_pandas = frame_class.toPandas

    def counting(self: Any) -> pd.DataFrame:
        frame = to_pandas(self)
        collected.append(len(frame))
        return frame

    monkeypatch.setattr(frame_class, "toPandas", counting)
    edit_config(proj, data={"max_rows": 300})
    cfg = load(proj / "retrainer.yaml")
    before = registry_snapshot(proj)
    small = champion_drift(cfg)
    assert small.report.rows_current == 1_000 and small.report.dataset_drift
    assert collected and max(collected) <= 300  # the prediction sample, nothing more
    assert any("uniform random sample" in n for n in small.notes)
    assert small.report.prediction is not None
    with pytest.raises(UserError, match="more than data.max_rows"):
        champion_drift(cfg.model_copy(update={"data": cfg.data.model_copy(
            update={"engine": "pandas"})}))

    # The drift trigger takes the same path: it fires once on these rows, by their digest.
    collected.clear()
    client = client_for(proj)
    fire, state = check_drift(client, cfg, {}, datetime.now(UTC))
    assert fire is not None and "1000 rows of spark:data/current.parquet" in fire.reason
    assert max(collected) <= 300
    again, _ = check_drift(client, cfg, state, datetime.now(UTC))
    assert again is None  # same rows (same Spark digest): no second retrain
    assert registry_snapshot(proj) == before  # drift only reads


SPARK_TRAIN = '''\
from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import LinearRegression
from pyspark.sql import DataFrame


def train(df: DataFrame, target: str, params: dict):
    features = [c for c in df.columns if c != target]
    return Pipeline(stages=[
        VectorAssembler(inputCols=features, outputCol="features"),
        LinearRegression(featuresCol="features", labelCol=target, regParam=params["reg"]),
    ]).fit(df)
'''


def test_cycle_trains_in_spark_with_the_pandas_hash_split(
        spark: Any, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from retrainer import data as data_mod
    from retrainer.cycle import run_cycle

    # mlflow.spark probes pyspark.ml.connect, whose import takes an xdist worker (a
    # __main__ without __file__) for a doctest run and calls sys.exit(0); a real CLI
    # process has a __main__ file. Looking interactive keeps the probe an ImportError.
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)

    frame = pd.read_csv(project / "data" / "diabetes.csv")
    frame.to_parquet(project / "data" / "diabetes.parquet")
    (project / "spark_train.py").write_text(SPARK_TRAIN)
    edit_config(project, replace=("train",),
                data={"source": "spark:data/diabetes.parquet", "engine": "spark"},
                split={"method": "hash"},
                train={"entrypoint": "spark_train.py:train", "params": {"reg": 0.0}})
    cfg = load(project / "retrainer.yaml")
    record = run_cycle(cfg)
    assert record["decision"] == "first_champion"
    assert record["data"]["engine"] == "spark" and record["data"]["rows"] == 442
    # The split computed in Spark is the pandas engine's hash split, row for row.
    pandas_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(
        update={"source": "data/diabetes.parquet", "engine": "pandas"})})
    _, holdout = data_mod.split(data_mod.load(pandas_cfg), cfg.split)
    assert record["data"]["holdout_rows"] == len(holdout)
    assert record["data"]["train_rows"] == 442 - len(holdout)
    # Spark's least squares and scikit-learn's agree on the holdout (OLS either way).
    from sklearn.linear_model import LinearRegression

    train_rows = frame.loc[~frame.index.isin(holdout.frame.index)]
    ols = LinearRegression().fit(train_rows.drop(columns="target"), train_rows["target"])
    mse = float(np.mean((ols.predict(holdout.X) - holdout.y) ** 2))
    assert record["challenger"]["metrics"]["mse"] == pytest.approx(mse, rel=1e-3)
    import mlflow

    info = mlflow.models.get_model_info(f"models:/{cfg.model}/1")
    assert "spark" in info.flavors
