"""The decision record of DESIGN.md: what was decided, on which rows, and why.

One record per judgement, whatever started it (a cycle, `promote`, the watcher). A cycle's
record is logged on the challenger's run as ``decision.json``; a judgement of a version
registered earlier is an event run in the history.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from retrainer import stamp
from retrainer.gate import extend_record
from retrainer.redact import redact_all

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config
    from retrainer.data import Dataset
    from retrainer.evaluation import Champion, Scores
    from retrainer.gate import Verdict
    from retrainer.registry import Move


def build(cfg: Config, *, trigger: str, trigger_reason: str | None, decision_id: str,
          verdict: Verdict, scores: Scores, champion: Champion | None, challenger: Any,
          version: str, rows: Dataset, train_rows: Dataset | None, holdout: Dataset,
          move: Move | None) -> dict[str, Any]:
    """The record, JSON-safe (NaN and infinities become null)."""
    record: dict[str, Any] = {
        "model": cfg.model,
        "cycle_id": decision_id,
        "at": stamp.now_iso(),
        "actor": stamp.actor(),
        "trigger": trigger,
        "trigger_reason": trigger_reason,
        "decision": verdict.decision,
        "reason": verdict.reason,
        "gate_mode": cfg.gate.mode,
        "primary_metric": cfg.primary_metric,
        "challenger": {"version": version, "run_id": challenger.run_id,
                       "metrics": scores.challenger,
                       "metrics_as_logged": challenger.metrics_as_logged},
        "champion": None if champion is None else {
            "version": champion.version, "run_id": champion.run_id,
            "metrics": scores.champion, "metrics_as_logged": champion.metrics_as_logged,
            "known_by": champion.source},
        "naive": scores.naive or None,
        "holdout": {"rows": scores.holdout_rows, "clean_rows": scores.clean_rows,
                    "excluded": scores.excluded, "notes": scores.notes},
        "differences": scores.differences,
        "checks": verdict.checks_dict(),
        "schema": scores.schema or {"compatible": True, "added": [], "removed": [],
                                    "changed": []},
        "data": {"source": rows.source, "rows": len(rows),
                 "train_rows": len(train_rows) if train_rows is not None else None,
                 "holdout_rows": len(holdout), "split": cfg.split.method,
                 # A uniform sample of a larger spark: source (data.sample), said as such.
                 "sample": getattr(rows, "sample_note", None), "engine": cfg.data.engine},
        "task": challenger.task,
        "importance": scores.importance or None,
        "move": None if move is None else {
            "champion": move.champion, "previous": move.previous, "kind": move.kind,
            "at": move.at},
    }
    # The policy, the decision line's notes, the per-slice table, training rows.
    extend_record(record, verdict, scores, cfg.gate)
    # A data source or trigger reason may quote a URL with ${ENV} credentials in it.
    return redact_all(clean(record))


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def log_on_run(client: MlflowClient, run_id: str, record: dict[str, Any]) -> None:
    """A cycle's record on its challenger's run: decision.json, decision.md, summary tags."""
    from retrainer import registry
    from retrainer.report import to_markdown

    client.log_dict(run_id, record, "decision.json")
    client.log_text(run_id, to_markdown(record), "decision.md")
    log_judged_metrics(client, run_id, record)
    champion = (record.get("champion") or {}).get("version")
    move = record.get("move") or {}
    # The decision tag last: history treats a cycle run without it as unfinished.
    registry.tag_run(client, run_id, registry.summary_tags(
        version=record["challenger"]["version"], champion_before=champion,
        champion_after=move.get("champion") or champion,
        reason=record.get("reason"), trigger=record.get("trigger"),
        decision_id=record.get("cycle_id"), who=record.get("actor"), record="decision"))
    client.set_tag(run_id, f"{registry.PREFIX}decision", record["decision"])


def log_as_event(client: MlflowClient, cfg: Config, record: dict[str, Any]) -> None:
    """The record of a judged, already-registered version: an event run in the history."""
    from retrainer import registry

    champion = (record.get("champion") or {}).get("version")
    move = record.get("move") or {}
    run_id = registry.record_event(client, cfg, record["kind"], {
        "record": record, "decision": record["decision"], "reason": record["reason"],
        "trigger": record["trigger"]}, record="decision", version=record["challenger"]["version"],
        champion_before=champion, champion_after=move.get("champion") or champion,
        decision_id=record["cycle_id"])
    log_judged_metrics(client, run_id, record)


def log_judged_metrics(client: MlflowClient, run_id: str, record: dict[str, Any]) -> None:
    """Both models' clean-holdout metrics as run metrics (`judged.challenger.rmse`, ...).

    The history reads them from one search, so the report's timeline needs no downloads.
    """
    import time

    from mlflow.entities import Metric

    from retrainer.history import JUDGED
    from retrainer.report.html import judged_metrics

    now = int(time.time() * 1000)
    metrics = [Metric(f"{JUDGED}{k}", v, now, 0) for k, v in judged_metrics(record).items()
               if math.isfinite(v)]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
