"""Drift statistics: current data against a reference profile, column by column.

`compare` counts current data into the profile's bins (`drift.observe`), scores each
column (PSI for numeric columns and Pearson's chi-square for categorical ones decide;
Jensen-Shannon, Wasserstein and KS are reported beside them; the missing rate has its
own test) against the calibrated thresholds of `drift.thresholds`, and gives the
dataset verdict as a `DriftReport`. The dataset drifts when any rule fires: the
champion's predictions drifted (`prediction`), the drifted columns carry at least
`share` of the champion's importance (`share`; equal weights when the profile has no
importance), or a key column drifted (`key_columns`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from retrainer.drift.observe import Observed, observe_frame
from retrainer.drift.profile import PREDICTION, SKETCH_PROBS, check_profile, sorted_quantiles
from retrainer.drift.thresholds import (
    EXTRA_RULES,
    check_thresholds,
    chi2_sf,
    chi2_threshold,
    missing_rate_threshold,
    psi_threshold,
)
from retrainer.drift.weights import Weighting, column_weights
from retrainer.errors import UserError


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
    weight: float | None = None  # its share of the champion's importance (None: predictions)
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
        if self.weight is not None:
            out["weight"] = _clean(self.weight)
        if self.note:
            out["note"] = self.note
        return out


#: The dataset rules, in the order the verdict names them.
RULES = ("prediction", "share", "key_columns")


@dataclass
class DriftReport:
    """Per-column results, prediction drift and the dataset verdict."""

    dataset_drift: bool
    columns: list[ColumnResult]
    prediction: ColumnResult | None
    share_drifted: float  # share of the columns, unweighted
    rows_reference: int
    rows_current: int
    rules: list[str] = field(default_factory=list)  # the RULES that fired
    weighted_share_drifted: float = 0.0  # what the share rule compares with `share`
    weighting: Weighting | None = None
    share: float = 0.5
    key_columns: list[str] = field(default_factory=list)
    on_prediction: bool = True

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def verdict(self) -> str:
        """Every rule with its numbers, e.g. 'predictions drifted (PSI 0.49 > 0.31); 3 of
        10 columns drifted, 81% of the champion's importance (>= 50%)'."""
        parts = []
        p = self.prediction
        if p is not None:
            off = "" if self.on_prediction or not p.drifted else "; drift.on_prediction is off"
            sample = p.stats.get("sample_rows")
            on = f", on a {sample:,}-row uniform sample" if sample else ""
            parts.append(f"predictions {'drifted' if p.drifted else 'stable'} "
                         f"({_rule_text(p)}{on}{off})")
        n = len(self.drifted_columns)
        versus = f"{'>=' if 'share' in self.rules else '<'} {self.share:.0%}"
        if self.weighting is not None and self.weighting.method != "equal":
            parts.append(f"{n} of {len(self.columns)} columns drifted, "
                         f"{self.weighted_share_drifted:.0%} of the champion's importance "
                         f"({versus})")
        else:
            parts.append(f"{n} of {len(self.columns)} columns drifted "
                         f"({self.weighted_share_drifted:.0%}, equal weights; {versus})")
        keys = [c for c in self.drifted_columns if c in set(self.key_columns)]
        if keys:
            parts.append(f"key column{'s' if len(keys) > 1 else ''} {', '.join(keys)} drifted")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "dataset_drift": bool(self.dataset_drift),
            "columns": [c.to_dict() for c in self.columns],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "share_drifted": float(self.share_drifted),
            "rows": {"reference": int(self.rows_reference), "current": int(self.rows_current)},
            "rules": list(self.rules),
            "verdict": self.verdict,
            "weighted_share_drifted": float(self.weighted_share_drifted),
            "weighting": self.weighting.to_dict() if self.weighting else None,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


def compare(
    profile: dict,
    current: pd.DataFrame,
    predictions: np.ndarray | None = None,
    *,
    share: float = 0.5,
    key_columns: Sequence[str] = (),
    thresholds: dict[str, float] | None = None,
    seed: int = 0,
    on_prediction: bool = True,
) -> DriftReport:
    """Current data against a reference profile.

    Problems in the current data (a missing column, an all-empty column, strings in a
    numeric column) are drifted findings with a `note`; only empty data is an error.
    With `on_prediction`, drifted `predictions` alone make the dataset drift.
    """
    check_profile(profile)
    if current is None or len(current) == 0:
        raise UserError("current data has no rows: nothing to compare with the reference")
    th = check_thresholds(thresholds, share, key_columns, profile)
    if len({str(c) for c in current.columns}) < len(current.columns):
        raise UserError("current data has duplicate column names")
    rng = np.random.default_rng(seed)
    observed, pred_obs = observe_frame(profile, current, predictions, rng)
    return assemble(profile, observed, pred_obs, len(current), share, key_columns, th,
                    on_prediction=on_prediction)


def assemble(
    profile: Mapping,
    observed: Mapping[str, Observed | None],
    pred_obs: Observed | None,
    m: int,
    share: float,
    key_columns: Sequence[str],
    th: Mapping[str, float],
    *,
    on_prediction: bool = True,
) -> DriftReport:
    """Score every observed column (None: missing from the current data) and decide."""
    weighting = column_weights(profile)
    results = []
    for name, col in profile["columns"].items():
        obs = observed[name]
        if obs is None:
            results.append(_missing_column(name, col))
        else:
            results.append(_score(name, col, obs, th))
        results[-1].weight = weighting.weights.get(name, 0.0)
    pred = None
    if pred_obs is not None:
        pred = _score(PREDICTION, profile["prediction"], pred_obs, th)
    n_drifted = sum(r.drifted for r in results)
    share_drifted = n_drifted / len(results) if results else 0.0
    weighted = min(sum(r.weight or 0.0 for r in results if r.drifted), 1.0)
    fired = {
        "prediction": on_prediction and pred is not None and pred.drifted,
        # A hair of slack: five equal weights of 0.1 sum to 0.5 and must reach share 0.5.
        "share": bool(results) and weighted >= share - 1e-9,
        "key_columns": any(r.drifted for r in results if r.column in set(key_columns)),
    }
    rules = [r for r in RULES if fired[r]]
    return DriftReport(
        dataset_drift=bool(rules),
        columns=results,
        prediction=pred,
        share_drifted=share_drifted,
        rows_reference=int(profile["rows"]),
        rows_current=int(m),
        rules=rules,
        weighted_share_drifted=weighted,
        weighting=weighting,
        share=float(share),
        key_columns=list(key_columns),
        on_prediction=bool(on_prediction),
    )


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total (zeros for an empty column)."""
    tot = counts.sum()
    return counts / tot if tot else np.zeros(len(counts))


def bin_labels(col: Mapping) -> list[str]:
    """Readable labels of a profiled column's bins (or its categories)."""
    if col["kind"] != "numeric":
        return [str(c) for c in col["categories"]]
    inner = col["edges"][1:-1]
    if not inner:
        return ["all"]
    labels = [f"< {_fmt(inner[0])}"]
    labels += [f"[{_fmt(a)}, {_fmt(b)})" for a, b in zip(inner[:-1], inner[1:], strict=True)]
    labels.append(f">= {_fmt(inner[-1])}")
    return labels


_REASONS = {
    "psi": "PSI above threshold",
    "chi2": "chi-square above threshold",
    "js": "Jensen-Shannon distance above threshold",
    "wasserstein": "Wasserstein distance above threshold",
    "ks": "KS statistic above threshold",
}


def explain(r: ColumnResult) -> str:
    """The note column: the finding's note, else which statistic crossed its threshold."""
    parts = [_REASONS[x] for x in r.reasons if x in _REASONS]
    if r.note:
        parts.append(r.note)
    return "; ".join(parts)


def cell(v: float | None, pct: bool = False) -> str:
    """A number as a table shows it ("-" when there is none)."""
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:+.1%}" if pct else f"{v:.4g}"


_STAT_NAMES = {"psi": "PSI", "chi2": "chi-square"}


def _rule_text(r: ColumnResult) -> str:
    """'PSI 0.49 > 0.31' (or <=), else the finding's note."""
    if r.value is None or r.threshold is None:
        return explain(r) or "no statistic"
    name = _STAT_NAMES.get(r.statistic or "", r.statistic or "statistic")
    return f"{name} {_short(r.value)} {'>' if r.value > r.threshold else '<='} " \
        f"{_short(r.threshold)}"


def _short(v: float) -> str:
    return f"{v:.2f}" if 0.1 <= abs(v) < 1000 else f"{v:.3g}"


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
    ref_counts = np.asarray(col["counts"], dtype=np.int64)
    cur_counts = obs.counts
    n, m = int(ref_counts.sum()), int(cur_counts.sum())
    numeric = col["kind"] == "numeric"
    ref_share = shares(ref_counts)
    cur_share = shares(cur_counts)

    # Missing rate (non-numbers count as missing: the model cannot use them either).
    r0 = col["missing"] / col["n"] if col["n"] else 0.0
    r1 = (obs.missing + obs.invalid) / obs.rows if obs.rows else 0.0
    change = r1 - r0
    miss_thr = missing_rate_threshold(
        th, col["missing"], col["n"], obs.missing + obs.invalid, obs.rows
    )
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
        labels=bin_labels(col),
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
    st["js_distance"] = js_distance(ref_share, cur_share)
    st["df"] = df

    if numeric:
        value = psi
        # Significance alone (what a p-value test would use); reported, not decisive.
        st["p_value"] = chi2_sf(psi / n_eff_inv, df)
        threshold = psi_threshold(th, df, n_eff_inv)
        _numeric_extras(col, obs, n, st)
    else:
        chi2_stat, pval = chi2_homogeneity(ref_counts, cur_counts)
        value = chi2_stat
        st["p_value"] = pval
        threshold = chi2_threshold(th, df, n_eff_inv)
        if cur_counts[-1] > 0:  # __unseen__ is always the last bucket
            notes.append(f"{int(cur_counts[-1])} value(s) never seen in the reference")
    if value > threshold:
        reasons.insert(0, statistic)
    for extra, key in EXTRA_RULES:
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
    qcur = sorted_quantiles(sample, SKETCH_PROBS)
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
    st["ks_pvalue"] = float(special.kolmogorov(d * math.sqrt(en)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in bits (scipy.spatial.distance.jensenshannon, base 2),
    without importing scipy.spatial (what `retrainer drift` would load it for)."""
    p, q = p / np.sum(p), q / np.sum(q)
    m = (p + q) / 2
    js = (np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))) / 2
    return float(math.sqrt(max(js / math.log(2), 0.0)))


def chi2_homogeneity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-square for the 2 x K table [a; b], empty categories dropped."""
    keep = (a + b) > 0
    a, b = a[keep].astype(float), b[keep].astype(float)
    if len(a) < 2:
        return 0.0, 1.0
    na, nb = a.sum(), b.sum()
    tot = a + b
    ea, eb = tot * na / (na + nb), tot * nb / (na + nb)
    chi2 = float(np.sum((a - ea) ** 2 / ea) + np.sum((b - eb) ** 2 / eb))
    return chi2, chi2_sf(chi2, len(a) - 1)


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


def _fmt(v: float) -> str:
    return f"{v:.4g}"
