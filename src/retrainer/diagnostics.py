"""What the report's charts need from both models' predictions on the clean holdout, bounded.

Regression: a seeded sample of at most `MAX_POINTS` rows (actual, champion, challenger) for
predicted-vs-actual and residual plots. Classification: each model's confusion matrix and,
for two classes, its ROC curve thinned to at most `MAX_ROC_POINTS` points. Sizes do not
grow with the holdout, so a 200k-row holdout costs one confusion matrix and one sort.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

MAX_POINTS = 400
MAX_ROC_POINTS = 100


def summarise(task: str, y: np.ndarray, challenger: np.ndarray, champion: np.ndarray | None,
              challenger_proba: np.ndarray | None = None,
              champion_proba: np.ndarray | None = None, labels: Any = None,
              seed: int = 0) -> dict[str, Any]:
    """Chart data for the report (JSON-safe); the predictions are of the clean rows."""
    import numpy as np

    n = len(y)
    out: dict[str, Any] = {"task": task, "rows": int(n)}
    if n == 0:
        return out
    if task == "regression":
        idx = np.arange(n)
        if n > MAX_POINTS:
            idx = np.sort(np.random.default_rng(seed).choice(n, MAX_POINTS, replace=False))
        out["sample"] = {
            "rows": int(len(idx)),
            "actual": _floats(y[idx]),
            "challenger": _floats(challenger[idx]),
            "champion": _floats(champion[idx]) if champion is not None else None}
        return out
    classes = list(labels) if labels is not None else sorted(np.unique(y).tolist())
    out["labels"] = [_plain(c) for c in classes]
    out["confusion"] = {"challenger": _confusion(y, challenger, classes),
                        "champion": _confusion(y, champion, classes)
                        if champion is not None else None}
    if len(classes) == 2:
        out["roc"] = {"challenger": _roc(y, challenger_proba, classes[1]),
                      "champion": _roc(y, champion_proba, classes[1])}
    return out


def _confusion(y: np.ndarray, pred: np.ndarray, classes: list[Any]) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y, pred, labels=classes).astype(int).tolist()


def _roc(y: np.ndarray, proba: np.ndarray | None, positive: Any) -> dict[str, Any] | None:
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    if proba is None or len(np.unique(y)) < 2:
        return None
    score = proba[:, 1] if proba.ndim == 2 else proba
    fpr, tpr, _ = roc_curve(y, score, pos_label=positive)
    if len(fpr) > MAX_ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, MAX_ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    auc = float(roc_auc_score((y == positive).astype(int), score))
    return {"fpr": _floats(fpr), "tpr": _floats(tpr), "auc": auc}


def _floats(a: Any) -> list[float]:
    import numpy as np

    return [round(float(v), 6) for v in np.asarray(a, dtype=float)]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
