"""Drift statistics: calibration across sample sizes, findings, the report, properties.

Calibration tests use seeded synthetic data: the same generator draws reference and
current data, so every flagged column there is a false alarm.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drift_helpers import mixed_frame, ref_frame
from retrainer.drift.profile import OTHER, UNSEEN, build_profile
from retrainer.drift.statistics import ColumnResult, DriftReport, chi2_homogeneity, compare
from retrainer.drift.thresholds import DEFAULT_ALPHA, MIN_PSI
from retrainer.errors import UserError

# ----------------------------------------------------------------------- calibration


def _alarm_rates(n: int, reps: int, seed: int, thresholds=None) -> tuple[float, float]:
    """(share of column checks flagged, share of reps where any column flagged)."""
    rng = np.random.default_rng(seed)
    flagged = checks = any_flagged = 0
    for _ in range(reps):
        ref, cur = mixed_frame(rng, n), mixed_frame(rng, n)
        report = compare(build_profile(ref), cur, thresholds=thresholds)
        k = len(report.drifted_columns)
        flagged += k
        checks += len(report.columns)
        any_flagged += k > 0
    return flagged / checks, any_flagged / reps


def _shift_detection_rate(n: int, shift: float, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        ref = pd.DataFrame({"x": rng.normal(size=n)})
        cur = pd.DataFrame({"x": rng.normal(size=n) + shift})
        hits += compare(build_profile(ref), cur).columns[0].drifted
    return hits / reps


# Seeded, so each case passes or fails the same way every run; 100 reps x 10 columns is
# 1,000 column checks, enough to tell a 5 % rate from the ~0.1 % the thresholds give.
@pytest.mark.parametrize(("n", "reps"), [(200, 100), (1_000, 60), (10_000, 20)])
def test_false_alarm_rate_at_most_5_percent(n: int, reps: int) -> None:
    column_rate, any_rate = _alarm_rates(n, reps, seed=n)
    # The documented bound is 5 % per column; alpha = 0.001 keeps even "any of ten
    # columns flagged" under it.
    assert column_rate <= 0.05
    assert any_rate <= 0.05


def test_harness_catches_an_uncalibrated_cutoff() -> None:
    # The same harness with the textbook fixed cut-off PSI > 0.1 false-alarms a lot
    # at 200 rows: proof that the test above can fail.
    column_rate, any_rate = _alarm_rates(200, 60, seed=3, thresholds={"psi": 0.1})
    assert column_rate > 0.05
    assert any_rate > 0.5


def test_false_alarms_at_one_million_rows() -> None:
    # Costly, so a few repetitions of 5 columns; at 1M rows the practical-effect floor
    # decides and the null PSI (~2e-5) is three orders of magnitude below it.
    rng = np.random.default_rng(1_000_000)
    n = 1_000_000
    flagged = 0
    for _ in range(2):
        ref = pd.DataFrame(rng.normal(size=(n, 5)), columns=list("abcde"))
        cur = pd.DataFrame(rng.normal(size=(n, 5)), columns=list("abcde"))
        report = compare(build_profile(ref), cur)
        flagged += len(report.drifted_columns)
        assert max(c.value for c in report.columns) < report.columns[0].threshold / 10
    assert flagged == 0


@pytest.mark.parametrize(
    ("n", "shift", "reps"),
    [(1_000, 0.5, 60), (10_000, 0.5, 20), (10_000, 0.2, 60)],
)
def test_detects_mean_shifts(n: int, shift: float, reps: int) -> None:
    assert _shift_detection_rate(n, shift, reps, seed=int(n * shift)) >= 0.95


def test_detects_small_shift_but_not_a_meaningless_one_at_one_million_rows() -> None:
    rng = np.random.default_rng(5)
    n = 1_000_000
    ref = pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n)})
    cur = pd.DataFrame({"x": rng.normal(size=n) + 0.2, "y": rng.normal(size=n) + 0.02})
    report = compare(build_profile(ref), cur)
    x, y = report.columns
    assert x.drifted and not y.drifted
    # A p-value test would call the 0.02 sd shift hugely significant at this size;
    # the practical floor is what keeps it quiet.
    assert y.stats["p_value"] < 1e-6
    assert y.threshold == pytest.approx(MIN_PSI)


def test_threshold_depends_on_sample_sizes() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=5_000)})
    profile = build_profile(ref)
    small = compare(profile, pd.DataFrame({"x": rng.normal(size=200)})).columns[0]
    large = compare(profile, pd.DataFrame({"x": rng.normal(size=5_000)})).columns[0]
    assert small.threshold > large.threshold >= MIN_PSI
    # The reported threshold is the applied one: chi2 critical value times (1/n + 1/m).
    from scipy import stats

    expected = stats.chi2.isf(DEFAULT_ALPHA, small.stats["df"]) * (1 / 5_000 + 1 / 200)
    assert small.threshold == pytest.approx(expected)


def test_statistics_match_scipy_references() -> None:
    from scipy import stats

    rng = np.random.default_rng(14)
    ref = pd.DataFrame({"x": rng.normal(size=20_000)})
    cur = pd.DataFrame({"x": rng.normal(0.3, 1.2, size=20_000)})
    col = compare(build_profile(ref), cur).columns[0]
    exact_w = stats.wasserstein_distance(ref["x"], cur["x"]) / ref["x"].std()
    assert col.stats["wasserstein_norm"] == pytest.approx(exact_w, rel=0.05)
    exact_ks = stats.ks_2samp(ref["x"], cur["x"]).statistic
    assert col.stats["ks"] == pytest.approx(exact_ks, abs=0.015)
    assert 0 < col.stats["js_distance"] <= 1
    a = np.array([50, 30, 20])
    b = np.array([30, 30, 40])
    chi2, p = chi2_homogeneity(a, b)
    ref_chi2, ref_p, _, _ = stats.chi2_contingency(np.vstack([a, b]), correction=False)
    assert chi2 == pytest.approx(ref_chi2) and p == pytest.approx(ref_p)


# -------------------------------------------------------------------------- findings


def _by_name(report: DriftReport) -> dict[str, ColumnResult]:
    return {c.column: c for c in report.columns}


def test_missing_column_is_a_finding() -> None:
    ref = ref_frame()
    report = compare(build_profile(ref), ref_frame(seed=1).drop(columns="bmi"))
    bmi = _by_name(report)["bmi"]
    assert bmi.drifted and "missing" in bmi.note
    assert bmi.to_dict()["value"] is None
    assert not _by_name(report)["age"].drifted


def test_all_nan_column_is_a_finding() -> None:
    cur = ref_frame(seed=1)
    cur["bmi"] = np.nan
    bmi = _by_name(compare(build_profile(ref_frame()), cur))["bmi"]
    assert bmi.drifted
    assert "all values are missing" in bmi.note
    assert bmi.missing_rate_change == pytest.approx(1.0)


def test_strings_in_numeric_column_are_a_finding() -> None:
    cur = ref_frame(seed=1)
    cur["age"] = cur["age"].astype(object)
    cur.loc[:9, "age"] = "unknown"
    age = _by_name(compare(build_profile(ref_frame()), cur))["age"]
    assert age.drifted
    assert "invalid_values" in age.reasons
    assert "10 value(s) are not numbers" in age.note and "unknown" in age.note
    # The parseable values are still compared: PSI itself sees no shift.
    assert age.value < age.threshold


def test_missing_rate_change_is_detected_without_any_shift() -> None:
    # Peers drop NaN before testing; here the values left are undrifted, so only the
    # missing-rate rule can see that a third of the column went empty.
    rng = np.random.default_rng(2)
    cur = ref_frame(seed=1)
    cur.loc[rng.random(len(cur)) < 0.3, "bmi"] = np.nan
    bmi = _by_name(compare(build_profile(ref_frame()), cur))["bmi"]
    assert bmi.drifted and bmi.reasons == ["missing_rate"]
    assert bmi.missing_rate_change == pytest.approx(0.3, abs=0.03)
    assert bmi.value < bmi.threshold


def test_categorical_drift_share_change_and_unseen_values() -> None:
    rng = np.random.default_rng(3)
    profile = build_profile(ref_frame())
    same = compare(profile, ref_frame(seed=4))
    assert not _by_name(same)["city"].drifted
    shifted = ref_frame(seed=5)
    shifted["city"] = rng.choice(["paris", "lyon", "nice"], len(shifted), p=[0.3, 0.3, 0.4])
    city = _by_name(compare(profile, shifted))["city"]
    assert city.drifted and city.statistic == "chi2" and city.value > city.threshold
    unseen = ref_frame(seed=6)
    unseen.loc[:299, "city"] = "marseille"
    city = _by_name(compare(profile, unseen))["city"]
    assert city.drifted and "300 value(s) never seen" in city.note


def test_rare_categories_are_merged_and_not_unseen() -> None:
    rng = np.random.default_rng(8)
    n = 5_000
    levels = ["a", "b"] + [f"r{i}" for i in range(20)]
    p = np.array([0.5, 0.46] + [0.002] * 20)
    ref = pd.DataFrame({"c": rng.choice(levels, n, p=p)})
    profile = build_profile(ref)
    col = profile["columns"]["c"]
    assert col["categories"] == ["a", "b", OTHER, UNSEEN]
    assert sorted(col["other_values"]) == sorted(levels[2:])
    c = compare(profile, pd.DataFrame({"c": rng.choice(levels, n, p=p)})).columns[0]
    assert not c.drifted and c.note is None


def test_int_categories_survive_a_missing_value() -> None:
    # An int column becomes float as soon as a value is missing: 1.0 must match "1".
    ref = pd.DataFrame({"code": np.tile(["1", "2", "3"], 400)})
    cur = pd.DataFrame({"code": np.tile([1.0, 2.0, 3.0, np.nan], 300)})
    c = compare(build_profile(ref), cur).columns[0]
    assert c.statistic == "chi2" and c.value < c.threshold
    assert "never seen" not in (c.note or "")


def test_empty_current_data_is_a_user_error() -> None:
    profile = build_profile(ref_frame())
    with pytest.raises(UserError, match="no rows"):
        compare(profile, ref_frame().iloc[:0])


def test_bad_arguments_are_user_errors() -> None:
    profile = build_profile(ref_frame())
    cur = ref_frame(seed=1)
    with pytest.raises(UserError, match="unknown drift threshold"):
        compare(profile, cur, thresholds={"pis": 0.1})
    with pytest.raises(UserError, match="key column"):
        compare(profile, cur, key_columns=["nope"])
    with pytest.raises(UserError, match="not a retrainer drift profile"):
        compare({"columns": {}}, cur)


def test_dataset_verdict_share_and_key_columns() -> None:
    profile = build_profile(ref_frame())
    cur = ref_frame(seed=1)
    cur["age"] += 5  # half an sd: one column of three drifts
    report = compare(profile, cur)
    assert report.drifted_columns == ["age"]
    assert report.share_drifted == pytest.approx(1 / 3)
    assert not report.dataset_drift
    assert compare(profile, cur, share=0.3).dataset_drift
    assert compare(profile, cur, key_columns=["age"]).dataset_drift
    assert not compare(profile, cur, key_columns=["bmi"]).dataset_drift


def test_threshold_overrides_are_applied_and_reported() -> None:
    profile = build_profile(ref_frame())
    cur = ref_frame(seed=1)
    cur["age"] += 5
    report = compare(profile, cur, thresholds={"psi": 10.0, "wasserstein": 0.3})
    age = _by_name(report)["age"]
    assert age.threshold == 10.0
    assert age.drifted and age.reasons == ["wasserstein"]
    assert age.stats["wasserstein_norm"] == pytest.approx(0.5, abs=0.1)


def test_prediction_drift() -> None:
    rng = np.random.default_rng(9)
    ref = ref_frame()
    profile = build_profile(ref, predictions=rng.normal(size=len(ref)))
    cur = ref_frame(seed=1)
    stable = compare(profile, cur, predictions=rng.normal(size=len(cur)))
    assert stable.prediction is not None and not stable.prediction.drifted
    moved = compare(profile, cur, predictions=rng.normal(1.0, 1.0, size=(len(cur), 1)))
    assert moved.prediction.drifted
    assert moved.to_dict()["prediction"]["column"] == "prediction"
    # Prediction drift is a dataset rule of its own (drift.on_prediction), not a column.
    assert moved.dataset_drift and moved.rules == ["prediction"]
    assert not compare(profile, cur, predictions=rng.normal(1.0, 1.0, size=len(cur)),
                       on_prediction=False).dataset_drift
    assert compare(profile, cur).to_dict()["prediction"] is None


def test_report_json_shape() -> None:
    profile = build_profile(ref_frame())
    cur = ref_frame(seed=1)
    cur["bmi"] = np.nan
    doc = json.loads(compare(profile, cur).to_json())
    assert set(doc) == {"dataset_drift", "columns", "prediction", "share_drifted", "rows",
                        "rules", "verdict", "weighted_share_drifted", "weighting"}
    assert doc["rows"] == {"reference": 2_000, "current": 2_000}
    for col in doc["columns"]:
        assert {"column", "statistic", "value", "threshold", "drifted"} <= set(col)
        assert "missing_rate_change" in col
    assert [c["column"] for c in doc["columns"]] == ["age", "bmi", "city"]


# ------------------------------------------------------------------------ properties

_cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-5, 5).map(float),
    st.just(np.nan),
)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    ref=st.lists(_cells, min_size=1, max_size=60),
    cur=st.lists(st.one_of(_cells, st.sampled_from(["x", "", "1e3"])), min_size=1, max_size=60),
    bins=st.integers(2, 12),
)
def test_any_values_give_a_json_report_not_an_exception(ref, cur, bins) -> None:
    profile = build_profile(pd.DataFrame({"v": ref, 1: ref}), bins=bins)
    profile = json.loads(json.dumps(profile, allow_nan=False))
    col = profile["columns"]["v"]
    assert sum(col["counts"]) + col["missing"] == len(ref)
    current = pd.DataFrame({"v": pd.Series(cur, dtype=object), 1: pd.Series(cur, dtype=object)})
    report = compare(profile, current)
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert [c["column"] for c in doc["columns"]] == ["v", "1"]
    for c in doc["columns"]:
        if c["value"] is not None:
            assert c["value"] >= -1e-12
        n_text = sum(isinstance(v, str) and v not in ("1e3",) for v in cur)
        assert ("invalid_values" in c["reasons"]) == (n_text > 0)
