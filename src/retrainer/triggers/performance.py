"""The performance check: the champion scores worse on labelled feedback than it did."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from retrainer.triggers.clock import iso
from retrainer.triggers.fire import Fire, fmt, frame_digest

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

log = logging.getLogger("retrainer")


def relative_degradation(metric: str, value: float, baseline: float) -> float:
    """How much worse `value` is than `baseline`, relative (0.1 = 10 % worse; <0 = better)."""
    from retrainer.metrics import GREATER_IS_BETTER

    worse_by = (baseline - value) if GREATER_IS_BETTER[metric] else (value - baseline)
    if baseline == 0:
        return math.inf if worse_by > 0 else 0.0
    return worse_by / abs(baseline)


def check_performance(client: MlflowClient, cfg: Config, state: dict[str, Any],
                      now: datetime) -> tuple[Fire | None, dict[str, Any]]:
    """Fire when the champion's primary metric on labelled feedback rows is worse than
    on its own holdout (what its run logged) by more than `max_degradation`, relative."""
    from retrainer import cycle, evaluation, training
    from retrainer.data import read_source, validate

    spec = cfg.triggers.performance
    assert spec is not None
    metric = cfg.primary_metric
    champion = cycle.load_champion(cfg, client)
    if champion is None:
        log.info("performance trigger: no champion yet")
        return None, dict(state)
    baseline = champion.metrics_as_logged.get(metric)
    if baseline is None:
        log.warning("performance trigger: the champion's run (version %s) logged no %s to "
                    "compare with: skipped", champion.version, metric)
        return None, {**state, "checked_at": iso(now), "champion": champion.version}
    frame = read_source(spec.data, cfg.base_dir, spec.query, cfg)
    rows = validate(frame, cfg.data, spec.data, min_rows=1)
    info = training.load_training_info(client, champion.run_id) if champion.run_id else {}
    task = info.get("task") or training.task_of(cfg, champion.model, rows.y)
    pred, proba = training.predict(champion.model, evaluation.champion_inputs(champion, rows),
                                   task)
    value = training.score([metric], rows.y, pred, proba, info.get("labels"))[metric]
    worse = relative_degradation(metric, value, baseline)
    digest = frame_digest(frame)
    new = {**state, "checked_at": iso(now), "champion": champion.version, "metric": metric,
           "value": value, "baseline": baseline, "degradation": round(worse, 6),
           "rows": len(rows), "digest": digest}
    if not worse > spec.max_degradation:
        new.pop("fired_digest", None)
        return None, new
    if state.get("fired_digest") == digest:
        log.info("performance trigger: these feedback rows (%s) already fired", digest)
        return None, new
    new["fired_digest"] = digest
    reason = (f"{metric} {fmt(value)} on {len(rows)} labelled feedback rows vs "
              f"{fmt(baseline)} on the champion's holdout (version {champion.version}): "
              f"{worse:.1%} worse > {spec.max_degradation:.0%} allowed")
    return Fire("performance", reason, key=f"performance:{digest}"), new
