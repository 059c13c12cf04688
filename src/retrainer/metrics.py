"""Metrics by name: values from sklearn.metrics, direction, and paired bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


#: Up to this many rows the bootstrap resamples rows: the exact paired bootstrap. Beyond,
#: rows are dealt at random into this many groups and the groups are resampled (below).
MAX_UNITS = 10_000
#: Metrics that are a function of per-row sums (the grouped bootstrap applies).
SUM_METRICS = ("mse", "rmse", "mae", "mape", "r2", "accuracy")
_CHUNK = 256  # resamples per block: bounds memory at 256 x MAX_UNITS counts


@dataclass
class Interval:
    """challenger - champion, its bootstrap interval, and how the interval was made."""

    delta: float
    lo: float
    hi: float
    method: dict[str, Any] = field(default_factory=dict)


def _components(metric: str, y: np.ndarray, champion: np.ndarray, challenger: np.ndarray
                ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]] | None:
    """Per-row columns whose sums give the metric's difference, and that function of sums.

    Every metric here is a smooth function of sums over rows, so a resample only needs
    the sums of its rows: of rows themselves (the exact bootstrap) or of groups of rows.
    """
    import numpy as np

    if metric not in SUM_METRICS:
        return None
    if metric == "accuracy":
        ones = np.ones(len(y))
        return (np.column_stack([challenger == y, champion == y, ones]).astype(np.float64),
                lambda s: (s[:, 0] - s[:, 1]) / s[:, 2])
    y = y.astype(np.float64)
    ch, cp = challenger.astype(np.float64), champion.astype(np.float64)
    ones = np.ones(len(y))
    if metric in ("mse", "rmse"):
        cols = np.column_stack([(y - ch) ** 2, (y - cp) ** 2, ones])
        if metric == "mse":
            return cols, lambda s: (s[:, 0] - s[:, 1]) / s[:, 2]
        return cols, lambda s: np.sqrt(s[:, 0] / s[:, 2]) - np.sqrt(s[:, 1] / s[:, 2])
    if metric in ("mae", "mape"):
        # mape as sklearn: |error| / max(|y|, eps).
        scale = np.maximum(np.abs(y), np.finfo(np.float64).eps) if metric == "mape" else 1.0
        cols = np.column_stack([np.abs(y - ch) / scale, np.abs(y - cp) / scale, ones])
        return cols, lambda s: (s[:, 0] - s[:, 1]) / s[:, 2]
    # r2: 1 - SSres / SStot, SStot = sum(y^2) - sum(y)^2 / n; y centred first so that the
    # subtraction does not cancel away the digits of a target far from zero.
    yc = y - y.mean()
    cols = np.column_stack([(y - ch) ** 2, (y - cp) ** 2, yc, yc ** 2, ones])

    def r2(s: np.ndarray) -> np.ndarray:
        ss_tot = s[:, 3] - s[:, 2] ** 2 / s[:, 4]
        with np.errstate(divide="ignore", invalid="ignore"):
            return (s[:, 1] - s[:, 0]) / ss_tot
    return cols, r2


def _sum_bootstrap(cols: np.ndarray, stat: Callable[[np.ndarray], np.ndarray], resamples: int,
                   rng: np.random.Generator, max_units: int) -> tuple[np.ndarray, dict]:
    """The statistics (one column each) over `resamples` resamples of units: rows, or
    random groups of rows.

    Rows dealt at random into G groups have group sums whose every cumulant is the sum of
    its rows', so G groups drawn with replacement give the sums of n rows drawn with
    replacement the same mean, variance and skew in expectation; G only sets how closely
    the spread is estimated (about 1/sqrt(2G): 0.7% at 10,000, well under the Monte Carlo
    error of the interval's ends at 1,000 resamples). Cost: O(n) once, then O(resamples x
    G), whatever the holdout's size. With n <= max_units the units are the rows and the
    draws are those of the exact row bootstrap.
    """
    import numpy as np

    n = len(cols)
    if n > max_units:
        group = np.empty(n, dtype=np.int64)
        group[rng.permutation(n)] = np.arange(n) % max_units
        units = np.column_stack([np.bincount(group, weights=cols[:, k], minlength=max_units)
                                 for k in range(cols.shape[1])])
        method = {"unit": "group", "groups": max_units, "rows_per_group": n / max_units}
    else:
        units, method = cols, {"unit": "row"}
    g = len(units)
    out: list[np.ndarray] = []
    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        idx = rng.integers(0, g, size=(b, g))
        # How often each unit is drawn, per resample; the sums are then one matrix product.
        counts = np.bincount((idx + g * np.arange(b)[:, None]).ravel(),
                             minlength=b * g).reshape(b, g)
        out.append(stat(counts.astype(np.float64) @ units))
    return np.concatenate(out), method


def _sklearn_bootstrap(metric: str, y: np.ndarray, champion: np.ndarray,
                       challenger: np.ndarray, champion_proba: np.ndarray | None,
                       challenger_proba: np.ndarray | None, labels: np.ndarray | None,
                       count: int, rng: np.random.Generator, max_units: int
                       ) -> tuple[np.ndarray, dict]:
    """Metrics that are no function of row sums (roc_auc, f1, ...): sklearn per resample.

    Beyond `max_units` rows each resample draws `max_units` rows (the m-out-of-n
    bootstrap); the caller scales its spread by sqrt(m / n), valid for these
    root-n-consistent statistics.
    """
    import numpy as np

    n = len(y)
    m = min(n, max_units)
    diffs = np.empty(count)
    for i in range(count):
        idx = rng.integers(0, n, size=m)
        cp = champion_proba[idx] if champion_proba is not None else None
        hp = challenger_proba[idx] if challenger_proba is not None else None
        diffs[i] = (compute(metric, y[idx], challenger[idx], hp, labels)
                    - compute(metric, y[idx], champion[idx], cp, labels))
    method: dict[str, Any] = {"unit": "row"}
    if m < n:
        method.update(rows_per_resample=m, scaled_by=(m / n) ** 0.5)
    return diffs, method


def bootstrap_intervals(metrics: list[str], y: np.ndarray, champion: np.ndarray,
                        challenger: np.ndarray, champion_proba: np.ndarray | None = None,
                        challenger_proba: np.ndarray | None = None,
                        labels: np.ndarray | None = None, *, resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0,
                        max_units: int = MAX_UNITS) -> dict[str, Interval]:
    """challenger - champion on the same rows per metric, with paired percentile bootstrap
    intervals. Seeded: the same inputs give the same intervals, whichever metrics are
    asked together. `method` says what was resampled.

    The metrics of row sums share one set of resamples (their draws are the same anyway).
    """
    import numpy as np

    n = len(y)
    y, champion, challenger = np.asarray(y), np.asarray(champion), np.asarray(challenger)
    diffs: dict[str, np.ndarray] = {}
    how: dict[str, dict[str, Any]] = {}
    summed = {m: parts for m in dict.fromkeys(metrics) if n >= 2
              and (parts := _components(m, y, champion, challenger)) is not None}
    if summed:
        bounds = np.cumsum([0] + [c.shape[1] for c, _ in summed.values()])
        stats = [f for _, f in summed.values()]

        def stat(s: np.ndarray) -> np.ndarray:
            return np.column_stack([f(s[:, a:b]) for f, a, b in
                                    zip(stats, bounds[:-1], bounds[1:], strict=True)])

        found, method = _sum_bootstrap(np.hstack([c for c, _ in summed.values()]), stat,
                                       resamples, np.random.default_rng(seed), max_units)
        for i, m in enumerate(summed):
            diffs[m], how[m] = found[:, i], {"resamples": resamples, **method}
    out = {}
    for m in metrics:
        delta = (compute(m, y, challenger, challenger_proba, labels)
                 - compute(m, y, champion, champion_proba, labels))
        method = {"method": "paired_percentile_bootstrap", "rows": int(n)}
        if n < 2:
            out[m] = Interval(delta, float("nan"), float("nan"), method)
            continue
        if m not in diffs:
            count = max(200, resamples // 5)  # sklearn per resample: slower, so fewer
            diffs[m], extra = _sklearn_bootstrap(
                m, y, champion, challenger, champion_proba, challenger_proba, labels, count,
                np.random.default_rng(seed), max_units)
            how[m] = {"resamples": count, **extra}
        method.update(how[m])
        finite = diffs[m][np.isfinite(diffs[m])]
        if finite.size == 0:
            out[m] = Interval(delta, float("nan"), float("nan"), method)
            continue
        alpha = (1 - confidence) / 2
        lo, hi = np.quantile(finite, [alpha, 1 - alpha])
        scale = method.get("scaled_by")
        if scale is not None:  # m-out-of-n: the spread of m rows, shrunk to that of n
            lo, hi = delta + scale * (lo - delta), delta + scale * (hi - delta)
        out[m] = Interval(delta, float(lo), float(hi), method)
    return out


def bootstrap_interval(metric: str, y: np.ndarray, champion: np.ndarray,
                       challenger: np.ndarray, champion_proba: np.ndarray | None = None,
                       challenger_proba: np.ndarray | None = None,
                       labels: np.ndarray | None = None, *, resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0,
                       max_units: int = MAX_UNITS) -> Interval:
    """One metric of `bootstrap_intervals`."""
    return bootstrap_intervals([metric], y, champion, challenger, champion_proba,
                               challenger_proba, labels, resamples=resamples,
                               confidence=confidence, seed=seed, max_units=max_units)[metric]


def bootstrap_difference(metric: str, y: np.ndarray, champion: np.ndarray, challenger: np.ndarray,
                         champion_proba: np.ndarray | None = None,
                         challenger_proba: np.ndarray | None = None,
                         labels: np.ndarray | None = None, *, resamples: int = 1000,
                         confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(delta, lo, hi) of `bootstrap_interval`."""
    found = bootstrap_interval(metric, y, champion, challenger, champion_proba,
                               challenger_proba, labels, resamples=resamples,
                               confidence=confidence, seed=seed)
    return found.delta, found.lo, found.hi
