"""Metrics by name: values from sklearn.metrics, direction, and paired bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from retrainer.config import CLASSIFICATION_METRICS, REGRESSION_METRICS

if TYPE_CHECKING:
    import numpy as np

GREATER_IS_BETTER: dict[str, bool] = {
    "mse": False, "rmse": False, "mae": False, "r2": True, "mape": False,
    "accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True,
    "log_loss": False,
}
NEEDS_PROBA = {"roc_auc", "log_loss"}


def task_of(metric: str) -> str:
    return "regression" if metric in REGRESSION_METRICS else "classification"


def check_task(metrics: list[str], task: str) -> str | None:
    """A reason why `metrics` do not fit `task`, or None."""
    allowed = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    wrong = [m for m in metrics if m not in allowed]
    if wrong:
        return (f"metric {wrong[0]!r} does not apply to a {task} model; use "
                f"{', '.join(allowed)}")
    return None


def better(metric: str, new: float, old: float) -> bool:
    return new > old if GREATER_IS_BETTER[metric] else new < old


def compute(metric: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None = None,
            labels: np.ndarray | None = None) -> float:
    """One metric with sklearn.metrics. NaN when it cannot be computed (e.g. no proba)."""
    import numpy as np
    from sklearn import metrics as skm

    if metric == "mse":
        return float(skm.mean_squared_error(y, pred))
    if metric == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y, pred)))
    if metric == "mae":
        return float(skm.mean_absolute_error(y, pred))
    if metric == "r2":
        return float(skm.r2_score(y, pred))
    if metric == "mape":
        return float(skm.mean_absolute_percentage_error(y, pred))
    if metric == "accuracy":
        return float(skm.accuracy_score(y, pred))
    average = "binary" if labels is not None and len(labels) == 2 else "macro"
    pos = labels[1] if average == "binary" and labels is not None else 1
    if metric in ("precision", "recall", "f1"):
        fn = {"precision": skm.precision_score, "recall": skm.recall_score,
              "f1": skm.f1_score}[metric]
        kwargs = {"pos_label": pos} if average == "binary" else {}
        return float(fn(y, pred, average=average, zero_division=0, **kwargs))
    if proba is None:
        return float("nan")
    if metric == "roc_auc":
        if len(np.unique(y)) < 2:
            return float("nan")
        if proba.ndim == 2 and proba.shape[1] == 2:
            return float(skm.roc_auc_score(y, proba[:, 1]))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=labels))
    if metric == "log_loss":
        return float(skm.log_loss(y, proba, labels=labels))
    raise ValueError(f"unknown metric {metric!r}")


def _vectorised(metric: str) -> Callable[..., np.ndarray] | None:
    """Per-resample metric over index matrices, for the metrics that allow it."""
    import numpy as np

    def sq(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return ((y - p) ** 2)[idx].mean(axis=1)

    if metric == "mse":
        return sq
    if metric == "rmse":
        return lambda y, p, idx: np.sqrt(sq(y, p, idx))
    if metric == "mae":
        return lambda y, p, idx: np.abs(y - p)[idx].mean(axis=1)
    if metric == "mape":
        eps = np.finfo(np.float64).eps
        return lambda y, p, idx: (np.abs(y - p) / np.maximum(np.abs(y), eps))[idx].mean(axis=1)
    if metric == "accuracy":
        return lambda y, p, idx: (y == p)[idx].mean(axis=1)
    if metric == "r2":
        def r2(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
            yy = y[idx]
            ss_res = ((yy - p[idx]) ** 2).sum(axis=1)
            ss_tot = ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                return 1.0 - ss_res / ss_tot
        return r2
    return None


def bootstrap_difference(metric: str, y: np.ndarray, champion: np.ndarray, challenger: np.ndarray,
                         champion_proba: np.ndarray | None = None,
                         challenger_proba: np.ndarray | None = None,
                         labels: np.ndarray | None = None, *, resamples: int = 1000,
                         confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """challenger - champion on the same rows, with a paired percentile bootstrap interval."""
    import numpy as np

    n = len(y)
    delta = (compute(metric, y, challenger, challenger_proba, labels)
             - compute(metric, y, champion, champion_proba, labels))
    if n < 2:
        return delta, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    fast = _vectorised(metric)
    if fast is not None:
        y_num = y if metric == "accuracy" else y.astype(np.float64)
        diffs = np.empty(0)
        for start in range(0, resamples, 256):  # chunks bound memory at large n
            idx = rng.integers(0, n, size=(min(256, resamples - start), n))
            chunk = fast(y_num, challenger, idx) - fast(y_num, champion, idx)
            diffs = np.concatenate([diffs, chunk])
    else:
        # sklearn per resample: slower, so fewer resamples.
        count = max(200, resamples // 5)
        diffs = np.empty(count)
        for i in range(count):
            idx = rng.integers(0, n, size=n)
            cp = champion_proba[idx] if champion_proba is not None else None
            hp = challenger_proba[idx] if challenger_proba is not None else None
            diffs[i] = (compute(metric, y[idx], challenger[idx], hp, labels)
                        - compute(metric, y[idx], champion[idx], cp, labels))
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return delta, float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha])
    return delta, float(lo), float(hi)
