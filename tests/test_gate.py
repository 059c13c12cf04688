"""The gate's checks and decisions on hand-made scores (no store needed)."""

from __future__ import annotations

import numpy as np
import pytest

from retrainer.config import GateConfig, MetricThreshold
from retrainer.evaluation import Scores
from retrainer.gate import judge
from retrainer.metrics import bootstrap_difference, compute


def scores(new: dict, old: dict | None, clean: int = 67, **extra) -> Scores:
    return Scores(challenger=new, champion=old, naive={}, holdout_rows=111, clean_rows=clean,
                  excluded={}, **extra)


def test_min_absolute_change_follows_mlflow_semantics() -> None:
    gate = GateConfig(thresholds={"rmse": MetricThreshold(min_absolute_change=0.5)},
                      all_metrics_improve=False)
    passed = judge(scores({"rmse": 55.0}, {"rmse": 55.5}), gate, ["rmse"])
    assert passed.decision == "promoted"
    assert "rmse 55.00 beats champion 55.50 by 0.5" in passed.reason
    failed = judge(scores({"rmse": 55.2}, {"rmse": 55.5}), gate, ["rmse"])
    assert failed.decision == "kept_champion" and "0.5 required" in failed.reason


def test_relative_change_and_greater_is_better() -> None:
    gate = GateConfig(thresholds={"r2": MetricThreshold(min_relative_change=0.05)},
                      all_metrics_improve=False)
    assert judge(scores({"r2": 0.63}, {"r2": 0.60}), gate, ["r2"]).promotes
    kept = judge(scores({"r2": 0.61}, {"r2": 0.60}), gate, ["r2"])
    assert not kept.promotes and "+1.67%" in kept.reason


def test_threshold_is_a_ceiling_for_lower_is_better_metrics() -> None:
    gate = GateConfig(thresholds={"mae": MetricThreshold(threshold=10.0)},
                      all_metrics_improve=False)
    first = judge(scores({"mae": 12.0}, None), gate, ["mae"])
    assert first.decision == "kept_champion"
    assert "no champion yet, and the first model fails: mae 12.00 > 10.00" in first.reason
    assert judge(scores({"mae": 9.0}, None), gate, ["mae"]).decision == "first_champion"


def test_nan_never_passes() -> None:
    gate = GateConfig(thresholds={"roc_auc": MetricThreshold(threshold=0.5)},
                      all_metrics_improve=True)
    verdict = judge(scores({"roc_auc": float("nan")}, {"roc_auc": 0.7}), gate, ["roc_auc"])
    assert not verdict.promotes


@pytest.mark.parametrize(("mode", "better", "decision"), [
    ("dry_run", True, "dry_run_would_promote"), ("dry_run", False, "dry_run_would_keep"),
    ("disabled", False, "promoted"), ("enforce", False, "kept_champion"),
])
def test_modes(mode: str, better: bool, decision: str) -> None:
    gate = GateConfig(mode=mode)
    new = {"mse": 9.0 if better else 11.0}
    assert judge(scores(new, {"mse": 10.0}), gate, ["mse"]).decision == decision


def test_breaking_schema_rejects_unless_allowed() -> None:
    schema = {"compatible": False, "added": [], "removed": ["bmi"], "changed": []}
    gate = GateConfig(all_metrics_improve=False)
    kept = judge(scores({"mse": 1.0}, {"mse": 2.0}, schema=schema), gate, ["mse"])
    assert not kept.promotes and "breaking: removed bmi" in kept.reason
    allowed = GateConfig(all_metrics_improve=False, schema="allow")
    assert judge(scores({"mse": 1.0}, {"mse": 2.0}, schema=schema), allowed, ["mse"]).promotes


def _signature(types: dict[str, str]):
    import pandas as pd
    from mlflow.models import infer_signature

    frame = pd.DataFrame({name: pd.Series([1, 2, 3]).astype(dtype)
                          for name, dtype in types.items()})
    return infer_signature(frame, np.zeros(3))


@pytest.mark.parametrize(("old", "new", "compatible"), [
    ("int64", "float64", True),  # long -> double widens: old callers' values still fit
    ("int32", "int64", True),  # integer -> long widens
    ("float64", "str", False),  # double -> string: the champion's callers send numbers
    ("float64", "int64", False),  # double -> long narrows
])
def test_a_retyped_column_is_breaking_unless_it_widens(old: str, new: str,
                                                       compatible: bool) -> None:
    from retrainer.evaluation import schema_diff

    diff = schema_diff(_signature({"age": "float64", "bmi": old}),
                       _signature({"age": "float64", "bmi": new}))
    assert diff["compatible"] is compatible
    assert [c["column"] for c in diff["changed"]] == ["bmi"]
    verdict = judge(scores({"mse": 1.0}, {"mse": 2.0}, schema=diff),
                    GateConfig(all_metrics_improve=False), ["mse"])
    assert verdict.promotes is compatible
    if not compatible:
        assert "breaking: retyped bmi" in verdict.reason


def test_bootstrap_interval_brackets_the_difference_and_narrows_with_rows() -> None:
    rng = np.random.default_rng(0)

    def width(n: int) -> float:
        y = rng.normal(size=n)
        a, b = y + rng.normal(scale=1.0, size=n), y + rng.normal(scale=0.9, size=n)
        delta, lo, hi = bootstrap_difference("rmse", y, a, b, resamples=500)
        assert delta == pytest.approx(compute("rmse", y, b) - compute("rmse", y, a))
        assert lo <= delta <= hi
        return hi - lo

    assert width(2000) < width(100) / 2


def test_vectorised_and_sklearn_bootstraps_agree_on_r2() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    a, b = y + rng.normal(size=300), y + rng.normal(scale=0.8, size=300)
    delta, lo, hi = bootstrap_difference("r2", y, a, b, resamples=2000, seed=3)
    assert delta == pytest.approx(compute("r2", y, b) - compute("r2", y, a))
    # The r2 improvement is real here: the whole interval is above 0.
    assert 0 < lo < delta < hi
