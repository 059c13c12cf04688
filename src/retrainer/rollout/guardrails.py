"""Guardrails: one model's live traffic against another's, as lines that hold, wait or trip.

Each guardrail compares a *candidate* (the canary, or a new champion) with a *baseline*
(the champion, or `previous`) and says one of:

- ``holding``: within its limit;
- ``tripped``: clearly beyond it (the rollout aborts, or the champion is rolled back);
- ``unclear``: beyond the limit on the point estimate, but not clearly yet (keep going:
  more traffic decides);
- ``waiting``: not enough data to judge.

The model-error rate trips when the one-sided 95% lower bound of the rate difference
(Agresti-Caffo) is above the limit, so a candidate that raises on a fifth of its requests
is stopped after a few dozen of them, while one unlucky error among a handful of
requests is not. The p99 latency ratio and the prediction PSI are judged once each side
has enough answers for a p99 (or a histogram) to mean something.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

HOLDING, TRIPPED, UNCLEAR, WAITING = "holding", "tripped", "unclear", "waiting"
Z95 = 1.6448536269514722  # one-sided 95%
LATENCY_SAMPLES = 100  # answers per side before a p99 is judged (fewer if min_requests is)
PSI_ROWS = 100  # predicted rows per side before their distributions are compared
PSI_BINS = 10


@dataclass
class Line:
    """One guardrail's verdict, with the line a person reads."""

    name: str  # model_error_rate | latency_p99_ratio | prediction_psi | feedback
    state: str
    value: float | None
    limit: float
    detail: str

    def public(self) -> dict[str, Any]:
        doc = asdict(self)
        if doc["value"] is not None and not math.isfinite(doc["value"]):
            doc["value"] = None
        return doc


@dataclass
class Traffic:
    """One model's answers in a window of the request log."""

    label: str  # "canary version 3", "champion version 2", …
    requests: int  # every answer, whatever its outcome
    scored: int  # answers the model was asked for: ok + model_error
    model_errors: int
    client_errors: int
    ok_latency_ms: np.ndarray

    def public(self) -> dict[str, Any]:
        import numpy as np

        lat = self.ok_latency_ms
        return {"requests": self.requests, "scored": self.scored,
                "model_errors": self.model_errors, "client_errors": self.client_errors,
                "p99_latency_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else None}


def traffic(frame: pd.DataFrame, version: str | None, role: str, label: str) -> Traffic:
    """The answers of `version` in `role` (canary or champion) in a request-log window."""
    import numpy as np

    if version is None or frame.empty:
        mine = frame.iloc[0:0]
    else:
        mine = frame[(frame["model_version"] == str(version)) & (frame["role"] == role)]
    outcome = mine["outcome"]
    ok = outcome == "ok"
    errors = int((outcome == "model_error").sum())
    return Traffic(label, len(mine), int(ok.sum()) + errors, errors,
                   int((outcome == "client_error").sum()),
                   mine.loc[ok, "latency_ms"].to_numpy(dtype=np.float64))


def model_error_rate(new: Traffic, base: Traffic, limit: float) -> Line:
    """Candidate's model-error rate minus the baseline's (absolute), against `limit`."""
    name = "model_error_rate"
    if new.scored == 0 or base.scored == 0:
        empty = new.label if new.scored == 0 else base.label
        return Line(name, WAITING, None, limit, f"model-error rate: no scored requests of the "
                                                f"{empty} yet")
    p1, p0 = new.model_errors / new.scored, base.model_errors / base.scored
    diff = p1 - p0
    a1 = (new.model_errors + 1) / (new.scored + 2)
    a0 = (base.model_errors + 1) / (base.scored + 2)
    se = math.sqrt(a1 * (1 - a1) / (new.scored + 2) + a0 * (1 - a0) / (base.scored + 2))
    lower = (a1 - a0) - Z95 * se
    text = (f"model-error rate: {new.label} {p1:.1%} ({new.model_errors} of {new.scored}) vs "
            f"{base.label} {p0:.1%} ({base.model_errors} of {base.scored}): "
            f"{100 * diff:+.1f} points")
    if lower > limit:
        return Line(name, TRIPPED, diff, limit, f"{text}, clearly above the +{100 * limit:.1f} "
                                                f"allowed (95% lower bound {100 * lower:+.1f})")
    if diff <= limit:
        return Line(name, HOLDING, diff, limit, f"{text} <= +{100 * limit:.1f} allowed")
    return Line(name, UNCLEAR, diff, limit, f"{text} > +{100 * limit:.1f} allowed, not clearly "
                                            "yet: more requests decide")


def latency_p99_ratio(new: Traffic, base: Traffic, limit: float, min_requests: int) -> Line:
    """Candidate's p99 latency over the baseline's, on answered (ok) requests."""
    import numpy as np

    name = "latency_p99_ratio"
    needed = max(1, min(LATENCY_SAMPLES, min_requests))
    a, b = len(new.ok_latency_ms), len(base.ok_latency_ms)
    if a < needed or b < needed:
        return Line(name, WAITING, None, limit, f"p99 latency: waiting for {needed} answered "
                                                f"requests of each ({new.label} {a}, "
                                                f"{base.label} {b})")
    p_new = float(np.percentile(new.ok_latency_ms, 99))
    p_base = float(np.percentile(base.ok_latency_ms, 99))
    ratio = p_new / p_base if p_base > 0 else math.inf
    text = (f"p99 latency: {new.label} {p_new:.1f} ms vs {base.label} {p_base:.1f} ms: "
            f"ratio {ratio:.2f}")
    if ratio > limit:
        return Line(name, TRIPPED, ratio, limit, f"{text} > {limit:g} allowed")
    return Line(name, HOLDING, ratio, limit, f"{text} <= {limit:g} allowed")


def prediction_psi(new: np.ndarray, base: np.ndarray, limit: float, new_label: str,
                   base_label: str) -> Line:
    """PSI of the candidate's predictions against the baseline's (baseline's deciles)."""

    name = "prediction_psi"
    if len(new) < PSI_ROWS or len(base) < PSI_ROWS:
        return Line(name, WAITING, None, limit, f"prediction PSI: waiting for {PSI_ROWS} "
                                                f"predicted rows of each ({new_label} "
                                                f"{len(new)}, {base_label} {len(base)})")
    value = psi(base, new)
    text = (f"prediction PSI {new_label} vs {base_label}: {value:.3f} "
            f"({len(new)} and {len(base)} rows)")
    if value > limit:
        return Line(name, TRIPPED, value, limit, f"{text} > {limit:g} allowed")
    return Line(name, HOLDING, value, limit, f"{text} <= {limit:g} allowed")


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of `actual` against `expected`, on expected's quantiles."""
    import numpy as np

    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    eps = 1e-4
    p = np.maximum(e / e.sum(), eps)
    q = np.maximum(a / a.sum(), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def numeric_predictions(frame: pd.DataFrame, version: str | None) -> np.ndarray:
    """One version's numeric predictions from a row-log window (empty if not numeric)."""
    import numpy as np
    import pandas as pd

    if version is None or frame.empty:
        return np.empty(0)
    values = pd.to_numeric(frame.loc[frame["model_version"] == str(version), "prediction"],
                           errors="coerce")
    return values.dropna().to_numpy(dtype=np.float64)
