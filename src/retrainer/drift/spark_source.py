"""`retrainer drift` on a ``spark:`` source with ``data.engine: spark``: rows stay in Spark.

The column statistics are Spark aggregations against the stored profile
(`drift.spark.compare_spark`). Prediction drift needs the champion's predictions: it
scores a uniform random sample of at most `PREDICTION_SAMPLE` rows on the driver, with a
threshold calibrated for the sample's size, and says so. What reaches the driver: one row
of aggregates and bounded samples (Wasserstein/KS, predictions), each at most
``data.max_rows`` rows; never the source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrainer.config import Config
    from retrainer.drift.statistics import DriftReport

#: Rows the champion scores for prediction drift on Spark (a uniform sample above it).
PREDICTION_SAMPLE = 100_000

Predict = Callable[["pd.DataFrame"], "tuple[np.ndarray | None, str | None]"]


@dataclass
class SparkDrift:
    report: DriftReport
    sample: pd.DataFrame  # the rows scored for prediction drift (bounded), for the page
    rows: int
    digest: str  # the same rows (in any order or partitioning) give the same digest
    notes: list[str] = field(default_factory=list)


def spark_drift(cfg: Config, source: str, base_dir: Path, profile: dict,
                predict: Predict | None) -> SparkDrift:
    """The drift report of a Spark source; `predict` scores a pandas sample (or None)."""
    import pandas as pd
    from pyspark.sql import functions as F

    from retrainer.drift.observe import SUBSAMPLE_ROWS
    from retrainer.drift.spark import compare_spark
    from retrainer.spark_data import read_spark, uniform_sample

    sdf = read_spark(source, cfg.spark, base_dir)
    sdf = sdf.toDF(*[str(c) for c in sdf.columns])
    features = sdf.drop(cfg.data.target) if cfg.data.target in sdf.columns else sdf
    rows, digest = _count_and_digest(sdf)
    if rows == 0:
        raise UserError(f"current data {source!r} has no rows")

    notes: list[str] = []
    predictions = None
    inputs = [c for c in profile["columns"] if c in features.columns]
    n = min(PREDICTION_SAMPLE, cfg.data.max_rows)
    if predict is not None and profile.get("prediction") is not None and inputs:
        sample = uniform_sample(features.select(*[F.col(_q(c)) for c in inputs]), n, rows,
                                seed=cfg.split.seed).toPandas()
        predictions, why = predict(sample)
        if why:
            notes.append(why)
        if predictions is not None and len(sample) < rows:
            notes.append(f"prediction drift on a uniform random sample of {len(sample):,} of "
                         f"the {rows:,} rows (its threshold calibrated for that size)")
    else:
        sample = pd.DataFrame(columns=inputs)
    report = compare_spark(
        profile, features, predictions=predictions, share=cfg.drift.share,
        key_columns=cfg.drift.key_columns, thresholds=cfg.drift.thresholds or None,
        on_prediction=cfg.drift.on_prediction, seed=cfg.split.seed,
        sample_rows=min(SUBSAMPLE_ROWS, cfg.data.max_rows))
    return SparkDrift(report, sample, rows, digest, notes)


def _count_and_digest(sdf: Any) -> tuple[int, str]:
    """Row count and an order-free content digest, in one Spark job."""
    import hashlib

    from pyspark.sql import functions as F

    row_hash = F.xxhash64(*[F.col(_q(c)) for c in sdf.columns])
    # Summed as decimals: no overflow, and the sum ignores row order and partitioning.
    got = sdf.agg(F.count(F.lit(1)).alias("n"),
                  F.sum(row_hash.cast("decimal(38,0)")).alias("h")).collect()[0]
    text = "\x1f".join([*sdf.columns, str(got["n"]), str(got["h"])])
    return int(got["n"]), hashlib.sha256(text.encode()).hexdigest()[:16]


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
