"""One retrain cycle: data -> train -> evaluate -> gate -> promote, as a decision record.

Everything that can be the user's mistake (config, data, the training script, a champion
the new data cannot score) is checked before the first write, so a bad input leaves the
registry as it was.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

from retrainer import data as data_mod
from retrainer import evaluation, gate, registry, stamp, training
from retrainer import metrics as mx
from retrainer.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config
    from retrainer.data import Dataset
    from retrainer.evaluation import Champion, Scores

log = logging.getLogger("retrainer")


def run_cycle(cfg: Config, data: str | None = None, trigger: str = "manual",
              reason: str | None = None, client: MlflowClient | None = None) -> dict[str, Any]:
    """Run one cycle and return its decision record (also logged as decision.json)."""
    client = client or registry.connect(cfg)
    registry.repair(client, cfg)

    rows = data_mod.load(cfg, override=data)
    evaluation.check_slices(cfg, rows)  # issue 15: slice columns exist, before any write
    train_rows, holdout = data_mod.split(rows, cfg.split)
    champion = load_champion(cfg, client)
    if champion is not None:
        evaluation.champion_inputs(champion, holdout)  # fails now, before anything is written

    cycle_id = uuid.uuid4().hex[:12]
    log.info("cycle %s: training on %d rows, holdout %d rows", cycle_id, len(train_rows),
             len(holdout))
    challenger = training.fit_and_log(cfg, train_rows, holdout, cycle_id=cycle_id,
                                      trigger=trigger, reason=reason)
    scores = _score(cfg, client, champion, challenger, holdout, train_rows)
    verdict = gate.judge(scores, cfg.gate, cfg.metrics)

    version = registry.register(client, cfg, challenger.model_uri, challenger.run_id,
                                challenger.model_id,
                                {"cycle_id": cycle_id, "trigger": trigger,
                                 "decision": "pending"})
    if cfg.gate.mode != "dry_run":
        registry.set_challenger(client, cfg.model, version)

    judged = {"champion": champion, "scores": scores, "verdict": verdict}
    move: registry.Move | None = None
    if verdict.promotes:
        def recheck(current: str | None) -> bool:
            # Another cycle promoted while this one was judging: judge again, now.
            now = load_champion(cfg, client, current) if current else None
            judged["champion"] = now
            judged["scores"] = _score(cfg, client, now, challenger, holdout, train_rows)
            judged["verdict"] = gate.judge(judged["scores"], cfg.gate, cfg.metrics)
            return judged["verdict"].promotes

        move, why = registry.promote(client, cfg, version,
                                     champion.version if champion else None, recheck,
                                     kind=verdict.decision, decision_id=cycle_id,
                                     reason=reason, trigger=trigger)
        if move is None:
            judged["verdict"] = gate.Verdict(gate.KEPT, False, why or "not promoted",
                                             judged["verdict"].checks)
    verdict = judged["verdict"]
    registry.tag_version(client, cfg.model, version, {"decision": verdict.decision})

    record = decision_record(cfg, trigger=trigger, trigger_reason=reason, cycle_id=cycle_id,
                             verdict=verdict, scores=judged["scores"],
                             champion=judged["champion"], challenger=challenger,
                             version=version, rows=rows, train_rows=train_rows,
                             holdout=holdout)
    record["move"] = _move_dict(move)
    _log_record(client, challenger.run_id, record)
    return record


def judge_version(cfg: Config, version: str, data: str | None = None,
                  trigger: str = "manual_promotion", reason: str | None = None,
                  force: bool = False, client: MlflowClient | None = None) -> dict[str, Any]:
    """Judge an already-registered version with the same gate, on the current holdout.

    The article's third trigger: a data scientist registered a better model. Nothing is
    retrained. With `force` the gate's verdict is recorded but does not decide (a reason
    is required and recorded).
    """
    if force and not (reason and reason.strip()):
        raise UserError("--force needs --reason: say why the gate is skipped")
    version = registry.parse_version_ref(str(version), cfg.model)
    client = client or registry.connect(cfg)
    if not registry.model_exists(client, cfg.model):
        raise UserError(f"model {cfg.model!r} is not registered: run `retrainer run` first")
    registry.repair(client, cfg)
    mv = registry.get_version(client, cfg.model, version)
    registry.check_version_of_model(client, cfg, mv)
    rows = data_mod.load(cfg, override=data)
    evaluation.check_slices(cfg, rows)  # issue 15: slice columns exist, before any write
    _, holdout = data_mod.split(rows, cfg.split)
    champion = load_champion(cfg, client)
    if champion is not None and champion.version == version:
        raise UserError(f"version {version} is already the champion of {cfg.model!r}")
    candidate = evaluation.load_version(cfg, client, version, source="registered")
    cand_inputs = evaluation.champion_inputs(candidate, holdout)
    if champion is not None:
        evaluation.champion_inputs(champion, holdout)
    info = training.load_training_info(client, mv.run_id) if mv.run_id else {}
    task = info.get("task") or training.task_of(cfg, candidate.model, holdout.y)
    challenger = training.TrainedModel(
        model=candidate.model, task=task, run_id=mv.run_id or "", model_uri=mv.source,
        model_id=getattr(mv, "model_id", None), metrics_as_logged=candidate.metrics_as_logged,
        fit_seconds=0.0, signature=candidate.signature, labels=info.get("labels"))
    problem = mx.check_task(cfg.metrics, task)
    if problem:
        raise UserError(problem)
    decision_id = uuid.uuid4().hex[:12]
    # How the history names this move: by hand, forced, or found by the watcher.
    kind = ("forced_promotion" if force else
            "manual_promotion" if trigger in ("manual", "manual_promotion") else
            f"{trigger}_promotion")

    scores = _score(cfg, client, champion, challenger, holdout, None,
                    candidate.train_fingerprints, cand_inputs, candidate)  # issue 15: candidate
    verdict = gate.judge(scores, cfg.gate, cfg.metrics)
    if force and not verdict.promotes:
        verdict = gate.Verdict(gate.FIRST_CHAMPION if champion is None else gate.PROMOTED,
                               True, f"forced by {stamp.actor()}: {reason} (gate said: "
                               f"{verdict.decision}: {verdict.reason})", verdict.checks)
    judged = {"champion": champion, "scores": scores, "verdict": verdict}
    move: registry.Move | None = None
    if verdict.promotes:
        def recheck(current: str | None) -> bool:
            if force:
                return True
            now = load_champion(cfg, client, current) if current else None
            judged["champion"] = now
            judged["scores"] = _score(cfg, client, now, challenger, holdout, None,
                                      candidate.train_fingerprints, cand_inputs,
                                      candidate)  # issue 15: candidate
            judged["verdict"] = gate.judge(judged["scores"], cfg.gate, cfg.metrics)
            return judged["verdict"].promotes

        move, why = registry.promote(client, cfg, version,
                                     champion.version if champion else None, recheck,
                                     kind=kind,
                                     decision_id=decision_id, reason=reason, trigger=trigger)
        if move is None:
            judged["verdict"] = gate.Verdict(gate.KEPT, False, why or "not promoted",
                                             judged["verdict"].checks)
    verdict = judged["verdict"]
    registry.tag_version(client, cfg.model, version,
                         {"decision": verdict.decision, "trigger": trigger,
                          **({"forced": "true"} if force and verdict.promotes else {})})
    record = decision_record(cfg, trigger=trigger, trigger_reason=reason,
                             cycle_id=decision_id,
                             verdict=verdict, scores=judged["scores"],
                             champion=judged["champion"], challenger=challenger,
                             version=version, rows=rows, train_rows=None, holdout=holdout)
    record["kind"] = kind
    record["forced"] = bool(force)
    record["move"] = _move_dict(move)
    champion_version = record["champion"]["version"] if record["champion"] else None
    registry.record_event(client, cfg, record["kind"], {
        "record": record, "decision": record["decision"], "reason": record["reason"],
        "trigger": trigger}, record="decision", version=version,
        champion_before=champion_version,
        champion_after=move.champion if move else champion_version, decision_id=decision_id)
    return record


def _move_dict(move: registry.Move | None) -> dict[str, Any] | None:
    """The alias move a decision made: what became champion and what it displaced."""
    if move is None:
        return None
    return {"champion": move.champion, "previous": move.previous, "kind": move.kind,
            "at": move.at}


def load_champion(cfg: Config, client: MlflowClient, version: str | None = None) -> Champion | None:
    if version is None:
        found = registry.current_champion(client, cfg.model, cfg.promote.alias)
        if found is None:
            return None
        mv, source = found
        return evaluation.load_version(cfg, client, mv.version, source)
    return evaluation.load_version(cfg, client, version)


def _score(cfg: Config, client: MlflowClient, champion: Champion | None, challenger: Any,
           holdout: Dataset, train_rows: Dataset | None, challenger_fps: Any = None,
           challenger_inputs: Any = None, candidate: Champion | None = None) -> Scores:
    fps = data_mod.fingerprints(train_rows) if train_rows is not None else challenger_fps
    # issue 15: `candidate` (a registered version judged by `promote`) passed through, so a
    # fingerprint-less candidate's training rows are looked up and said.
    scores = evaluation.score_both(cfg, champion, challenger, holdout, fps, challenger_inputs,
                                   candidate=candidate)
    if champion is not None:
        scores.schema = evaluation.schema_diff(champion.signature,
                                               challenger.signature)
    return scores


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def decision_record(cfg: Config, *, trigger: str, trigger_reason: str | None, cycle_id: str,
                    verdict: gate.Verdict, scores: Scores, champion: Champion | None,
                    challenger: Any, version: str, rows: Dataset, train_rows: Dataset | None,
                    holdout: Dataset) -> dict[str, Any]:
    """The decision record of DESIGN.md: what was decided, on which rows, and why."""
    record: dict[str, Any] = {
        "model": cfg.model,
        "cycle_id": cycle_id,
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
                 "holdout_rows": len(holdout), "split": cfg.split.method},
        "task": challenger.task,
    }
    gate.extend_record(record, verdict, scores, cfg.gate)  # issue 15: policy, slices, notes
    return _clean(record)


def _log_record(client: MlflowClient, run_id: str, record: dict[str, Any]) -> None:
    from retrainer.report import to_markdown

    client.log_dict(run_id, record, "decision.json")
    client.log_text(run_id, to_markdown(record), "decision.md")
    champion = (record.get("champion") or {}).get("version")
    move = record.get("move") or {}
    # The decision tag last: history treats a cycle run without it as unfinished.
    registry.tag_run(client, run_id, registry.summary_tags(
        version=record["challenger"]["version"], champion_before=champion,
        champion_after=move.get("champion") or champion,
        reason=record.get("reason"), trigger=record.get("trigger"),
        decision_id=record.get("cycle_id"), who=record.get("actor"), record="decision"))
    client.set_tag(run_id, f"{registry.PREFIX}decision", record["decision"])
