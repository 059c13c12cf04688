"""Permutation importance in a few stacked predictions gives scikit-learn's exact values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance as sk_permutation_importance

from retrainer import metrics as mx
from retrainer.importance import permutation_importance


def sklearn_reference(model: Any, X: Any, y: np.ndarray, metric: str, seed: int,
                      labels: Any = None) -> np.ndarray:
    """What retrainer computed before: sklearn's function, one small prediction a copy."""
    sign = 1.0 if mx.GREATER_IS_BETTER[metric] else -1.0

    class Fitted:
        def fit(self, *_: Any) -> Fitted:
            return self

    def score(_: Any, X_: Any, y_: Any) -> float:
        proba = model.predict_proba(X_) if metric in mx.NEEDS_PROBA else None
        return sign * mx.compute(metric, np.asarray(y_), np.asarray(model.predict(X_)),
                                 proba, labels)

    return sk_permutation_importance(Fitted(), X, y, scoring=score, n_repeats=5,
                                     random_state=seed).importances_mean


@pytest.mark.parametrize("seed", [0, 3])
def test_same_values_as_sklearn_on_a_frame_with_a_categorical_column(seed: int) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    X["kind"] = pd.Categorical(rng.choice(["x", "y", "z"], 300))
    y = (2 * X["a"] + X["b"] + 3 * (X["kind"] == "x") + rng.normal(size=300)).to_numpy()
    model = HistGradientBoostingRegressor(max_iter=10, categorical_features="from_dtype")
    model.fit(X, y)
    ours = permutation_importance(model, X, y, "mse", seed=seed)
    assert list(ours) == ["a", "b", "c", "d", "kind"]
    assert list(ours.values()) == pytest.approx(
        list(sklearn_reference(model, X, y, "mse", seed)), rel=1e-12, abs=1e-12)
    assert ours["kind"] > ours["c"]  # the categorical column kept its dtype when shuffled


@pytest.mark.parametrize("metric", ["mse", "mae", "r2"])
def test_same_values_as_sklearn_on_an_all_float_frame_stacked_as_one_array(metric: str) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(400, 5)), columns=list("abcde"))
    y = (3 * X["a"] - X["c"] + rng.normal(size=400)).to_numpy()
    model = HistGradientBoostingRegressor(max_iter=10).fit(X, y)
    ours = permutation_importance(model, X, y, metric, seed=1)
    assert list(ours.values()) == pytest.approx(
        list(sklearn_reference(model, X, y, metric, 1)), rel=1e-12, abs=1e-12)
    assert ours["a"] > ours["c"] > ours["b"]


def test_same_values_as_sklearn_on_arrays_with_probabilities() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(250, 3))
    y = (X[:, 0] + 0.3 * X[:, 1] + rng.normal(scale=0.5, size=250) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    ours = permutation_importance(model, X, y, "roc_auc", seed=2, labels=[0, 1],
                                  columns=["p", "q", "r"])
    reference = sklearn_reference(model, X, y, "roc_auc", 2, labels=np.array([0, 1]))
    assert list(ours.values()) == pytest.approx(list(reference), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("metric", ["mse", "rmse", "mae"])
def test_errors_of_stacked_copies_at_once_equal_sklearns_metric_per_copy(metric: str) -> None:
    from retrainer import metrics as mx
    from retrainer.importance import _errors_at_once

    rng = np.random.default_rng(3)
    y = rng.normal(size=500) * 40
    pred = np.concatenate([y + rng.normal(scale=s, size=500) for s in (1, 5, 30)])
    fast = _errors_at_once(metric, y, pred, 3)
    slow = [mx.compute(metric, y, pred[i * 500:(i + 1) * 500]) for i in range(3)]
    assert fast is not None and fast == pytest.approx(slow, rel=1e-12, abs=1e-12)
    assert _errors_at_once("r2", y, pred, 3) is None  # other metrics: sklearn, part by part
