"""Explainability in every judgement: both models' importance, the shift, the optional check.

The end-to-end case is built so the answer is known: the champion learned y from x1, the
new data carries most of the signal in x2. The challenger is far better on the new data, so every
metric check passes; only the importance check can keep the champion, and it must name
the two features that swapped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import edit_config
from retrainer import explain
from retrainer.config import GateConfig, ImportanceShift, load
from retrainer.cycle import run_cycle
from retrainer.evaluation import Scores
from retrainer.gate import judge


def test_same_ranking_is_ndcg_one_and_a_swap_of_the_top_two_is_caught() -> None:
    champion = {"a": 10.0, "b": 5.0, "c": 1.0, "d": -0.2}
    same_order = {"a": 20.0, "b": 9.0, "c": 3.0, "d": 0.0}
    assert explain.ndcg(champion, same_order) == pytest.approx(1.0)
    assert explain.rank_correlation(champion, same_order) == pytest.approx(1.0)
    swapped = {"a": 5.0, "b": 10.0, "c": 1.0, "d": 0.0}
    nd = explain.ndcg(champion, swapped)
    # DCG (5 + 10/log2 3 + 1/2) over the ideal (10 + 5/log2 3 + 1/2): about 0.84.
    assert nd == pytest.approx((5 + 10 / np.log2(3) + 0.5) / (10 + 5 / np.log2(3) + 0.5))
    assert nd < 0.9
    moved = {m["feature"] for m in explain.shift(champion, swapped)["moved"]}
    assert moved == {"a", "b"}
    # Negative importance is noise: it counts as zero, and nothing positive has no ranking.
    assert explain.ndcg({"a": -1.0, "b": 0.0}, {"a": 1.0, "b": 2.0}) is None
    assert explain.shares({"a": 3.0, "b": -1.0, "c": 1.0}) == {"a": 0.75, "b": 0.0, "c": 0.25}


def test_the_check_fails_closed_when_the_shift_was_not_measured() -> None:
    scores = Scores(challenger={"mse": 1.0}, champion={"mse": 2.0}, naive={}, holdout_rows=100,
                    clean_rows=100, excluded={},
                    importance={"shift": None, "notes": ["champion: permutation importance "
                                                         "not measured: boom"]})
    gate = GateConfig(max_importance_shift=ImportanceShift(ndcg_min=0.9))
    verdict = judge(scores, gate, ["mse"])
    check = next(c for c in verdict.checks if c.name == "importance shift")
    assert not check.passed and "not measured" in check.detail and "boom" in check.detail
    assert verdict.decision == "kept_champion"
    # Off (the default): no check at all, the metric decides.
    assert judge(scores, GateConfig(), ["mse"]).decision == "promoted"


def _frame(seed: int, x1: float, x2: float, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in (1, 2, 3)})
    frame["y"] = (x1 * frame["x1"] + x2 * frame["x2"] + 0.5 * frame["x3"]
                  + rng.normal(scale=0.3, size=n))
    return frame


def test_signal_moving_to_another_feature_is_detected_named_and_gated(project: Path) -> None:
    # The signal moves from x1 to x2; x1 keeps a little, so it still ranks on the new rows
    # for the champion (importance is measured on today's clean holdout, for both models).
    _frame(1, x1=3.0, x2=0.0).to_csv(project / "data" / "old.csv", index=False)
    _frame(2, x1=1.0, x2=3.0).to_csv(project / "data" / "new.csv", index=False)
    edit_config(project, replace=("gate", "train"),
                data={"source": "data/old.csv", "target": "y"},
                train={"estimator": "sklearn.linear_model.LinearRegression"},
                gate={"thresholds": {"rmse": {"min_absolute_change": 0.0}},
                      "max_importance_shift": {"ndcg_min": 0.9}})
    cfg = load(project / "retrainer.yaml")
    first = run_cycle(cfg)
    assert first["decision"] == "first_champion"
    assert first["importance"]["champion"] is None and first["importance"]["shift"] is None
    top = max(first["importance"]["challenger"], key=first["importance"]["challenger"].get)
    assert top == "x1"

    kept = run_cycle(cfg, data=str(project / "data" / "new.csv"))
    imp = kept["importance"]
    assert max(imp["champion"], key=imp["champion"].get) == "x1"
    assert max(imp["challenger"], key=imp["challenger"].get) == "x2"
    assert imp["shift"]["ndcg"] < 0.9
    assert {m["feature"] for m in imp["shift"]["moved"][:2]} == {"x1", "x2"}
    checks = {c["name"]: c for c in kept["checks"]}
    # Every metric check passes (the challenger is far better on the new data) ...
    assert all(c["passed"] for n, c in checks.items() if n != "importance shift")
    # ... and the importance check alone keeps the champion, saying which features moved.
    shift = checks["importance shift"]
    assert not shift["passed"]
    assert "x1 " in shift["detail"] and "x2 " in shift["detail"] and "< 0.9" in shift["detail"]
    assert kept["decision"] == "kept_champion" and "x1" in kept["reason"]
    assert imp["rows"] == imp["clean_rows"] == kept["holdout"]["clean_rows"]

    # Off by default: the same challenger is promoted, and the shift is still reported.
    edit_config(project, replace=("gate",),
                gate={"thresholds": {"rmse": {"min_absolute_change": 0.0}}})
    promoted = run_cycle(load(project / "retrainer.yaml"),
                         data=str(project / "data" / "new.csv"))
    assert promoted["decision"] == "promoted"
    assert "importance shift" not in {c["name"] for c in promoted["checks"]}
    assert promoted["importance"]["shift"]["ndcg"] < 0.9


def test_shap_follows_a_pipeline_to_its_inputs_and_a_tree_ranks_the_known_signal() -> None:
    """y = 3*x1 + 2*[colour == red] + noise; x3 is noise. Through a ColumnTransformer
    (scaled numbers, one-hot colours) into gradient boosting: the tree explainer's values,
    summed over the one-hot columns, rank x1 > colour > x3, per *input* column."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from retrainer import shap_values

    shap = pytest.importorskip("shap")  # `make test` installs the explain extra
    rng = np.random.default_rng(0)
    n = 1_500
    X = pd.DataFrame({"x1": rng.normal(size=n), "colour": rng.choice(["red", "blue", "green"], n),
                      "x3": rng.normal(size=n)})
    y = 3 * X["x1"] + 2 * (X["colour"] == "red") + rng.normal(scale=0.1, size=n)
    model = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["x1", "x3"]),
                           ("cat", OneHotEncoder(), ["colour"])]),
        GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0)).fit(X, y)
    values, kind, rows = shap_values.mean_abs_shap(shap, model, X, list(X.columns), seed=1)
    assert kind == "tree" and rows == shap_values.MAX_ROWS  # the cap, a seeded sample
    assert set(values) == {"x1", "colour", "x3"}
    assert values["x1"] > values["colour"] > 10 * values["x3"]
    # x1's SHAP is ~3*(x1 - mean): mean |.| of a standard normal is sqrt(2/pi).
    assert values["x1"] == pytest.approx(3 * np.sqrt(2 / np.pi), rel=0.15)
    # Same seed, same sample, same numbers.
    assert shap_values.mean_abs_shap(shap, model, X, list(X.columns), seed=1)[0] == values


def test_a_model_shap_cannot_explain_is_recorded_with_the_reason(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retrainer import shap_values

    pytest.importorskip("shap")
    _frame(1, x1=3.0, x2=1.0).to_csv(project / "data" / "old.csv", index=False)
    edit_config(project, replace=("train",), data={"source": "data/old.csv", "target": "y"},
                train={"estimator": "sklearn.neighbors.KNeighborsRegressor"})
    record = run_cycle(load(project / "retrainer.yaml"))
    assert record["decision"] == "first_champion"
    section = record["importance"]["shap"]
    assert section["challenger"] is None and section["explainer"] == {}
    reason = ("challenger: no SHAP values: KNeighborsRegressor is neither tree-based nor "
              "linear (shap's TreeExplainer and LinearExplainer only)")
    assert section["notes"] == [reason] and section["skipped"] == reason
    # Permutation importance still measured it: SHAP is an add-on, never the judgement.
    assert max(record["importance"]["challenger"], key=record["importance"]["challenger"].get) \
        == "x1"

    # explain.shap: off (a team at scale) skips it whatever the model, and says so.
    edit_config(project, replace=("train",), train={"estimator": "sklearn.linear_model.Ridge"},
                explain={"shap": False})  # what YAML makes of a bare `off`
    off = run_cycle(load(project / "retrainer.yaml"))
    assert off["importance"]["shap"] == {"skipped": "explain.shap is off"}
    assert off["importance"]["challenger"]  # permutation importance as ever

    # A forest too large for the TreeSHAP budget, and shap missing: said, never raised.
    from sklearn.ensemble import RandomForestRegressor

    frame = _frame(3, x1=1.0, x2=1.0, n=300)
    X = frame.drop(columns="y")
    forest = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, frame["y"])
    monkeypatch.setattr(shap_values, "TREE_BUDGET_SECONDS", 1e-6)
    big = shap_values.shap_section({"challenger": (forest, X), "champion": None}, list(X.columns),
                                   seed=0)
    assert big["challenger"] is None and "too large to explain" in big["skipped"]
    monkeypatch.setitem(__import__("sys").modules, "shap", None)  # import shap now fails
    assert shap_values.shap_section({"challenger": (forest, X)}, list(X.columns), seed=0) == {
        "skipped": "shap is not installed (pip install 'retrainer[explain]')"}
