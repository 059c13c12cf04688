"""The gate's checks and decisions on hand-made scores (no store needed)."""

from __future__ import annotations

import numpy as np
import pytest

from retrainer.config import GateConfig, MetricThreshold, SliceSpec
from retrainer.evaluation import Scores
from retrainer.gate import judge, judge_slice
from retrainer.metrics import bootstrap_difference, compute
from retrainer.slices import SliceScore


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


def ni_scores(new: float, old: float, delta: float, lo: float, hi: float, metric: str = "mse",
              clean: int = 100) -> Scores:
    return scores({metric: new}, {metric: old}, clean=clean,
                  differences={metric: {"delta": delta, "ci95": [lo, hi], "confidence": 0.95}})


def test_non_inferiority_reads_the_interval_in_the_metric_direction() -> None:
    gate = GateConfig(policy="non_inferiority", margin=0.02)
    # r2: greater is better, so the worse end is the interval's low end.
    ok = judge(ni_scores(0.50, 0.51, -0.01, -0.0101, 0.005, "r2"), gate, ["r2"])
    assert ok.promotes and "at worst within the 2% margin" in ok.reason
    worse = judge(ni_scores(0.40, 0.51, -0.11, -0.15, -0.07, "r2"), gate, ["r2"])
    assert not worse.promotes and "confidently worse, beyond the 2% margin" in worse.reason
    past = judge(ni_scores(0.495, 0.51, -0.015, -0.03, 0.0, "r2"), gate, ["r2"])
    assert "worse than the 2% margin on these rows, though not confidently" in past.reason


def test_rows_needed_follow_the_interval_width_scaling_as_one_over_sqrt_n() -> None:
    gate = GateConfig(policy="non_inferiority", margin=0.01)
    # mse 1000 vs 1000: limit 10; delta 0, upper half-width 20: width must halve -> 4x rows.
    thin = judge(ni_scores(1000.0, 1000.0, 0.0, -20.0, 20.0, clean=100), gate, ["mse"])
    assert "about 400 clean rows would be needed (100 here)" in thin.reason
    # With 4x the rows the interval is half as wide, and the same difference passes.
    assert judge(ni_scores(1000.0, 1000.0, 0.0, -10.0, 10.0, clean=400), gate, ["mse"]).promotes


def test_non_inferiority_needs_an_interval() -> None:
    gate = GateConfig(policy="non_inferiority")
    verdict = judge(scores({"mse": 1.0}, {"mse": 2.0}), gate, ["mse"])
    assert not verdict.promotes and "no bootstrap interval" in verdict.reason


def test_noise_note_only_for_a_superiority_promotion_without_confidence() -> None:
    s = ni_scores(3171.03, 3185.98, -14.96, -76.42, 42.91)
    promoted = judge(s, GateConfig(), ["mse"])
    assert promoted.notes == ["the difference is within noise: 95% interval -76..+43 crosses 0"]
    assert judge(s, GateConfig(confidence=0.95), ["mse"]).notes == []
    assert judge(ni_scores(3300.0, 3185.98, 114.0, 50.0, 180.0), GateConfig(), ["mse"]).notes \
        == []


def _slice(name: str, metric: str, new: float, old: float, lo: float, hi: float,
           rows: int = 50, status: str = "judged") -> SliceScore:
    return SliceScore(name, "test", rows, metric, new, old, new - old, [lo, hi], 0.95, status)


def test_a_slice_fails_only_when_its_better_end_is_past_the_limit() -> None:
    gate = GateConfig(slices=[SliceSpec(column="sex")], max_slice_degradation=0.05,
                      all_metrics_improve=False)
    base = {"rmse": 50.0}
    cases = [
        (_slice("sex=1", "rmse", 61.2, 55.0, 3.355, 10.395), False),  # [+6.1%, +18.9%]
        # Confidently worse, but its better end (+4.1%) is inside the 5% allowed.
        (_slice("sex=2", "rmse", 61.2, 55.0, 2.255, 10.395), True),
        (_slice("sex=3", "rmse", 70.0, 55.0, 10.0, 20.0, rows=10, status="too_small"), None),
    ]
    s = scores({"rmse": 49.0}, base, slices=[c for c, _ in cases])
    verdict = judge(s, gate, ["rmse"])
    assert [judge_slice(c, gate) for c, _ in cases] == [ok for _, ok in cases]
    assert not verdict.promotes
    assert verdict.reason == ("slice sex=1: rmse 61.20 vs champion 55.00 (+11.3%, 95% [+6.1%, "
                              "+18.9%]) > 5% allowed")
    # r2 (greater is better): a drop is the degradation.
    r2 = _slice("age=old", "r2", 0.30, 0.40, -0.15, -0.05)
    assert judge_slice(r2, gate) is False
    assert judge_slice(_slice("age=old", "r2", 0.39, 0.40, -0.03, 0.01), gate) is True
