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
