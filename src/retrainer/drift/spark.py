"""The Spark observer: `compare` for a Spark DataFrame, without collecting its rows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from retrainer.drift.observe import SUBSAMPLE_ROWS, Observed
from retrainer.drift.profile import OTHER, PREDICTION, UNSEEN, check_profile
from retrainer.drift.statistics import DriftReport, assemble
from retrainer.drift.thresholds import check_thresholds
from retrainer.errors import UserError


def compare_spark(
    profile: dict,
    spark_df: Any,
    prediction_col: str | None = None,
    *,
    share: float = 0.5,
    key_columns: Sequence[str] = (),
    thresholds: dict[str, float] | None = None,
    seed: int = 0,
    on_prediction: bool = True,
    predictions: np.ndarray | None = None,
    sample_rows: int = SUBSAMPLE_ROWS,
) -> DriftReport:
    """`compare` for a Spark DataFrame: bin counts in one Spark aggregation.

    Counts, missing and non-number counts and moments are computed by Spark in a
    single pass; only a bounded sample (for Wasserstein and KS) comes to the driver.
    `prediction_col` names a column of `spark_df` holding the champion's predictions;
    `predictions` are instead the champion's predictions on a sample of the rows, scored
    on the driver (their threshold is then calibrated for the sample's size).
    `sample_rows` bounds the rows sampled for Wasserstein and KS (and so what reaches
    the driver).
    """
    from pyspark.sql import functions as F

    check_profile(profile)
    th = check_thresholds(thresholds, share, key_columns, profile)
    present = set(spark_df.columns)
    targets: dict[str, Mapping] = {n: c for n, c in profile["columns"].items() if n in present}
    if prediction_col and profile.get("prediction") and prediction_col in present:
        targets[PREDICTION] = profile["prediction"]
    source = {n: (prediction_col if n == PREDICTION else n) for n in targets}

    aggs = [F.count(F.lit(1)).alias("__rows")]
    plan: dict[str, dict[str, Any]] = {}
    for i, (name, col) in enumerate(targets.items()):
        if col["kind"] != "numeric":
            continue
        raw = F.col(_quoted(source[name]))
        x = _try_double(source[name])
        valid = x.isNotNull() & ~F.isnan(x)
        inner = [float(e) for e in col["edges"][1:-1]]
        # Cumulative counts below each edge; bins are their differences.
        aggs += [
            F.count(F.when(valid & (x < e), 1)).alias(f"c{i}_{j}") for j, e in enumerate(inner)
        ]
        aggs.append(F.count(F.when(valid, 1)).alias(f"v{i}"))
        aggs.append(F.count(F.when(raw.isNotNull() & x.isNull(), 1)).alias(f"bad{i}"))
        aggs.append(F.avg(F.when(valid, x)).alias(f"mean{i}"))
        aggs.append(F.stddev_samp(F.when(valid, x)).alias(f"std{i}"))
        plan[name] = {"i": i, "k": len(inner)}
    row = spark_df.agg(*aggs).collect()[0].asDict()
    m = int(row["__rows"])
    if m == 0:
        raise UserError("current data has no rows: nothing to compare with the reference")

    numeric_names = [n for n in targets if n in plan]
    sample_pdf = None
    if numeric_names:
        frac = min(1.0, sample_rows / m)
        cols = [_try_double(source[n]).alias(n) for n in numeric_names]
        sampled = spark_df.sample(fraction=frac, seed=seed) if frac < 1 else spark_df
        sample_pdf = sampled.select(*cols).limit(sample_rows).toPandas()

    observed: dict[str, Observed | None] = {n: None for n in profile["columns"]}
    pred_obs = None
    for name, col in targets.items():
        if name in plan:
            p = plan[name]
            i = p["i"]
            cum = [int(row[f"c{i}_{j}"]) for j in range(p["k"])] + [int(row[f"v{i}"])]
            counts = np.diff(np.asarray([0, *cum], dtype=np.int64))
            bad = int(row[f"bad{i}"])
            example = None
            if bad:
                raw = F.col(_quoted(source[name]))
                first = spark_df.where(raw.isNotNull() & _try_double(source[name]).isNull())
                example = first.select(raw).limit(1).collect()[0][0]
            sample = sample_pdf[name].to_numpy(dtype="float64")
            obs = Observed(
                rows=m,
                missing=m - int(row[f"v{i}"]) - bad,
                invalid=bad,
                invalid_example=example,
                counts=counts,
                sample=np.sort(sample[~np.isnan(sample)]),
                mean=_none_if_nan(row[f"mean{i}"]),
                std=_none_if_nan(row[f"std{i}"]),
            )
        else:
            obs = _observe_categorical_spark(spark_df, source[name], col, m)
        if name == PREDICTION and prediction_col:
            pred_obs = obs
        else:
            observed[name] = obs
    if pred_obs is None and predictions is not None and profile.get("prediction"):
        pred_obs = _observe_predictions(profile["prediction"], predictions, seed)
    return assemble(profile, observed, pred_obs, m, share, key_columns, th,
                    on_prediction=on_prediction)


def _observe_predictions(col: Mapping, predictions: np.ndarray, seed: int) -> Observed:
    """Driver-side predictions (a bounded sample), observed as the pandas engine does."""
    from retrainer.drift.observe import observe_categorical, observe_numeric
    from retrainer.drift.profile import predictions_series

    pred = predictions_series(predictions)
    if col["kind"] != "numeric":
        return observe_categorical(pred, col)
    rng = np.random.default_rng(seed)
    rows = None if len(pred) <= SUBSAMPLE_ROWS else rng.choice(len(pred), SUBSAMPLE_ROWS,
                                                               replace=False)
    return observe_numeric(pred, col, rows)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _try_double(name: str) -> Any:
    """The column as double, NULL where it is not a number.

    Spark 4 runs in ANSI mode, where a plain cast of "n/a" fails the whole job;
    try_cast (Spark >= 3.2) turns it into NULL, which is then counted as a finding.
    """
    from pyspark.sql import functions as F

    return F.expr(f"try_cast({_quoted(name)} AS DOUBLE)")


def _none_if_nan(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _observe_categorical_spark(spark_df: Any, name: str, col: Mapping, m: int) -> Observed:
    """Category counts, mapped to the reference buckets inside Spark (bounded result)."""
    from pyspark.sql import functions as F

    raw = F.col(_quoted(name))
    # Integral doubles map like ints ("1.0" -> "1"), as in `profile.category_keys`.
    dtype = dict(spark_df.dtypes)[name]
    if dtype in ("double", "float"):
        key = F.when(raw == F.floor(raw), raw.cast("bigint").cast("string")).otherwise(
            raw.cast("string")
        )
    elif dtype == "boolean":
        key = F.when(raw, F.lit("True")).otherwise(F.lit("False"))
    else:
        key = raw.cast("string")
    known = [c for c in col["categories"] if c not in (OTHER, UNSEEN)]
    other = col.get("other_values")
    fallback = (
        F.lit(OTHER)
        if other is None
        else F.when(key.isin(other) if other else F.lit(False), F.lit(OTHER)).otherwise(
            F.lit(UNSEEN)
        )
    )
    bucket = F.when(key.isin(known) if known else F.lit(False), key).otherwise(fallback)
    rows = spark_df.where(raw.isNotNull()).select(bucket.alias("b")).groupBy("b").count().collect()
    got = {r["b"]: int(r["count"]) for r in rows}
    counts = np.array([got.get(c, 0) for c in col["categories"]], dtype=np.int64)
    return Observed(rows=m, missing=m - int(counts.sum()), counts=counts)
