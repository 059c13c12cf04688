"""The dataset verdict's rules: prediction drift, the importance-weighted share, key columns.

Issue 10: on the diabetes example with `bmi` +3 sd, `bp` x2.5 and `s5` -2 sd, the
champion's predictions drift and its three most important inputs moved, yet a plain
share of columns (3 of 10) said "no dataset drift" and `watch` never retrained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import edit_config, run_cli
from drift_helpers import ref_frame
from retrainer.drift.profile import build_profile
from retrainer.drift.statistics import compare
from retrainer.drift.weights import column_weights
from retrainer.importance import importance_record, permutation_importance
from watch_helpers import copy_project

# ------------------------------------------------------------------- importance


def _signal(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """y depends strongly on `strong`, weakly on `weak`, not at all on `noise`."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"strong": rng.normal(size=n), "weak": rng.normal(size=n),
                      "noise": rng.normal(size=n)})
    return X, 3 * X["strong"] + 0.5 * X["weak"] + rng.normal(0, 0.1, n)


def test_permutation_importance_ranks_the_inputs_the_model_uses() -> None:
    from sklearn.linear_model import LinearRegression

    X, y = _signal()
    model = LinearRegression().fit(X, y)
    imp = permutation_importance(model, X, y, "rmse", seed=0)
    assert imp["strong"] > imp["weak"] > 0
    assert abs(imp["noise"]) < imp["weak"] / 5
    # A fixed seed repeats exactly; the row cap bounds the work on big holdouts.
    assert permutation_importance(model, X, y, "rmse", seed=0) == imp
    capped = permutation_importance(model, X, y, "rmse", seed=0, max_rows=100)
    assert capped["strong"] > capped["weak"]
    record = importance_record(model, X, y, "r2", max_rows=100)
    assert record["method"] == "permutation" and record["rows"] == 100
    assert record["metric"] == "r2" and set(record["values"]) == {"strong", "weak", "noise"}


def test_importance_of_any_predict_model_and_of_arrays() -> None:
    """A loaded MLflow pyfunc model has `predict` but no `fit`; a tensor model takes arrays."""
    from sklearn.linear_model import LinearRegression

    X, y = _signal()
    fitted = LinearRegression().fit(X.to_numpy(), y)

    class PredictOnly:
        def predict(self, data: np.ndarray) -> np.ndarray:
            return fitted.predict(np.asarray(data))

    imp = permutation_importance(PredictOnly(), X.to_numpy(), y, "mse",
                                 columns=list(X.columns))
    assert max(imp, key=imp.get) == "strong"


def test_importance_that_cannot_be_computed_says_why() -> None:
    X, y = _signal()

    class Broken:
        def predict(self, data: pd.DataFrame) -> np.ndarray:
            raise RuntimeError("model server unavailable")

    record = importance_record(Broken(), X, y, "rmse")
    assert record["method"] == "equal" and record["values"] is None
    assert "model server unavailable" in record["note"]


# ------------------------------------------------------------------- rules


def _profile(importance: dict | None = None, predictions: np.ndarray | None = None) -> dict:
    ref = ref_frame()
    imp = None if importance is None else {"method": "permutation", "metric": "rmse",
                                           "rows": 500, "values": importance}
    return build_profile(ref, predictions, importance=imp)


def test_prediction_drift_alone_is_dataset_drift_unless_turned_off() -> None:
    rng = np.random.default_rng(9)
    profile = _profile(predictions=rng.normal(size=2000))
    cur = ref_frame(seed=1)
    moved = rng.normal(1.0, 1.0, size=len(cur))
    report = compare(profile, cur, predictions=moved)
    assert report.dataset_drift and report.rules == ["prediction"]
    assert report.verdict.startswith("predictions drifted (PSI ")
    off = compare(profile, cur, predictions=moved, on_prediction=False)
    assert not off.dataset_drift and off.rules == [] and off.prediction.drifted
    assert "drift.on_prediction is off" in off.verdict
    stable = compare(profile, cur, predictions=rng.normal(size=len(cur)))
    assert not stable.dataset_drift and stable.verdict.startswith("predictions stable (PSI ")


def test_share_rule_weighs_columns_by_the_champions_importance() -> None:
    # age carries 80% of the importance, city none: one drifted column of three.
    profile = _profile({"age": 8.0, "bmi": 2.0, "city": -0.1})
    weights = column_weights(profile)
    assert weights.method == "permutation"
    assert weights.weights == pytest.approx({"age": 0.8, "bmi": 0.2, "city": 0.0})
    cur = ref_frame(seed=1)
    cur["age"] += 5  # half an sd
    report = compare(profile, cur)
    assert report.drifted_columns == ["age"] and report.share_drifted == pytest.approx(1 / 3)
    assert report.dataset_drift and report.rules == ["share"]
    assert report.weighted_share_drifted == pytest.approx(0.8)
    assert report.verdict == "1 of 3 columns drifted, 80% of the champion's importance (>= 50%)"

    # The column the champion ignores drifting is not dataset drift, even at share 0.3.
    cur = ref_frame(seed=1)
    cur["city"] = "paris"
    ignored = compare(profile, cur, share=0.3)
    assert ignored.drifted_columns == ["city"] and not ignored.dataset_drift
    assert ignored.verdict == "1 of 3 columns drifted, 0% of the champion's importance (< 30%)"
    # ...unless it is a key column, and the verdict names that rule.
    keyed = compare(profile, cur, key_columns=["city"])
    assert keyed.rules == ["key_columns"] and keyed.verdict.endswith("key column city drifted")


def test_equal_weights_without_importance_and_the_verdict_says_so() -> None:
    profile = _profile()
    assert column_weights(profile).method == "equal"
    cur = ref_frame(seed=1)
    cur["age"] += 5
    report = compare(profile, cur, share=0.3)
    assert report.rules == ["share"]
    assert report.verdict == "1 of 3 columns drifted (33%, equal weights; >= 30%)"
    doc = json.loads(report.to_json())
    assert doc["weighting"] == {"method": "equal", "metric": None, "rows": None,
                                "note": "the reference profile has no importance"}
    # Only numbers that are no importance at all: equal weights again, with the reason.
    zero = _profile({"age": -1.0, "bmi": 0.0, "city": 0.0})
    assert column_weights(zero).note == "no input has a positive permutation importance"


def test_json_adds_rules_verdict_and_weights() -> None:
    rng = np.random.default_rng(3)
    profile = _profile({"age": 3.0, "bmi": 1.0, "city": 0.0}, rng.normal(size=2000))
    cur = ref_frame(seed=1)
    cur["age"] += 5
    doc = json.loads(compare(profile, cur, predictions=rng.normal(1, 1, 2000)).to_json())
    assert set(doc) == {"dataset_drift", "columns", "prediction", "share_drifted", "rows",
                        "rules", "verdict", "weighted_share_drifted", "weighting"}
    assert doc["rules"] == ["prediction", "share"]
    assert doc["weighted_share_drifted"] == pytest.approx(0.75)
    assert {c["column"]: c["weight"] for c in doc["columns"]} == pytest.approx(
        {"age": 0.75, "bmi": 0.25, "city": 0.0})
    assert "weight" not in doc["prediction"]
    assert doc["weighting"]["method"] == "permutation"


# ------------------------------------------------------------------- the issue's example


@pytest.fixture
def champion_project(watch_champion: Path) -> Path:
    """The session's article champion (watch_fixtures): made once per test process, not
    once more per module; tests copy it and never change it."""
    return watch_champion


def _issue_example(project: Path) -> Path:
    """bmi +3 sd, bp x2.5, s5 -2 sd: 3 of 10 columns, the champion's strongest inputs."""
    frame = pd.read_csv(project / "data" / "diabetes.csv")
    frame["bmi"] += 3 * frame["bmi"].std()
    frame["bp"] *= 2.5
    frame["s5"] -= 2 * frame["s5"].std()
    path = project / "data" / "current.csv"
    frame.to_csv(path, index=False)
    return path


def test_issue_example_is_dataset_drift_and_watch_retrains(champion_project: Path,
                                                          tmp_path: Path) -> None:
    proj = copy_project(champion_project, tmp_path / "proj")
    _issue_example(proj)
    edit_config(proj, triggers={"drift": {"data": "data/current.csv"}})

    drift = run_cli("drift", "--json", cwd=proj)
    assert drift.code == 0, drift.stderr
    doc = drift.json()
    assert sorted(c["column"] for c in doc["columns"] if c["drifted"]) == ["bmi", "bp", "s5"]
    assert doc["share_drifted"] == pytest.approx(0.3)
    assert doc["dataset_drift"] is True and doc["rules"][0] == "prediction"
    assert doc["weighting"]["method"] == "permutation" and doc["weighting"]["metric"] == "mse"
    # The three moved columns carry most of what the champion relies on.
    assert doc["weighted_share_drifted"] > 0.5 and "share" in doc["rules"]

    watch = run_cli("watch", "--once", "--json", "--now", "2024-01-01T03:00:00+00:00",
                    cwd=proj)
    assert watch.code == 0, watch.stderr
    fired = watch.json()["fired"]
    assert [f["trigger"] for f in fired] == ["drift"]
    reason = fired[0]["reason"]
    assert reason.startswith("predictions drifted (PSI "), reason
    assert "3 of 10 columns drifted, " in reason and "% of the champion's importance" in reason
    assert len(watch.json()["cycles"]) == 1
