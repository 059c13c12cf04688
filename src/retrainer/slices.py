"""Slices of the clean holdout: which rows each slice holds, and both models' scores there.

A better average can hide a worse group. Each configured slice (every value of a column,
numeric bins of a column, or a `where` filter) is scored for both models on the clean
holdout, with the paired bootstrap interval of the difference; the gate judges them.
Slices too small to judge are kept in the table with their row count, never dropped.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from retrainer import metrics as mx
from retrainer.errors import UserError
from retrainer.where import WhereError, parse_where

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrainer.config import SliceSpec

MAX_VALUES = 50  # a column with more distinct values is continuous: it needs bins

JUDGED = "judged"
TOO_SMALL = "too_small"
NO_CHAMPION = "no_champion"


@dataclass
class SliceScore:
    """One slice on the clean holdout (metric values; interval of challenger - champion)."""

    slice: str
    definition: str
    rows: int
    metric: str
    challenger: float
    champion: float | None
    delta: float | None
    interval: list[float] | None
    confidence: float
    status: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _where(i: int, spec: SliceSpec) -> str:
    return f"gate.slices[{i}] ({spec.label})"


def check_columns(specs: list[SliceSpec], frame: pd.DataFrame) -> None:
    """Fail with exit 2 when the data cannot hold a slice (called before anything is written)."""
    import pandas as pd

    for i, spec in enumerate(specs):
        if spec.where is not None:
            try:
                parse_where(spec.where).mask(frame)
            except WhereError as err:
                raise UserError(f"{_where(i, spec)}: {err}{_hint(str(err), frame)}") from None
            continue
        col = spec.column or ""
        if col not in frame.columns:
            match = difflib.get_close_matches(col, [str(c) for c in frame.columns], n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise UserError(f"{_where(i, spec)}: unknown column {col!r}{hint}; the data has "
                            f"{', '.join(map(str, frame.columns[:12]))}")
        if spec.bins is not None:
            if not pd.api.types.is_numeric_dtype(frame[col].dtype) or \
                    pd.api.types.is_bool_dtype(frame[col].dtype):
                raise UserError(f"{_where(i, spec)}: bins need a numeric column; {col!r} is "
                                f"{frame[col].dtype}")
        elif frame[col].nunique(dropna=False) > MAX_VALUES:
            raise UserError(f"{_where(i, spec)}: column {col!r} has "
                            f"{frame[col].nunique(dropna=False)} distinct values (more than "
                            f"{MAX_VALUES}): give bins, or a where expression")


def _hint(message: str, frame: pd.DataFrame) -> str:
    if not message.startswith("unknown column"):
        return ""
    name = message.split("'")[1] if "'" in message else ""
    match = difflib.get_close_matches(name, [str(c) for c in frame.columns], n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _value_label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return _num(value) if value.is_integer() else f"{value:.4g}"
    return str(value)


def masks(specs: list[SliceSpec], frame: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(name, definition, row mask) of every slice, in config order then by value."""
    import numpy as np
    import pandas as pd

    out: list[tuple[str, str, np.ndarray]] = []
    for i, spec in enumerate(specs):
        if spec.where is not None:
            try:
                out.append((spec.label, f"where {spec.where}", parse_where(spec.where).mask(frame)))
            except WhereError as err:
                raise UserError(f"{_where(i, spec)}: {err}") from None
            continue
        col = spec.column or ""
        if col not in frame.columns:
            raise UserError(f"{_where(i, spec)}: unknown column {col!r}")
        values = frame[col]
        prefix = spec.name or col
        if spec.bins is None:
            defn = f"every value of {col}"
            uniques = pd.unique(values.dropna())
            try:
                uniques = sorted(uniques)
            except TypeError:  # mixed types: keep the order of appearance
                uniques = list(uniques)
            for value in uniques:
                out.append((f"{prefix}={_value_label(value)}", defn,
                            (values == value).to_numpy(dtype=bool)))
            if values.isna().any():
                out.append((f"{prefix}=missing", defn, values.isna().to_numpy()))
            continue
        edges = [float(b) for b in spec.bins]
        defn = f"{col} in bins {[_num(b) for b in edges]}".replace("'", "")
        x = values.to_numpy(dtype=float, na_value=np.nan)
        for k, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
            last = k == len(edges) - 2
            inside = (x >= lo) & ((x <= hi) if last else (x < hi))
            out.append((f"{prefix}=[{_num(lo)}, {_num(hi)}{']' if last else ')'}", defn, inside))
        outside = ((x < edges[0]) | (x > edges[-1])) & ~np.isnan(x)
        if outside.any():  # rows past the edges are a slice too, never silently ungated
            out.append((f"{prefix} outside [{_num(edges[0])}, {_num(edges[-1])}]", defn,
                        outside))
        if np.isnan(x).any():
            out.append((f"{prefix}=missing", defn, np.isnan(x)))
    return out


def score_slices(specs: list[SliceSpec], frame: pd.DataFrame, keep: np.ndarray, y: np.ndarray,
                 metric: str, challenger: tuple[np.ndarray, np.ndarray | None],
                 champion: tuple[np.ndarray, np.ndarray | None] | None,
                 labels: np.ndarray | None, *, min_rows: int, confidence: float,
                 resamples: int, seed: int) -> list[SliceScore]:
    """Both models on each slice of the clean holdout (`keep` marks its rows in `frame`)."""
    results: list[SliceScore] = []
    ch_pred, ch_proba = challenger
    for name, definition, mask in masks(specs, frame):
        rows = mask & keep
        n = int(rows.sum())

        def sub(a: np.ndarray | None, rows: np.ndarray = rows) -> np.ndarray | None:
            return a[rows] if a is not None else None

        ch = mx.compute(metric, y[rows], ch_pred[rows], sub(ch_proba), labels) if n else \
            float("nan")
        if champion is None:
            results.append(SliceScore(name, definition, n, metric, ch, None, None, None,
                                      confidence, NO_CHAMPION))
            continue
        cp_pred, cp_proba = champion
        cp = mx.compute(metric, y[rows], cp_pred[rows], sub(cp_proba), labels) if n else \
            float("nan")
        if n < min_rows:
            results.append(SliceScore(name, definition, n, metric, ch, cp,
                                      ch - cp if n else None, None, confidence, TOO_SMALL))
            continue
        delta, lo, hi = mx.bootstrap_difference(
            metric, y[rows], cp_pred[rows], ch_pred[rows], sub(cp_proba), sub(ch_proba), labels,
            resamples=resamples, confidence=confidence, seed=seed)
        results.append(SliceScore(name, definition, n, metric, ch, cp, delta, [lo, hi],
                                  confidence, JUDGED))
    return results
