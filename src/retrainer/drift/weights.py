"""How much each column counts in the dataset's share rule: the champion's importance.

The reference profile stores the champion's permutation importance on its holdout
(`retrainer.importance`); a column the champion relies on weighs more than an id-like
column it ignores. Equal weights when the profile has none, and the verdict says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Weighting:
    """How much each column counts in the share rule, and where that came from."""

    weights: dict[str, float]
    method: str  # "permutation" (the champion's importance) or "equal"
    metric: str | None = None
    rows: int | None = None
    note: str | None = None  # why equal weights

    def to_dict(self) -> dict:
        return {"method": self.method, "metric": self.metric, "rows": self.rows,
                "note": self.note}


def column_weights(profile: Mapping) -> Weighting:
    """The champion's permutation importance as weights summing to 1, else equal weights.

    Negative importances (shuffling helped, i.e. noise) count as zero.
    """
    names = list(profile["columns"])
    imp = profile.get("importance") or {}
    values = imp.get("values")
    if isinstance(values, Mapping) and values:
        raw = {c: max(_finite(values.get(c)), 0.0) for c in names}
        total = sum(raw.values())
        if total > 0:
            return Weighting({c: v / total for c, v in raw.items()}, "permutation",
                             imp.get("metric"), imp.get("rows"))
        note = "no input has a positive permutation importance"
    else:
        note = imp.get("note") or "the reference profile has no importance"
    equal = 1.0 / len(names) if names else 0.0
    return Weighting({c: equal for c in names}, "equal", note=note)


def _finite(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) else 0.0
