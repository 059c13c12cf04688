"""The drift check: the current data drifted from the champion's training data."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from retrainer import registry
from retrainer.triggers.clock import iso
from retrainer.triggers.fire import Fire, fmt, frame_digest

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config
    from retrainer.drift.statistics import DriftReport

log = logging.getLogger("retrainer")

_STAT_NAMES = {"psi": "PSI", "chi2": "chi-square"}


def drift_reason(report: DriftReport, key_columns: list[str] | None = None,
                 limit: int = 5) -> str:
    """The report's verdict (rules fired), then e.g. 'PSI 0.31 on bmi > 0.12, PSI 0.2 on bp'."""
    drifted = [c for c in report.columns if c.drifted]

    def strength(c: Any) -> float:
        if c.value is not None and c.threshold:
            return float(c.value) / float(c.threshold)
        return float("inf")  # a missing or emptied column is the strongest finding

    parts = []
    for c in sorted(drifted, key=strength, reverse=True):
        if c.value is not None and c.threshold is not None and c.value > c.threshold:
            name = _STAT_NAMES.get(c.statistic or "", c.statistic or "statistic")
            parts.append(f"{name} {fmt(c.value)} on {c.column} > {fmt(c.threshold)}")
        else:
            parts.append(f"{c.column}: {c.note or ', '.join(c.reasons) or 'drifted'}")
    text = report.verdict  # which rules fired, with their numbers (drift.statistics)
    shown = ", ".join(parts[:limit])
    if len(parts) > limit:
        shown += f" and {len(parts) - limit} more"
    return f"{text}: {shown}" if shown else text


def check_drift(client: MlflowClient, cfg: Config, state: dict[str, Any],
                now: datetime) -> tuple[Fire | None, dict[str, Any]]:
    """Fire when the current data drifted from the champion's training data.

    Each drifted dataset fires once: a retrain already answered these rows, and firing
    again on the same rows (say the gate kept the champion) would retrain in a loop. New
    rows that still drift fire again, and so does drift that returns after it cleared.
    """
    from retrainer.drift.champion import champion_drift

    spec = cfg.triggers.drift
    assert spec is not None
    if registry.current_champion(client, cfg.model, cfg.promote.alias) is None:
        log.info("drift trigger: no champion yet, nothing to compare with")
        return None, dict(state)
    # `retrainer drift`'s own logic: the champion's profile against triggers.drift.data.
    result = champion_drift(cfg)
    report = result.report
    # On Spark the digest is computed there (`current` is then only a sample).
    digest = result.digest or frame_digest(result.current)
    new = {**state, "verdict": bool(report.dataset_drift), "checked_at": iso(now),
           "champion": result.version, "digest": digest,
           "drifted_columns": report.drifted_columns[:20],
           "share_drifted": round(float(report.share_drifted), 4)}
    if not report.dataset_drift:
        new.pop("fired_digest", None)
        return None, new
    if state.get("fired_digest") == digest:
        log.info("drift trigger: these rows (%s) already fired a retrain", digest)
        return None, new
    new["fired_digest"] = digest
    reason = drift_reason(report, cfg.drift.key_columns)
    return Fire("drift", f"{reason} (champion version {result.version}, "
                         f"{result.current_rows} rows of {spec.data})",
                key=f"drift:{digest}"), new
