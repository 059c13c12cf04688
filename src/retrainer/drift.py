"""Reference profiles and drift statistics.

A *reference profile* summarises the training data (and the champion's predictions)
in a small JSON document: quantile bin edges and counts per numeric column, category
counts per categorical column, missing rates, moments and a quantile sketch.
`compare` counts current data into the same bins and decides, per column, whether
it drifted.

Calibration. A fixed PSI cut-off false-alarms on small samples (at 200 rows and no
drift PSI averages ~0.09, so ``PSI > 0.1`` fires about a third of the time) while
p-value tests flag meaningless shifts at a million rows. Under no drift,
``PSI / (1/n + 1/m)`` is approximately chi-square with ``B - 1`` degrees of freedom
(PSI is the symmetric KL divergence, whose second-order expansion is Pearson's
statistic for the 2 x B table). The applied threshold is therefore

    max(chi2.isf(alpha, B - 1) * (1/n + 1/m),  min_psi)

with alpha = 0.001 per column (so even "any of 20 columns" stays near 2 %) and a
minimum practical effect min_psi = 0.02 (about a 0.15 sd mean shift): a 0.5 sd shift
(PSI ~0.25) is flagged from ~1k rows and a 0.2 sd shift (PSI ~0.04) from ~10k rows,
while a 0.02 sd shift at 1M rows is not. Categorical columns use Pearson's chi-square
on the same terms, and the missing rate a two-proportion test with a 1 point floor.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from retrainer.errors import UserError

PROFILE_FORMAT = "retrainer.drift/1"
DEFAULT_ALPHA = 1e-3
MIN_PSI = 0.02
MIN_MISSING_CHANGE = 0.01
#: Probabilities of the stored quantile sketch (midpoints, for the Wasserstein integral).
SKETCH_PROBS = (np.arange(100) + 0.5) / 100
#: Rows of current data sorted per column for Wasserstein and KS (bounded cost).
SUBSAMPLE_ROWS = 50_000
MAX_CATEGORIES = 50
MIN_CATEGORY_SHARE = 0.01
MIN_CATEGORY_COUNT = 5
MAX_OTHER_VALUES = 1_000
OTHER = "__other__"
UNSEEN = "__unseen__"
PREDICTION = "prediction"

#: thresholds keys: fixed cut-offs replacing the calibrated ones (psi, chi2,
#: missing_rate), extra rules (js, wasserstein, ks) or calibration knobs.
THRESHOLD_KEYS = frozenset(
    {"psi", "chi2", "missing_rate", "js", "wasserstein", "ks", "alpha", "min_psi"}
)


# --------------------------------------------------------------------------- profile


def build_profile(
    df: pd.DataFrame,
    predictions: np.ndarray | None = None,
    *,
    bins: int = 10,
    max_rows: int = 100_000,
    seed: int = 0,
) -> dict:
    """Profile the reference (training) features, and optionally the predictions.

    Edges are fitted on a seeded sample of at most `max_rows` rows; counts, missing
    rates and moments use every row. The result round-trips through `json`.
    """
    if bins < 2:
        raise UserError(f"drift profile needs at least 2 bins, got {bins}")
    n = len(df)
    if len({str(c) for c in df.columns}) < len(df.columns):
        raise UserError("reference data has duplicate column names")
    rng = np.random.default_rng(seed)
    sample_idx = _sample_index(n, max_rows, rng)
    columns = {str(name): _profile_column(df[name], bins, sample_idx) for name in df.columns}
    prediction = None
    if predictions is not None:
        pred = _predictions_series(predictions)
        prediction = _profile_column(pred, bins, _sample_index(len(pred), max_rows, rng))
    return {
        "format": PROFILE_FORMAT,
        "rows": int(n),
        "bins": int(bins),
        "columns": columns,
        "prediction": prediction,
    }


def save_profile(profile: dict, path: Any) -> None:
    """Write a profile as JSON (what the training module logs as an artifact)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(profile, fh, indent=1, allow_nan=False)


def load_profile(path: Any) -> dict:
    """Read and validate a profile written by `save_profile`."""
    try:
        with open(path, encoding="utf-8") as fh:
            profile = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read drift profile {path}: {exc}") from exc
    _check_profile(profile)
    return profile


def _sample_index(n: int, max_rows: int, rng: np.random.Generator) -> np.ndarray | None:
    if n <= max_rows:
        return None
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def _predictions_series(predictions: Any) -> pd.Series:
    arr = np.asarray(predictions)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        # Multi-output (e.g. class probabilities): profile the first output only.
        arr = arr.reshape(len(arr), -1)[:, 0]
    return pd.Series(arr, name=PREDICTION)


def _kind(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s.dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        return "numeric"
    return "categorical"


def _profile_column(s: pd.Series, bins: int, sample_idx: np.ndarray | None) -> dict:
    if _kind(s) == "numeric":
        return _profile_numeric(s, bins, sample_idx)
    return _profile_categorical(s)


def _as_float(s: pd.Series) -> tuple[np.ndarray, int, Any]:
    """Float view of a column: (values with NaN for missing, count of non-numbers, example)."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        # Epoch seconds; NaT becomes NaN.
        ns = s.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
        ns[s.isna().to_numpy()] = np.nan
        return ns / 1e9, 0, None
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype="float64", na_value=np.nan), 0, None
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna().to_numpy() & s.notna().to_numpy()
    n_bad = int(bad.sum())
    example = s[bad].iloc[0] if n_bad else None
    return num.to_numpy(dtype="float64", na_value=np.nan), n_bad, example


def _profile_numeric(s: pd.Series, bins: int, sample_idx: np.ndarray | None) -> dict:
    x, _, _ = _as_float(s)
    missing_mask = np.isnan(x)
    missing = int(missing_mask.sum())
    valid = x[~missing_mask] if missing else x
    sample = x if sample_idx is None else x[sample_idx]
    sample = sample[~np.isnan(sample)]
    if len(sample) == 0:  # the sample hit only missing rows: fall back to all values
        sample = valid
    n_valid = len(valid)
    if n_valid == 0:
        return {
            "kind": "numeric",
            "dtype": str(s.dtype),
            "n": int(len(x)),
            "missing": missing,
            "edges": [None, None],
            "counts": [0],
            "mean": None,
            "std": None,
            "quantiles": None,
        }
    probs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    # One sort of the (bounded) sample gives the edges and the sketch; np.quantile
    # would partition once per requested quantile (~5x slower for 100 + 9 of them).
    ordered = np.sort(sample)
    inner = np.unique(_sorted_quantiles(ordered, probs))
    # +-inf values belong in the outer bins, never on an edge.
    inner = inner[np.isfinite(inner)]
    counts = _bin_counts(x, inner, missing)
    # Moments and the quantile sketch describe the finite values.
    finite = valid[np.isfinite(valid)]
    finite_sorted = ordered[np.isfinite(ordered)]
    mean = float(np.mean(finite)) if len(finite) else math.nan
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    sketch = (
        [float(q) for q in _sorted_quantiles(finite_sorted, SKETCH_PROBS)]
        if len(finite_sorted)
        else None
    )
    return {
        "kind": "numeric",
        "dtype": str(s.dtype),
        "n": int(len(x)),
        "missing": missing,
        # Outer edges are -inf/+inf, stored as null so the JSON stays standard.
        "edges": [None, *(float(e) for e in inner), None],
        "counts": [int(c) for c in counts],
        "mean": _finite_or_none(mean),
        "std": _finite_or_none(std),
        "quantiles": sketch,
    }


def _profile_categorical(s: pd.Series) -> dict:
    present = s.dropna()
    missing = int(len(s) - len(present))
    vc = _category_keys(present).value_counts()
    n_valid = int(vc.sum())
    keep_mask = (vc >= MIN_CATEGORY_COUNT) & (vc >= MIN_CATEGORY_SHARE * max(n_valid, 1))
    kept = vc[keep_mask].iloc[:MAX_CATEGORIES]
    rare = vc.drop(kept.index)
    categories = [str(k) for k in kept.index]
    counts = [int(c) for c in kept.to_numpy()]
    categories += [OTHER, UNSEEN]
    counts += [int(rare.sum()), 0]
    # Rare values are remembered (up to a cap) so that "rare before" and "never seen"
    # stay distinguishable; past the cap every unknown value counts as __other__.
    other_values = [str(k) for k in rare.index] if len(rare) <= MAX_OTHER_VALUES else None
    return {
        "kind": "categorical",
        "dtype": str(s.dtype),
        "n": int(len(s)),
        "missing": missing,
        "categories": categories,
        "counts": counts,
        "other_values": other_values,
        "distinct": int(len(vc)),
    }


def _category_keys(s: pd.Series) -> pd.Series:
    """String keys for category values; integral floats map like ints (1.0 -> "1").

    An int column picks up NaN and becomes float as soon as one value is missing, so
    without this every category would look unseen.
    """
    if pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(dtype="float64")
        integral = np.isfinite(v) & (v == np.round(v)) & (np.abs(v) < 2**53)
        keys = v.astype(str).astype(object)
        keys[integral] = v[integral].astype(np.int64).astype(str)
        return pd.Series(keys, index=s.index, dtype=object)
    return s.astype(str)


def _check_profile(profile: Any) -> None:
    if not isinstance(profile, Mapping) or profile.get("format") != PROFILE_FORMAT:
        raise UserError(f"not a retrainer drift profile (expected format {PROFILE_FORMAT!r})")
    if not isinstance(profile.get("columns"), Mapping):
        raise UserError("drift profile has no 'columns'")


# --------------------------------------------------------------------------- counting


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


def _inner_edges(col: Mapping) -> np.ndarray:
    return np.asarray(col["edges"][1:-1], dtype="float64")


def _bin_counts(x: np.ndarray, inner: np.ndarray, missing: int) -> np.ndarray:
    """Counts of `x` in bins [e_j, e_j+1) without sorting `x`.

    `searchsorted` on the edges is O(n log B) but branchy (~19 ms per 1M values); with
    the usual <= 16 edges, summing one branch-free comparison per edge gives the same
    bin index ~6x faster. NaN compares false everywhere (bin 0) in the fast path and
    sorts after every edge (last bin) in `searchsorted`; it is taken out again.
    """
    if len(inner) <= _FAST_EDGES:
        idx = np.zeros(len(x), dtype=np.int8)
        for e in inner:
            idx += x >= e
        counts = np.bincount(idx, minlength=len(inner) + 1).astype(np.int64)
        counts[0] -= missing
    else:
        idx = np.searchsorted(inner, x, side="right")
        counts = np.bincount(idx, minlength=len(inner) + 1).astype(np.int64)
        counts[-1] -= missing
    return counts


_FAST_EDGES = 16


def _observe_numeric(s: pd.Series, col: Mapping, sample_rows: np.ndarray | None) -> Observed:
    x, n_bad, example = _as_float(s)
    nan = np.isnan(x)
    n_nan = int(nan.sum())
    inner = _inner_edges(col)
    counts = _bin_counts(x, inner, n_nan)
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


def _map_categories(keys: pd.Series, col: Mapping) -> pd.Series:
    cats = col["categories"]
    known = set(cats) - {OTHER, UNSEEN}
    other = col.get("other_values")
    in_known = keys.isin(known)
    if other is None:
        return keys.where(in_known, OTHER)
    mapped = keys.where(in_known, UNSEEN)
    return mapped.mask(keys.isin(set(other)), OTHER)


def _observe_categorical(s: pd.Series, col: Mapping) -> Observed:
    present = s.dropna()
    mapped = _map_categories(_category_keys(present), col)
    vc = mapped.value_counts()
    counts = np.array([int(vc.get(c, 0)) for c in col["categories"]], dtype=np.int64)
    return Observed(rows=len(s), missing=int(len(s) - len(present)), counts=counts)


# --------------------------------------------------------------------------- report


@dataclass
class ColumnResult:
    """One column's verdict; `to_dict` is the JSON row of DESIGN.md."""

    column: str
    kind: str
    statistic: str | None
    value: float | None
    threshold: float | None
    drifted: bool
    missing_rate_change: float | None
    stats: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    note: str | None = None
    # Histogram for the HTML page: bin labels, reference shares, current shares.
    labels: list[str] = field(default_factory=list, repr=False)
    reference_shares: list[float] = field(default_factory=list, repr=False)
    current_shares: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "column": self.column,
            "statistic": self.statistic,
            "value": _clean(self.value),
            "threshold": _clean(self.threshold),
            "drifted": bool(self.drifted),
            "missing_rate_change": _clean(self.missing_rate_change),
            "kind": self.kind,
        }
        out.update({k: _clean(v) for k, v in self.stats.items()})
        out["reasons"] = list(self.reasons)
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class DriftReport:
    """Per-column results, prediction drift and the dataset verdict."""

    dataset_drift: bool
    columns: list[ColumnResult]
    prediction: ColumnResult | None
    share_drifted: float
    rows_reference: int
    rows_current: int

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_dict(self) -> dict:
        return {
            "dataset_drift": bool(self.dataset_drift),
            "columns": [c.to_dict() for c in self.columns],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "share_drifted": float(self.share_drifted),
            "rows": {"reference": int(self.rows_reference), "current": int(self.rows_current)},
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


def _clean(v: Any) -> Any:
    """JSON-safe scalars: numpy -> python, NaN/inf -> None."""
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- compare


def compare(
    profile: dict,
    current: pd.DataFrame,
    predictions: np.ndarray | None = None,
    *,
    share: float = 0.5,
    key_columns: Sequence[str] = (),
    thresholds: dict[str, float] | None = None,
    seed: int = 0,
) -> DriftReport:
    """Current data against a reference profile.

    Problems in the current data (a missing column, an all-empty column, strings in a
    numeric column) are drifted findings with a `note`; only empty data is an error.
    """
    _check_profile(profile)
    if current is None or len(current) == 0:
        raise UserError("current data has no rows: nothing to compare with the reference")
    th = _check_thresholds(thresholds, share, key_columns, profile)
    m = len(current)
    rng = np.random.default_rng(seed)
    sample_rows = None if m <= SUBSAMPLE_ROWS else rng.choice(m, SUBSAMPLE_ROWS, replace=False)
    # Profiles key columns by str(name): find current columns the same way.
    by_name = {str(c): c for c in current.columns}
    if len(by_name) < len(current.columns):
        raise UserError("current data has duplicate column names")
    observed: dict[str, Observed | None] = {}
    for name, col in profile["columns"].items():
        if name not in by_name:
            observed[name] = None
        elif col["kind"] == "numeric":
            observed[name] = _observe_numeric(current[by_name[name]], col, sample_rows)
        else:
            observed[name] = _observe_categorical(current[by_name[name]], col)
    pred_obs = None
    if predictions is not None and profile.get("prediction"):
        pred = _predictions_series(predictions)
        pcol = profile["prediction"]
        if pcol["kind"] == "numeric":
            rows = (
                None
                if len(pred) <= SUBSAMPLE_ROWS
                else rng.choice(len(pred), SUBSAMPLE_ROWS, replace=False)
            )
            pred_obs = _observe_numeric(pred, pcol, rows)
        else:
            pred_obs = _observe_categorical(pred, pcol)
    return _assemble(profile, observed, pred_obs, m, share, key_columns, th)


def _check_thresholds(
    thresholds: Mapping[str, float] | None,
    share: float,
    key_columns: Sequence[str],
    profile: Mapping,
) -> dict[str, float]:
    th = dict(thresholds or {})
    unknown = sorted(set(th) - THRESHOLD_KEYS)
    if unknown:
        raise UserError(
            f"unknown drift threshold {unknown[0]!r} (known: {', '.join(sorted(THRESHOLD_KEYS))})"
        )
    for k, v in th.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise UserError(f"drift threshold {k!r} must be a non-negative number, got {v!r}")
    if "alpha" in th and not 0 < th["alpha"] < 1:
        raise UserError(f"drift threshold 'alpha' must be in (0, 1), got {th['alpha']}")
    if not 0 < share <= 1:
        raise UserError(f"drift.share must be in (0, 1], got {share}")
    missing_keys = [k for k in key_columns if k not in profile["columns"]]
    if missing_keys:
        raise UserError(f"drift key column {missing_keys[0]!r} is not in the reference profile")
    return th


def _assemble(
    profile: Mapping,
    observed: Mapping[str, Observed | None],
    pred_obs: Observed | None,
    m: int,
    share: float,
    key_columns: Sequence[str],
    th: Mapping[str, float],
) -> DriftReport:
    results = []
    for name, col in profile["columns"].items():
        obs = observed[name]
        if obs is None:
            results.append(_missing_column(name, col))
        else:
            results.append(_score(name, col, obs, th))
    pred = None
    if pred_obs is not None:
        pred = _score(PREDICTION, profile["prediction"], pred_obs, th)
    n_drifted = sum(r.drifted for r in results)
    share_drifted = n_drifted / len(results) if results else 0.0
    key_drift = any(r.drifted for r in results if r.column in set(key_columns))
    return DriftReport(
        dataset_drift=bool(results) and (share_drifted >= share or key_drift),
        columns=results,
        prediction=pred,
        share_drifted=share_drifted,
        rows_reference=int(profile["rows"]),
        rows_current=int(m),
    )


def _missing_column(name: str, col: Mapping) -> ColumnResult:
    return ColumnResult(
        column=name,
        kind=col["kind"],
        statistic=None,
        value=None,
        threshold=None,
        drifted=True,
        missing_rate_change=None,
        reasons=["missing_column"],
        note="column missing from the current data",
    )


def _score(name: str, col: Mapping, obs: Observed, th: Mapping[str, float]) -> ColumnResult:
    alpha = float(th.get("alpha", DEFAULT_ALPHA))
    min_psi = float(th.get("min_psi", MIN_PSI))
    ref_counts = np.asarray(col["counts"], dtype=np.int64)
    cur_counts = obs.counts
    n, m = int(ref_counts.sum()), int(cur_counts.sum())
    numeric = col["kind"] == "numeric"
    labels = _bin_labels(col)
    ref_share = _shares(ref_counts)
    cur_share = _shares(cur_counts)

    # Missing rate (non-numbers count as missing: the model cannot use them either).
    r0 = col["missing"] / col["n"] if col["n"] else 0.0
    r1 = (obs.missing + obs.invalid) / obs.rows if obs.rows else 0.0
    change = r1 - r0
    if "missing_rate" in th:
        miss_thr = float(th["missing_rate"])
    else:
        pooled = (col["missing"] + obs.missing + obs.invalid) / max(col["n"] + obs.rows, 1)
        se = math.sqrt(pooled * (1 - pooled) * (1 / max(col["n"], 1) + 1 / max(obs.rows, 1)))
        miss_thr = max(stats.norm.isf(alpha / 2) * se, MIN_MISSING_CHANGE)
    st: dict[str, Any] = {
        "missing_rate_reference": r0,
        "missing_rate_current": r1,
        "missing_rate_threshold": miss_thr,
    }
    reasons: list[str] = []
    notes: list[str] = []
    if abs(change) > miss_thr:
        reasons.append("missing_rate")
        notes.append(f"missing rate {r0:.1%} -> {r1:.1%}")
    if obs.invalid:
        reasons.append("invalid_values")
        notes.append(
            f"{obs.invalid} value(s) are not numbers (e.g. {str(obs.invalid_example)[:40]!r})"
        )

    base = dict(
        column=name,
        kind=col["kind"],
        missing_rate_change=change,
        labels=labels,
        reference_shares=ref_share.tolist(),
        current_shares=cur_share.tolist(),
    )
    statistic = "psi" if numeric else "chi2"
    if m == 0 or n == 0:
        if m == 0 and n == 0:
            drifted = bool(reasons)
        else:
            drifted = True
            reasons.append("empty_column")
            notes.append(
                "all values are missing in the current data"
                if m == 0
                else "the reference column was empty"
            )
        return ColumnResult(
            statistic=statistic,
            value=None,
            threshold=None,
            drifted=drifted,
            stats=st,
            reasons=reasons,
            note="; ".join(notes) or None,
            **base,
        )

    k = len(ref_counts)
    n_eff_inv = 1 / n + 1 / m
    # Half a count per bin keeps log(q/p) finite for empty bins.
    p = (ref_counts + 0.5) / (n + 0.5 * k)
    q = (cur_counts + 0.5) / (m + 0.5 * k)
    psi = float(np.sum((q - p) * np.log(q / p)))
    df = max(int(np.count_nonzero(ref_counts + cur_counts)) - 1, 1)
    st["psi"] = psi
    st["js_distance"] = float(jensenshannon(ref_share, cur_share, base=2))
    st["df"] = df

    if numeric:
        value = psi
        # Significance alone (what a p-value test would use); reported, not decisive.
        st["p_value"] = float(stats.chi2.sf(psi / n_eff_inv, df))
        if "psi" in th:
            threshold = float(th["psi"])
        else:
            threshold = max(float(stats.chi2.isf(alpha, df)) * n_eff_inv, min_psi)
        _numeric_extras(col, obs, n, st)
    else:
        chi2_stat, pval = _chi2_homogeneity(ref_counts, cur_counts)
        value = chi2_stat
        st["p_value"] = pval
        if "chi2" in th:
            threshold = float(th["chi2"])
        else:
            # Same practical floor as PSI: chi2 * (1/n + 1/m) is on the PSI scale.
            threshold = max(float(stats.chi2.isf(alpha, df)), min_psi / n_eff_inv)
        if cur_counts[-1] > 0:  # __unseen__ is always the last bucket
            notes.append(f"{int(cur_counts[-1])} value(s) never seen in the reference")
    drifted_stat = value > threshold
    if drifted_stat:
        reasons.insert(0, statistic)
    for extra, key in (("js", "js_distance"), ("wasserstein", "wasserstein_norm"), ("ks", "ks")):
        if extra in th and st.get(key) is not None and st[key] > th[extra]:
            reasons.append(extra)
    return ColumnResult(
        statistic=statistic,
        value=value,
        threshold=threshold,
        drifted=bool(reasons),
        stats=st,
        reasons=reasons,
        note="; ".join(notes) or None,
        **base,
    )


def _numeric_extras(col: Mapping, obs: Observed, n: int, st: dict[str, Any]) -> None:
    """Wasserstein (normalised by the reference std) and KS from the quantile sketch."""
    st["mean_reference"] = col.get("mean")
    st["mean_current"] = obs.mean
    st["std_reference"] = col.get("std")
    st["std_current"] = obs.std
    qref = col.get("quantiles")
    sample = obs.sample
    if not qref or sample is None or len(sample) == 0:
        return
    qref = np.asarray(qref, dtype="float64")
    qcur = _sorted_quantiles(sample, SKETCH_PROBS)
    std = col.get("std") or 0.0
    w = float(np.mean(np.abs(qcur - qref)))
    st["wasserstein_norm"] = w / std if std > 0 else (0.0 if w == 0 else math.inf)
    # KS against the reference CDF read off the sketch (resolution ~1/100).
    ns = len(sample)
    if len(np.unique(qref)) == len(qref):
        # Continuous: interpolate the CDF between sketch points.
        f_ref = np.interp(sample, qref, SKETCH_PROBS, left=0.0, right=1.0)
        d = float(
            max(
                np.max(np.arange(1, ns + 1) / ns - f_ref),
                np.max(f_ref - np.arange(0, ns) / ns),
            )
        )
    else:
        # Ties (discrete data): compare both one-sided limits at each distinct value.
        pts = np.unique(sample)
        d = 0.0
        for side in ("left", "right"):
            f_cur = np.searchsorted(sample, pts, side=side) / ns
            f_ref = np.searchsorted(qref, pts, side=side) / len(qref)
            d = max(d, float(np.max(np.abs(f_cur - f_ref))))
    en = ns * n / (ns + n)
    st["ks"] = d
    st["ks_pvalue"] = float(stats.kstwobign.sf(d * math.sqrt(en)))


def _sorted_quantiles(sorted_x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Linear-interpolated quantiles of already sorted data (numpy's default method)."""
    pos = probs * (len(sorted_x) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(sorted_x) - 1)
    frac = pos - lo
    a, b = sorted_x[lo], sorted_x[hi]
    with np.errstate(invalid="ignore"):
        # a + (b - a) * frac, written so that equal and infinite neighbours stay exact.
        out = np.where((frac == 0) | (a == b), a, a * (1 - frac) + b * frac)
    return out


def _chi2_homogeneity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-square for the 2 x K table [a; b], empty categories dropped."""
    keep = (a + b) > 0
    a, b = a[keep].astype(float), b[keep].astype(float)
    if len(a) < 2:
        return 0.0, 1.0
    na, nb = a.sum(), b.sum()
    tot = a + b
    ea, eb = tot * na / (na + nb), tot * nb / (na + nb)
    chi2 = float(np.sum((a - ea) ** 2 / ea) + np.sum((b - eb) ** 2 / eb))
    return chi2, float(stats.chi2.sf(chi2, len(a) - 1))


def _shares(counts: np.ndarray) -> np.ndarray:
    tot = counts.sum()
    return counts / tot if tot else np.zeros(len(counts))


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _bin_labels(col: Mapping) -> list[str]:
    if col["kind"] != "numeric":
        return [str(c) for c in col["categories"]]
    inner = col["edges"][1:-1]
    if not inner:
        return ["all"]
    labels = [f"< {_fmt(inner[0])}"]
    labels += [f"[{_fmt(a)}, {_fmt(b)})" for a, b in zip(inner[:-1], inner[1:], strict=True)]
    labels.append(f">= {_fmt(inner[-1])}")
    return labels


# --------------------------------------------------------------------------- spark


def compare_spark(
    profile: dict,
    spark_df: Any,
    prediction_col: str | None = None,
    *,
    share: float = 0.5,
    key_columns: Sequence[str] = (),
    thresholds: dict[str, float] | None = None,
    seed: int = 0,
) -> DriftReport:
    """`compare` for a Spark DataFrame: bin counts in one Spark aggregation.

    Counts, missing and non-number counts and moments are computed by Spark in a
    single pass; only a bounded sample (for Wasserstein and KS) comes to the driver.
    `prediction_col` names a column of `spark_df` holding the champion's predictions.
    """
    from pyspark.sql import functions as F

    _check_profile(profile)
    th = _check_thresholds(thresholds, share, key_columns, profile)
    present = set(spark_df.columns)
    targets: dict[str, Mapping] = {n: c for n, c in profile["columns"].items() if n in present}
    if prediction_col and profile.get("prediction") and prediction_col in present:
        targets[PREDICTION] = profile["prediction"]
    source = {n: (prediction_col if n == PREDICTION else n) for n in targets}

    aggs = [F.count(F.lit(1)).alias("__rows")]
    plan: dict[str, dict[str, Any]] = {}
    for i, (name, col) in enumerate(targets.items()):
        if col["kind"] != "numeric":
            continue
        raw = F.col(_quoted(source[name]))
        x = _try_double(source[name])
        valid = x.isNotNull() & ~F.isnan(x)
        inner = [float(e) for e in col["edges"][1:-1]]
        # Cumulative counts below each edge; bins are their differences.
        aggs += [
            F.count(F.when(valid & (x < e), 1)).alias(f"c{i}_{j}") for j, e in enumerate(inner)
        ]
        aggs.append(F.count(F.when(valid, 1)).alias(f"v{i}"))
        aggs.append(F.count(F.when(raw.isNotNull() & x.isNull(), 1)).alias(f"bad{i}"))
        aggs.append(F.avg(F.when(valid, x)).alias(f"mean{i}"))
        aggs.append(F.stddev_samp(F.when(valid, x)).alias(f"std{i}"))
        plan[name] = {"i": i, "k": len(inner)}
    row = spark_df.agg(*aggs).collect()[0].asDict()
    m = int(row["__rows"])
    if m == 0:
        raise UserError("current data has no rows: nothing to compare with the reference")

    numeric_names = [n for n in targets if n in plan]
    sample_pdf = None
    if numeric_names:
        frac = min(1.0, SUBSAMPLE_ROWS / m)
        cols = [_try_double(source[n]).alias(n) for n in numeric_names]
        sampled = spark_df.sample(fraction=frac, seed=seed) if frac < 1 else spark_df
        sample_pdf = sampled.select(*cols).limit(SUBSAMPLE_ROWS).toPandas()

    observed: dict[str, Observed | None] = {n: None for n in profile["columns"]}
    pred_obs = None
    for name, col in targets.items():
        if name in plan:
            p = plan[name]
            i = p["i"]
            cum = [int(row[f"c{i}_{j}"]) for j in range(p["k"])] + [int(row[f"v{i}"])]
            counts = np.diff(np.asarray([0, *cum], dtype=np.int64))
            bad = int(row[f"bad{i}"])
            example = None
            if bad:
                raw = F.col(_quoted(source[name]))
                first = spark_df.where(raw.isNotNull() & _try_double(source[name]).isNull())
                example = first.select(raw).limit(1).collect()[0][0]
            sample = sample_pdf[name].to_numpy(dtype="float64")
            obs = Observed(
                rows=m,
                missing=m - int(row[f"v{i}"]) - bad,
                invalid=bad,
                invalid_example=example,
                counts=counts,
                sample=np.sort(sample[~np.isnan(sample)]),
                mean=_none_if_nan(row[f"mean{i}"]),
                std=_none_if_nan(row[f"std{i}"]),
            )
        else:
            obs = _observe_categorical_spark(spark_df, source[name], col, m)
        if name == PREDICTION and prediction_col:
            pred_obs = obs
        else:
            observed[name] = obs
    return _assemble(profile, observed, pred_obs, m, share, key_columns, th)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _try_double(name: str) -> Any:
    """The column as double, NULL where it is not a number.

    Spark 4 runs in ANSI mode, where a plain cast of "n/a" fails the whole job;
    try_cast (Spark >= 3.2) turns it into NULL, which is then counted as a finding.
    """
    from pyspark.sql import functions as F

    return F.expr(f"try_cast({_quoted(name)} AS DOUBLE)")


def _none_if_nan(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _observe_categorical_spark(spark_df: Any, name: str, col: Mapping, m: int) -> Observed:
    """Category counts, mapped to the reference buckets inside Spark (bounded result)."""
    from pyspark.sql import functions as F

    raw = F.col(_quoted(name))
    # Integral doubles map like ints ("1.0" -> "1"), as in `_category_keys`.
    dtype = dict(spark_df.dtypes)[name]
    if dtype in ("double", "float"):
        key = F.when(raw == F.floor(raw), raw.cast("bigint").cast("string")).otherwise(
            raw.cast("string")
        )
    elif dtype == "boolean":
        key = F.when(raw, F.lit("True")).otherwise(F.lit("False"))
    else:
        key = raw.cast("string")
    known = [c for c in col["categories"] if c not in (OTHER, UNSEEN)]
    other = col.get("other_values")
    fallback = (
        F.lit(OTHER)
        if other is None
        else F.when(key.isin(other) if other else F.lit(False), F.lit(OTHER)).otherwise(
            F.lit(UNSEEN)
        )
    )
    bucket = F.when(key.isin(known) if known else F.lit(False), key).otherwise(fallback)
    rows = spark_df.where(raw.isNotNull()).select(bucket.alias("b")).groupBy("b").count().collect()
    got = {r["b"]: int(r["count"]) for r in rows}
    counts = np.array([got.get(c, 0) for c in col["categories"]], dtype=np.int64)
    return Observed(rows=m, missing=m - int(counts.sum()), counts=counts)


# --------------------------------------------------------------------------- HTML


def render_html(report: DriftReport, profile: dict, current: pd.DataFrame | None = None) -> str:
    """A self-contained HTML page: verdict, table, reference-vs-current histograms.

    Histograms come from the report; `current` is only needed for reports whose
    columns carry no histogram (then the counts are recomputed from it).
    """
    results = list(report.columns) + ([report.prediction] if report.prediction else [])
    verdict = "Data drift detected" if report.dataset_drift else "No dataset drift"
    colour = "#b42318" if report.dataset_drift else "#027a48"
    rows_html = []
    for r in results:
        rows_html.append(
            "<tr class='{cls}'><td>{c}</td><td>{k}</td><td>{s}</td><td>{v}</td><td>{t}</td>"
            "<td>{d}</td><td>{mr}</td><td>{note}</td></tr>".format(
                cls="drift" if r.drifted else "ok",
                c=html.escape(r.column),
                k=html.escape(r.kind),
                s=html.escape(r.statistic or "-"),
                v=_cell(r.value),
                t=_cell(r.threshold),
                d="yes" if r.drifted else "no",
                mr=_cell(r.missing_rate_change, pct=True),
                note=html.escape(_explain(r)),
            )
        )
    charts = []
    for r in results:
        labels, ref, cur = r.labels, r.reference_shares, r.current_shares
        if not labels and current is not None and r.column in current.columns:
            col = profile["columns"].get(r.column)
            if col is not None:
                labels = _bin_labels(col)
                ref = _shares(np.asarray(col["counts"])).tolist()
                obs = (
                    _observe_numeric(current[r.column], col, None)
                    if col["kind"] == "numeric"
                    else _observe_categorical(current[r.column], col)
                )
                cur = _shares(obs.counts).tolist()
        charts.append(
            _CHART.format(
                c=html.escape(r.column),
                cls="drift" if r.drifted else "ok",
                d="drifted" if r.drifted else "stable",
                svg=_svg_histogram(labels, ref, cur) if labels else "<p>no data to plot</p>",
            )
        )
    n_drifted = sum(c.drifted for c in report.columns)
    return _PAGE.format(
        colour=colour,
        verdict=html.escape(verdict),
        summary=html.escape(
            f"{n_drifted} of {len(report.columns)} columns drifted "
            f"({report.share_drifted:.0%}); reference {report.rows_reference:,} rows, "
            f"current {report.rows_current:,} rows"
            + (
                f"; prediction {'drifted' if report.prediction.drifted else 'stable'}"
                if report.prediction
                else ""
            )
        ),
        rows="\n".join(rows_html),
        charts="\n".join(charts),
    )


_REASONS = {
    "psi": "PSI above threshold",
    "chi2": "chi-square above threshold",
    "js": "Jensen-Shannon distance above threshold",
    "wasserstein": "Wasserstein distance above threshold",
    "ks": "KS statistic above threshold",
}


def _explain(r: ColumnResult) -> str:
    """The note column: the finding's note, else which statistic crossed its threshold."""
    parts = [_REASONS[x] for x in r.reasons if x in _REASONS]
    if r.note:
        parts.append(r.note)
    return "; ".join(parts)


_CHART = "<section class='chart'><h3>{c} <span class='{cls}'>{d}</span></h3>{svg}</section>"


def _cell(v: float | None, pct: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:+.1%}" if pct else f"{v:.4g}"


def _svg_histogram(labels: list[str], ref: list[float], cur: list[float]) -> str:
    """Grouped bars, reference (grey) beside current (blue), shares on one scale."""
    w_bar, gap, h, top, bottom, left = 12, 10, 160, 10, 70, 40
    k = len(labels)
    width = left + k * (2 * w_bar + gap) + gap
    peak = max([*ref, *cur, 1e-9])
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h + top + bottom}' "
        f"role='img'><title>reference vs current shares</title>",
        f"<line x1='{left}' y1='{top + h}' x2='{width}' y2='{top + h}' stroke='#999'/>",
        f"<text x='2' y='{top + 10}' font-size='10'>{peak:.0%}</text>",
    ]
    for i, label in enumerate(labels):
        x0 = left + gap + i * (2 * w_bar + gap)
        for j, (vals, fill) in enumerate(((ref, "#98a2b3"), (cur, "#1570ef"))):
            v = vals[i] if i < len(vals) else 0.0
            bh = h * v / peak
            parts.append(
                f"<rect x='{x0 + j * w_bar}' y='{top + h - bh:.1f}' width='{w_bar}' "
                f"height='{bh:.1f}' fill='{fill}'><title>{'reference' if j == 0 else 'current'}"
                f" {html.escape(label)}: {v:.2%}</title></rect>"
            )
        tx, ty = x0 + w_bar, top + h + 8
        parts.append(
            f"<text x='{tx}' y='{ty}' font-size='9' text-anchor='end' "
            f"transform='rotate(-45 {tx} {ty})'>{html.escape(label[:18])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>retrainer drift report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#101828}}
.verdict{{padding:.6em 1em;color:#fff;background:{colour};border-radius:6px;display:inline-block}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #d0d5dd;padding:.3em .6em;
font-size:.9em}}tr.drift td{{background:#fef3f2}}span.drift{{color:#b42318}}span.ok{{color:#027a48}}
.charts{{display:flex;flex-wrap:wrap;gap:1.5em}}.legend span{{display:inline-block;width:1em;
height:1em;vertical-align:middle;margin:0 .3em}}
</style></head><body>
<h1>Drift report</h1>
<p class="verdict">{verdict}</p>
<p>{summary}</p>
<table><thead><tr><th>column</th><th>kind</th><th>statistic</th><th>value</th><th>threshold</th>
<th>drifted</th><th>missing rate change</th><th>note</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<p class="legend"><span style="background:#98a2b3"></span>reference
<span style="background:#1570ef"></span>current (share of non-missing rows per bin)</p>
<div class="charts">
{charts}
</div>
</body></html>
"""


# --------------------------------------------------------------------------- champion


PROFILE_ARTIFACT = "reference_profile.json"


@dataclass
class ChampionDrift:
    """`retrainer drift`: the report, what it was computed from, and how."""

    report: DriftReport
    profile: dict
    current: pd.DataFrame
    version: str
    profile_source: str  # "artifact" or "rebuilt from <source>"
    notes: list[str] = field(default_factory=list)


def champion_drift(cfg: Any, data: str | None = None) -> ChampionDrift:
    """Current data against the champion's reference profile, with prediction drift.

    `data` (a path or any data source form) defaults to ``triggers.drift.data``. The
    profile is the champion run's ``reference_profile.json``; a version logged without
    one gets it rebuilt from its run's logged training input (training rows picked by
    their fingerprints). Reads only: nothing is written to the tracking store.
    """
    from pathlib import Path

    from retrainer import data as data_mod
    from retrainer import registry

    source = data or (cfg.triggers.drift.data if cfg.triggers.drift else None)
    if not source:
        raise UserError("no current data: pass --data PATH or set triggers.drift.data")
    query = cfg.triggers.drift.query if (cfg.triggers.drift and not data) else cfg.data.query
    base = Path.cwd() if data else cfg.base_dir
    try:
        current = data_mod.read_source(source, base, query)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - a corrupt file is the user's input
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot read current data {source!r}: {first}") from None
    if current is None or len(current) == 0:
        raise UserError(f"current data {source!r} has no rows")
    current.columns = [str(c) for c in current.columns]

    client = registry.connect(cfg)
    found = registry.current_champion(client, cfg.model, cfg.promote.alias)
    if found is None:
        raise UserError(f"model {cfg.model!r} has no champion yet: run `retrainer run` first")
    mv, how = found
    version = str(mv.version)
    profile, profile_source = _champion_profile(cfg, client, mv)

    notes: list[str] = []
    predictions = None
    if profile.get("prediction") is not None:
        predictions, why = _champion_predictions(cfg, client, version, how, current, profile)
        if why:
            notes.append(why)
    features = current.drop(columns=[cfg.data.target], errors="ignore")
    report = compare(
        profile,
        features,
        predictions,
        share=cfg.drift.share,
        key_columns=cfg.drift.key_columns,
        thresholds=cfg.drift.thresholds or None,
    )
    return ChampionDrift(report, profile, current, version, profile_source, notes)


def _champion_profile(cfg: Any, client: Any, mv: Any) -> tuple[dict, str]:
    """The version's logged profile, or one rebuilt from its logged training input."""
    import os
    import tempfile

    if mv.run_id:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = client.download_artifacts(mv.run_id, PROFILE_ARTIFACT, tmp)
            except Exception:  # noqa: BLE001 - older versions were logged without one
                path = None
            if path and os.path.exists(path):
                return load_profile(path), "artifact"
    return _rebuild_profile(cfg, client, mv)


def _rebuild_profile(cfg: Any, client: Any, mv: Any) -> tuple[dict, str]:
    """Profile of a version's training rows, from the dataset input its run logged."""
    from pathlib import Path

    from retrainer import data as data_mod
    from retrainer.training import load_fingerprints, load_training_info

    no_profile = f"champion version {mv.version} has no {PROFILE_ARTIFACT}" + (
        " and no run" if not mv.run_id else ""
    )
    if not mv.run_id:
        raise UserError(f"{no_profile}; retrain it with `retrainer run` to get one")
    run = client.get_run(mv.run_id)
    uri = None
    for ds_input in getattr(run.inputs, "dataset_inputs", None) or []:
        try:
            src = json.loads(ds_input.dataset.source or "{}")
        except ValueError:
            continue
        uri = src.get("uri") or src.get("url") or src.get("path")
        if uri:
            break
    if not uri:
        raise UserError(
            f"{no_profile} and its run logged no readable training data; "
            "retrain it with `retrainer run` to get one"
        )
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    try:
        frame = data_mod.read_source(uri, Path(cfg.base_dir), cfg.data.query)
    except UserError as err:
        raise UserError(f"{no_profile}; rebuilding it from {uri!r} failed: {err}") from None
    frame.columns = [str(c) for c in frame.columns]
    info = load_training_info(client, mv.run_id)
    target = info.get("target") or cfg.data.target
    features = info.get("features") or [c for c in frame.columns if c != target]
    missing = [c for c in [*features, target] if c not in frame.columns]
    if missing:
        raise UserError(f"{no_profile}; {uri!r} lacks column {missing[0]!r} to rebuild it")
    # Keep the rows the version trained on when the run recorded their fingerprints.
    fps = load_fingerprints(client, mv.run_id)
    if fps is not None:
        ds = data_mod.Dataset(frame, target, list(features), uri)
        mask = np.isin(data_mod.fingerprints(ds), fps)
        if mask.any():
            frame = frame.loc[mask]
    return build_profile(frame[list(features)], bins=cfg.drift.bins), f"rebuilt from {uri}"


def _champion_predictions(
    cfg: Any, client: Any, version: str, how: str, current: pd.DataFrame, profile: dict
) -> tuple[np.ndarray | None, str | None]:
    """Champion predictions on current data, and a note when not every row was scored.

    Rows the model cannot take (missing or non-numeric inputs) are what the column
    findings report; prediction drift is then measured on the rows it can score.
    """
    from retrainer import data as data_mod
    from retrainer import evaluation

    features = [c for c in profile["columns"] if c in current.columns]
    if len(features) < len(profile["columns"]):
        return None, "prediction drift skipped: the current data lacks model input columns"
    try:
        champion = evaluation.load_version(cfg, client, version, how)
    except UserError as err:
        return None, f"prediction drift skipped: {err}"

    def predict(frame: pd.DataFrame) -> np.ndarray:
        ds = data_mod.Dataset(frame, cfg.data.target, features, "current")
        return np.asarray(champion.model.predict(evaluation.champion_inputs(champion, ds)))

    try:
        return predict(current), None
    except Exception as err:  # noqa: BLE001 - retried on the rows it can take
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
    usable = current
    for name in features:
        if profile["columns"][name]["kind"] == "numeric":
            x, _, _ = _as_float(usable[name])
            usable = usable.loc[~np.isnan(x)]
        else:
            usable = usable.loc[usable[name].notna()]
    if len(usable) == 0 or len(usable) == len(current):
        return None, f"prediction drift skipped: the champion cannot score the data ({first})"
    try:
        pred = predict(usable)
    except Exception:  # noqa: BLE001
        return None, f"prediction drift skipped: the champion cannot score the data ({first})"
    return pred, (
        f"prediction drift on the {len(usable)} of {len(current)} rows the champion can "
        "score (the others have missing or non-numeric inputs)"
    )


def table_view(result: ChampionDrift) -> tuple[str, list[str], list[list[str]], list[str]]:
    """What `retrainer drift` shows: (title, header, rows, closing lines), rich markup.

    The CLI prints it (only cli.py prints); the numbers are the report's.
    """
    report = result.report
    title = (
        f"Drift against champion version {result.version} "
        f"(reference {report.rows_reference:,} rows, current {report.rows_current:,})"
    )
    header = ["column", "statistic", "value", "threshold", "drifted", "missing Δ", "note"]
    rows = []
    for r in list(report.columns) + ([report.prediction] if report.prediction else []):
        rows.append(
            [
                r.column,
                r.statistic or "-",
                _cell(r.value),
                _cell(r.threshold),
                "[red]yes[/red]" if r.drifted else "no",
                _cell(r.missing_rate_change, pct=True),
                _explain(r),
            ]
        )
    lines = []
    if result.profile_source != "artifact":
        lines.append(f"reference profile {result.profile_source}")
    lines += [f"note: {note}" for note in result.notes]
    n = sum(c.drifted for c in report.columns)
    verdict = (
        "[bold red]dataset drift[/bold red]"
        if report.dataset_drift
        else "[bold green]no dataset drift[/bold green]"
    )
    pred = ""
    if report.prediction:
        pred = f"; predictions {'drifted' if report.prediction.drifted else 'stable'}"
    lines.append(
        f"{verdict}: {n} of {len(report.columns)} columns drifted "
        f"({report.share_drifted:.0%}){pred}"
    )
    return title, header, rows, lines
