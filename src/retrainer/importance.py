"""Permutation importance: how much a model's metric worsens when one input is shuffled.

Measured on held-out rows with scikit-learn's `permutation_importance` shuffles (the same
values), a fixed seed and a row cap, so it costs a few large predictions of a bounded
sample whatever the data size.
The reference profile stores it (the drift verdict weighs columns by it); the judgement's
explainability reuses it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from retrainer import metrics as mx


def seeded_rows(X: Any, max_rows: int, seed: int) -> tuple[Any, Any]:
    """At most `max_rows` rows of `X` (a frame or an array), a seeded sample in their
    order, and the positions kept: cheap on big holdouts, the same every run."""
    import numpy as np
    import pandas as pd

    n = len(X)
    if n <= max_rows:
        return X, np.arange(n)
    keep = np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))
    return (X.iloc[keep] if isinstance(X, pd.DataFrame) else np.asarray(X)[keep]), keep

#: Rows the importance is measured on at most (a seeded sample beyond that).
MAX_ROWS = 2_000
#: Shuffles per column; the mean is stored.
REPEATS = 5
#: `importance_record` methods.
PERMUTATION = "permutation"
EQUAL = "equal"


def permutation_importance(
    model: Any,
    X: Any,
    y: Any,
    metric: str,
    *,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
    repeats: int = REPEATS,
    labels: Sequence[Any] | None = None,
    columns: Sequence[str] | None = None,
) -> dict[str, float]:
    """Mean worsening of `metric` per shuffled column (positive: the model relies on it).

    `X` is a DataFrame or a 2-D array (then `columns` names its columns). Any model with
    `predict` works (`predict_proba` too for roc_auc / log_loss): the scorer is ours.
    """
    import numpy as np
    import pandas as pd

    names = [str(c) for c in (X.columns if isinstance(X, pd.DataFrame) else columns or [])]
    if not names or len(names) != np.shape(X)[1]:
        raise ValueError("permutation importance needs one name per input column")
    y_arr = np.asarray(y)
    n = len(y_arr)
    if n < 2:
        raise ValueError(f"permutation importance needs at least 2 rows, got {n}")
    if n > max_rows:
        X, keep = seeded_rows(X, max_rows, seed)
        y_arr = y_arr[keep]
        n = max_rows
    label_arr = np.asarray(labels) if labels is not None else None
    sign = 1.0 if mx.GREATER_IS_BETTER[metric] else -1.0
    frame = isinstance(X, pd.DataFrame)
    base = X.reset_index(drop=True) if frame else np.asarray(X)
    # scikit-learn's permutation_importance shuffles: one seed drawn from `seed`, the same
    # stream of cumulative shuffles for every column (its results, reproduced exactly).
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    copies = [(j, r, perm) for j in range(len(names))
              for r, perm in enumerate(_shuffles(n, repeats, column_seed))]
    # All shuffled copies in a few large predictions rather than one small one each: a
    # model call has a fixed cost (input checks, thread start-up) that 100 small calls
    # pay 100 times (0.9 s vs 0.3 s for a 20-tree boosted model at 2,000 rows x 20).
    per_call = max(1, _CELLS_PER_CALL // max(1, n * len(names)))
    worse = np.zeros((len(names), repeats))
    from threadpoolctl import threadpool_limits

    # One thread: on a busy machine OpenMP models (gradient boosting) spin-wait for cores
    # they do not get (measured: 0.5 s with one thread, 0.8-1.5 s with two, at 2,000 rows).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # Shuffled copies trip the model's own input checks' warnings.
        warnings.simplefilter("ignore")
        baseline = _scores(model, base, 1, y_arr, metric, label_arr)[0]
        for start in range(0, len(copies), per_call):
            batch = copies[start:start + per_call]
            stacked = _stacked(base, [(j, perm) for j, _, perm in batch], frame)
            for (j, r, _), value in zip(batch, _scores(model, stacked, len(batch), y_arr,
                                                       metric, label_arr), strict=True):
                worse[j, r] = sign * (baseline - value)
    values = {name: float(v) for name, v in zip(names, worse.mean(axis=1), strict=True)}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{metric} could not be computed with column {bad[0]!r} shuffled")
    return values


#: Cells (rows x columns) predicted per model call at most: bounds the stacked copies'
#: memory (about 40 MB of float64) whatever the number of columns.
_CELLS_PER_CALL = 5_000_000


def _shuffles(n: int, repeats: int, seed: int) -> list[Any]:
    """The row order of each repeat, as scikit-learn's shuffles compose them."""
    import numpy as np

    state = np.random.RandomState(seed)
    idx = np.arange(n)
    order = np.arange(n)
    out = []
    for _ in range(repeats):
        state.shuffle(idx)
        order = order[idx]  # each repeat shuffles the already shuffled column again
        out.append(order.copy())
    return out


def _stacked(base: Any, shuffles: list[tuple[int, Any]], frame: bool) -> Any:
    """Copies of `base`, one per (column, row order), each with that column shuffled,
    stacked into one input. A frame whose columns share one numpy number dtype (all
    float64, say) is stacked as one array, then named: copying a DataFrame a hundred times
    cost more than the shuffling; other frames (categories, strings, mixed dtypes) go copy
    by copy, keeping each column's dtype."""
    import numpy as np
    import pandas as pd

    one_numpy_dtype = frame and base.dtypes.nunique() == 1 and \
        isinstance(base.dtypes.iloc[0], np.dtype) and base.dtypes.iloc[0].kind in "biuf"
    if frame and not one_numpy_dtype:
        copies = []
        for column, perm in shuffles:
            copy = base.copy()
            # A Series keeps the column's dtype (categories, strings); base has a RangeIndex.
            copy.isetitem(column, base.iloc[perm, column].reset_index(drop=True))
            copies.append(copy)
        return pd.concat(copies, ignore_index=True)
    values = base.to_numpy() if frame else base
    n = len(values)
    out = np.tile(values, (len(shuffles), 1))
    for i, (column, perm) in enumerate(shuffles):
        out[i * n:(i + 1) * n, column] = values[perm, column]
    return pd.DataFrame(out, columns=base.columns) if frame else out


def _scores(model: Any, stacked: Any, parts: int, y: Any, metric: str,
            labels: Any) -> list[float]:
    """The metric of each of `parts` equal parts, from one prediction of them stacked."""
    import numpy as np

    pred = np.asarray(model.predict(stacked))
    proba = None
    if metric in mx.NEEDS_PROBA and hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(stacked))
    n = len(y)
    at_once = _errors_at_once(metric, y, pred, parts)
    if at_once is not None:
        return at_once
    return [mx.compute(metric, y, pred[i * n:(i + 1) * n],
                       proba[i * n:(i + 1) * n] if proba is not None else None, labels)
            for i in range(parts)]


def _errors_at_once(metric: str, y: Any, pred: Any, parts: int) -> list[float] | None:
    """mse, rmse or mae of every stacked part in one numpy pass (the same mean of squared
    or absolute errors sklearn.metrics takes), else None: scikit-learn's input checks cost
    more than the metric itself on 2,000 rows, a hundred times per model."""
    import numpy as np

    if metric not in ("mse", "rmse", "mae"):
        return None
    try:
        truth = np.asarray(y, dtype=np.float64)
        guess = np.asarray(pred, dtype=np.float64).reshape(parts, len(truth))
    except (TypeError, ValueError):
        return None
    diff = guess - truth
    values = np.mean(np.abs(diff), axis=1) if metric == "mae" else np.mean(diff ** 2, axis=1)
    if metric == "rmse":
        values = np.sqrt(values)
    return [float(v) for v in values]


def importance_record(
    model: Any,
    X: Any,
    y: Any,
    metric: str,
    *,
    labels: Sequence[Any] | None = None,
    columns: Sequence[str] | None = None,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
) -> dict[str, Any]:
    """What the reference profile stores: the values and how they were measured, or why not.

    Never raises: an importance that cannot be computed means equal weights, and the
    record says why.
    """
    try:
        values = permutation_importance(
            model, X, y, metric, seed=seed, max_rows=max_rows, labels=labels, columns=columns
        )
    except Exception as err:  # noqa: BLE001 - the drift verdict falls back to equal weights
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
        return {"method": EQUAL, "values": None,
                "note": f"permutation importance could not be computed: {first}"}
    return {"method": PERMUTATION, "metric": metric, "rows": int(min(len(y), max_rows)),
            "repeats": REPEATS, "seed": int(seed), "values": values}
