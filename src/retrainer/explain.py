"""What changed inside the model: both models' permutation importance and the shift between.

Measured in every judgement on the clean holdout (the rows neither model trained on), with
the primary metric, a fixed seed and a row cap (`importance.MAX_ROWS`): the ~100 shuffled
copies of a bounded sample are predicted in a few stacked calls per model, whatever the
holdout's size.

The shift compares the challenger's ranking against the champion's the way SageMaker
Clarify flags attribution drift: nDCG with the champion's importances as the gains (1.0
when the challenger ranks features in the same order; Clarify warns below 0.9), Spearman's
rank correlation, and the features whose share of the total importance moved most.

With the optional `shap` package, mean |SHAP| per feature is recorded beside it for the
models shap explains (tree-based or linear): `shap_values.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from retrainer import importance as imp

#: Features listed as "moved most" (by absolute change of share), at most.
MOVED = 3
#: A share change below this is noise, not a move worth naming.
MIN_MOVE = 0.02


def importance_section(
    challenger: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    *,
    metric: str,
    rows: int,
    seed: int,
    notes: Sequence[str] = (),
    shap: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record's `importance`: both models' values, how measured, and the shift.

    `shap` is `shap_values.shap_section`'s mean |SHAP| (or why none), under `shap`.
    """
    section: dict[str, Any] = {
        "method": imp.PERMUTATION, "metric": metric, "rows": int(min(rows, imp.MAX_ROWS)),
        "clean_rows": int(rows), "max_rows": imp.MAX_ROWS, "repeats": imp.REPEATS,
        "seed": int(seed), "challenger": dict(challenger) if challenger else None,
        "champion": dict(champion) if champion else None, "shift": None,
        "notes": list(notes)}
    if shap is not None:
        section["shap"] = dict(shap)
    if challenger and champion:
        section["shift"] = shift(champion, challenger)
    return section


def measure(model: Any, X: Any, y: Any, metric: str, *, seed: int, labels: Any = None,
            columns: Sequence[str] | None = None) -> tuple[dict[str, float] | None, str | None]:
    """One model's permutation importance, or None and why (never raises: an add-on).

    A few stacked predictions of a bounded sample, on one thread (see
    `importance.permutation_importance`; measured in bench/explain.py).
    """
    try:
        return imp.permutation_importance(model, X, y, metric, seed=seed, labels=labels,
                                          columns=columns), None
    except Exception as err:  # noqa: BLE001 - the judgement stands without it
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
        return None, first


def shares(values: Mapping[str, float]) -> dict[str, float]:
    """Each feature's share of the total importance; negative (noise) counts as zero."""
    clipped = {k: max(float(v), 0.0) for k, v in values.items()}
    total = sum(clipped.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in clipped.items()}


def ndcg(reference: Mapping[str, float], ranking: Mapping[str, float]) -> float | None:
    """nDCG of `ranking`'s order, with `reference`'s importances as the gains.

    DCG sums reference(f) / log2(i + 1) over features in the order `ranking` gives them;
    the ideal is the same sum in `reference`'s own order. None when `reference` holds no
    positive importance (no ranking to keep).
    """
    features = sorted(set(reference) | set(ranking))
    gain = {f: max(float(reference.get(f, 0.0)), 0.0) for f in features}

    def dcg(order: list[str]) -> float:
        return sum(gain[f] / math.log2(i + 2) for i, f in enumerate(order))

    # Ties broken by name, so the same values always give the same number.
    ideal = dcg(sorted(features, key=lambda f: (-gain[f], f)))
    if ideal <= 0:
        return None
    order = sorted(features, key=lambda f: (-float(ranking.get(f, 0.0)), f))
    return dcg(order) / ideal


def rank_correlation(a: Mapping[str, float], b: Mapping[str, float]) -> float | None:
    """Spearman's rank correlation over the union of features (a missing one counts 0)."""
    import numpy as np
    from scipy.stats import spearmanr

    features = sorted(set(a) | set(b))
    if len(features) < 2:
        return None
    x = np.array([a.get(f, 0.0) for f in features], dtype=float)
    y = np.array([b.get(f, 0.0) for f in features], dtype=float)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rho = float(spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else None


def shift(champion: Mapping[str, float], challenger: Mapping[str, float]) -> dict[str, Any]:
    """How the challenger's reasons differ from the champion's."""
    old, new = shares(champion), shares(challenger)
    features = set(old) | set(new)
    moves = sorted(
        ({"feature": f, "champion_share": old.get(f, 0.0), "challenger_share": new.get(f, 0.0),
          "change": new.get(f, 0.0) - old.get(f, 0.0)} for f in features),
        key=lambda m: (-abs(m["change"]), m["feature"]))
    return {"ndcg": ndcg(champion, challenger),
            "rank_correlation": rank_correlation(champion, challenger),
            "moved": [m for m in moves if abs(m["change"]) >= MIN_MOVE][:MOVED]}


def moved_text(section: Mapping[str, Any] | None) -> str:
    """'bmi 45% -> 5%, s5 20% -> 60%': the features that moved, for a check or a line."""
    moved = ((section or {}).get("shift") or {}).get("moved") or []
    if not moved:
        return "no feature's share moved by 2 points or more"
    return ", ".join(f"{m['feature']} {m['champion_share']:.0%} -> {m['challenger_share']:.0%}"
                     for m in moved)


def summary_line(section: Mapping[str, Any] | None) -> str | None:
    """One line on the shift for the terminal; None when there is nothing to compare."""
    sh = (section or {}).get("shift")
    if not sh:
        return None
    nd, rc = sh.get("ndcg"), sh.get("rank_correlation")
    return (f"importance shift: nDCG {_num(nd)}, rank correlation {_num(rc)}; "
            f"moved most: {moved_text(section)}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
