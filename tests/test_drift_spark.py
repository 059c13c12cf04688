"""compare_spark gives the pandas report, with bin counts computed by local Spark.

The `spark` fixture (conftest) is the one session of the test process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrainer.drift.profile import build_profile
from retrainer.drift.spark import compare_spark
from retrainer.drift.statistics import compare

pyspark = pytest.importorskip("pyspark")

pytestmark = pytest.mark.spark


def _frames(n: int = 5_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(21)
    ref = pd.DataFrame(
        {
            "age": rng.normal(50, 10, n),
            "dose": rng.poisson(3, n).astype(float),
            "gone": rng.normal(size=n),
            "city": rng.choice(["paris", "lyon", "nice"], n, p=[0.5, 0.3, 0.2]),
            "code": rng.integers(1, 4, n).astype(str),
        }
    )
    cur = pd.DataFrame(
        {
            "age": rng.normal(55, 10, n),  # +0.5 sd
            "dose": rng.poisson(3, n).astype(float),
            "gone": np.full(n, np.nan),  # all missing
            "city": rng.choice(["paris", "lyon", "nice", "brest"], n, p=[0.5, 0.3, 0.1, 0.1]),
            "code": rng.integers(1, 4, n).astype(float),  # "1" == 1.0
        }
    )
    cur.loc[:99, "dose"] = np.nan  # 2 % missing: over the 1-point floor, flagged
    return ref, cur


def test_spark_report_matches_pandas(spark) -> None:
    ref, cur = _frames()
    rng = np.random.default_rng(22)
    preds_ref = rng.normal(size=len(ref))
    preds_cur = rng.normal(0.8, 1.0, size=len(cur))
    profile = build_profile(ref, predictions=preds_ref)
    expected = compare(profile, cur, predictions=preds_cur)

    sdf = spark.createDataFrame(cur.assign(pred=preds_cur))
    got = compare_spark(profile, sdf, prediction_col="pred")

    assert got.drifted_columns == expected.drifted_columns == ["age", "dose", "gone", "city"]
    for a, b in zip(got.columns, expected.columns, strict=True):
        assert a.column == b.column and a.statistic == b.statistic
        assert a.current_shares == pytest.approx(b.current_shares)
        assert (a.value is None) == (b.value is None)
        if a.value is not None:
            # Same counts, so PSI / chi-square and their thresholds agree exactly.
            assert a.value == pytest.approx(b.value)
            assert a.threshold == pytest.approx(b.threshold)
        assert a.missing_rate_change == pytest.approx(b.missing_rate_change)
        assert a.reasons == b.reasons
    assert got.prediction is not None and got.prediction.drifted
    assert got.prediction.value == pytest.approx(expected.prediction.value)
    assert got.to_dict()["rows"] == expected.to_dict()["rows"]
    assert got.dataset_drift == expected.dataset_drift


def test_spark_findings_strings_and_missing_column(spark) -> None:
    ref, cur = _frames(2_000)
    profile = build_profile(ref)
    cur = cur.drop(columns="city").astype({"age": str})
    cur.loc[:4, "age"] = "n/a"
    got = compare_spark(profile, spark.createDataFrame(cur))
    by_name = {c.column: c for c in got.columns}
    assert by_name["city"].drifted and "missing" in by_name["city"].note
    age = by_name["age"]
    assert age.drifted and "invalid_values" in age.reasons
    assert "5 value(s) are not numbers" in age.note and "n/a" in age.note


def test_spark_empty_data_is_a_user_error(spark) -> None:
    from retrainer.errors import UserError

    ref, cur = _frames(500)
    profile = build_profile(ref)
    empty = spark.createDataFrame(cur).limit(0)
    with pytest.raises(UserError, match="no rows"):
        compare_spark(profile, empty)
