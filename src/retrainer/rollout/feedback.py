"""The feedback guardrail: both models scored offline on labelled rows, with an interval.

Labelled rows (`rollout.guardrails.feedback.data`, any data source form, with the target
column) that arrived during the canary (or since the promotion) are scored by both
versions, so the comparison is paired on the same rows whichever model answered them
live. The primary metric's difference gets a paired bootstrap interval at `confidence`:
the candidate *trips* when even the favourable end of the interval is worse than the
baseline by more than `max_degradation` (relative), *holds* when the point estimate is
within it, and is *unclear* in between.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError
from retrainer.rollout.guardrails import HOLDING, TRIPPED, UNCLEAR, WAITING, Line

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config, FeedbackGuardrail
    from retrainer.evaluation import Champion

_LOADED: OrderedDict[tuple[str, str, str], Champion] = OrderedDict()


def load(cfg: Config, client: MlflowClient, version: str) -> Champion:
    """A registered version, loaded once per process (versions never change)."""
    from retrainer import evaluation

    key = (cfg.tracking_uri or "", cfg.model, str(version))
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    loaded = evaluation.load_version(cfg, client, version)
    _LOADED[key] = loaded
    while len(_LOADED) > 4:
        _LOADED.popitem(last=False)
    return loaded


def feedback_line(cfg: Config, client: MlflowClient, spec: FeedbackGuardrail,
                  new_version: str, base_version: str, since: datetime | None,
                  new_label: str, base_label: str) -> Line:
    """The primary metric of `new_version` against `base_version` on the labelled rows."""
    import numpy as np
    import pandas as pd

    from retrainer import evaluation, training
    from retrainer import metrics as mx
    from retrainer.data import read_source, validate

    metric, name = cfg.primary_metric, "feedback"
    frame = read_source(spec.data, cfg.base_dir, spec.query, cfg)
    where = f"labelled rows of {spec.data}"
    data_cfg = cfg.data
    if spec.time_column:
        if spec.time_column not in frame.columns:
            raise UserError(f"rollout.guardrails.feedback.time_column {spec.time_column!r} is "
                            f"not a column of {spec.data}")
        if since is not None:
            ts = pd.to_datetime(frame[spec.time_column], utc=True)
            frame = frame.loc[ts >= pd.Timestamp(since)].reset_index(drop=True)
            where = f"{where} since {since.isoformat(timespec='seconds')}"
        data_cfg = cfg.data.model_copy(update={"drop": [*cfg.data.drop, spec.time_column]})
    if len(frame) < spec.min_rows:
        return Line(name, WAITING, None, spec.max_degradation,
                    f"feedback: waiting for {spec.min_rows} {where} ({len(frame)} so far)")
    rows = validate(frame, data_cfg, spec.data, min_rows=1)
    new, base = load(cfg, client, new_version), load(cfg, client, base_version)
    info = training.load_training_info(client, new.run_id) if new.run_id else {}
    task = info.get("task") or training.task_of(cfg, new.model, rows.y)
    labels = np.asarray(info["labels"]) if info.get("labels") is not None else None
    y = rows.y.to_numpy()
    pn, prn = training.predict(new.model, evaluation.champion_inputs(new, rows), task)
    pb, prb = training.predict(base.model, evaluation.champion_inputs(base, rows), task)
    delta, lo, hi = mx.bootstrap_difference(
        metric, y, pb, pn, prb, prn, labels, resamples=cfg.gate.bootstrap,
        confidence=spec.confidence, seed=cfg.split.seed)
    base_value = mx.compute(metric, y, pb, prb, labels)
    sign = -1.0 if mx.GREATER_IS_BETTER[metric] else 1.0  # worse-by = sign * delta
    scale = abs(base_value) or 1.0
    point = sign * delta / scale
    ends = [sign * v / scale for v in (lo, hi) if np.isfinite(v)]
    best = min(ends) if ends else point
    ends = ends or [point]
    text = (f"feedback {metric} on {len(rows)} {where}: {new_label} "
            f"{_num(base_value + delta)} vs {base_label} {_num(base_value)}: "
            f"{_pct(point)} ({round(spec.confidence * 100):d}% interval {_pct(min(ends))} "
            f"to {_pct(max(ends))})")
    limit = spec.max_degradation
    if best > limit:
        return Line(name, TRIPPED, point, limit,
                    f"{text}: clearly more than {limit:.0%} worse")
    if point <= limit:
        return Line(name, HOLDING, point, limit, f"{text}: within {limit:.0%}")
    return Line(name, UNCLEAR, point, limit,
                f"{text}: more than {limit:.0%} worse, not clearly yet")


def _num(value: Any) -> str:
    return f"{value:.4g}"


def _pct(worse: float) -> str:
    return f"{abs(worse):.1%} {'worse' if worse > 0 else 'better'}"
