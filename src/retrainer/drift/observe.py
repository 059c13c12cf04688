"""Observing current data: count a pandas frame into the reference profile's bins.

What the statistics need from the current data, per column, is an `Observed`: bin
counts on the profile's edges (or categories), missing and non-number counts, moments
and a bounded sorted sample. `drift.spark` builds the same thing with Spark.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from retrainer.drift.profile import (
    OTHER,
    UNSEEN,
    as_float,
    bin_counts,
    category_keys,
    predictions_series,
)

#: Rows of current data sorted per column for Wasserstein and KS (bounded cost).
SUBSAMPLE_ROWS = 50_000


@dataclass
class Observed:
    """What is needed from the current data for one column (pandas or Spark)."""

    rows: int
    missing: int
    invalid: int = 0
    invalid_example: Any = None
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sample: np.ndarray | None = None  # sorted valid values, <= SUBSAMPLE_ROWS
    mean: float | None = None
    std: float | None = None


def observe_frame(
    profile: Mapping,
    current: pd.DataFrame,
    predictions: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[dict[str, Observed | None], Observed | None]:
    """Every profiled column of `current` (None where absent), and the predictions."""
    m = len(current)
    sample_rows = None if m <= SUBSAMPLE_ROWS else rng.choice(m, SUBSAMPLE_ROWS, replace=False)
    # Profiles key columns by str(name): find current columns the same way.
    by_name = {str(c): c for c in current.columns}
    observed: dict[str, Observed | None] = {}
    for name, col in profile["columns"].items():
        if name not in by_name:
            observed[name] = None
        elif col["kind"] == "numeric":
            observed[name] = observe_numeric(current[by_name[name]], col, sample_rows)
        else:
            observed[name] = observe_categorical(current[by_name[name]], col)
    pred_obs = None
    if predictions is not None and profile.get("prediction"):
        pred = predictions_series(predictions)
        pcol = profile["prediction"]
        if pcol["kind"] == "numeric":
            rows = (
                None
                if len(pred) <= SUBSAMPLE_ROWS
                else rng.choice(len(pred), SUBSAMPLE_ROWS, replace=False)
            )
            pred_obs = observe_numeric(pred, pcol, rows)
        else:
            pred_obs = observe_categorical(pred, pcol)
    return observed, pred_obs


def observe_numeric(s: pd.Series, col: Mapping, sample_rows: np.ndarray | None) -> Observed:
    """Counts on the column's profiled edges, moments and a sorted (sub)sample."""
    x, n_bad, example = as_float(s)
    nan = np.isnan(x)
    n_nan = int(nan.sum())
    inner = np.asarray(col["edges"][1:-1], dtype="float64")
    counts = bin_counts(x, inner, n_nan)
    finite = np.isfinite(x)
    valid = x if finite.all() else x[finite]
    sub = x if sample_rows is None else x[sample_rows]
    sub = np.sort(sub[np.isfinite(sub)])
    mean = float(valid.mean()) if len(valid) else None
    std = float(valid.std(ddof=1)) if len(valid) > 1 else None
    return Observed(
        rows=len(x),
        missing=n_nan - n_bad,
        invalid=n_bad,
        invalid_example=example,
        counts=counts,
        sample=sub,
        mean=mean,
        std=std,
    )


def observe_categorical(s: pd.Series, col: Mapping) -> Observed:
    """Counts per profiled category, unknown values in __other__ or __unseen__."""
    present = s.dropna()
    mapped = _map_categories(category_keys(present), col)
    vc = mapped.value_counts()
    counts = np.array([int(vc.get(c, 0)) for c in col["categories"]], dtype=np.int64)
    return Observed(rows=len(s), missing=int(len(s) - len(present)), counts=counts)


def _map_categories(keys: pd.Series, col: Mapping) -> pd.Series:
    cats = col["categories"]
    known = set(cats) - {OTHER, UNSEEN}
    other = col.get("other_values")
    in_known = keys.isin(known)
    if other is None:
        return keys.where(in_known, OTHER)
    mapped = keys.where(in_known, UNSEEN)
    return mapped.mask(keys.isin(set(other)), OTHER)
