"""One retrain cycle: data -> train -> evaluate -> gate -> promote, as a decision record.

Two ways a challenger arrives: `run_cycle` trains one now on the latest data, and
`judge_version` takes a version someone registered (the article's third trigger). From
there both take the one path, `decide`: score on the clean holdout -> judge -> promote
under the lock, re-judging against the champion of that moment -> record.

Everything that can be the user's mistake (config, data, the training script, a champion
the new data cannot score) is checked before the first write, so a bad input leaves the
registry as it was.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrainer import data as data_mod
from retrainer import (
    decision,
    evaluation,
    gate,
    notify,
    progress,
    reference,
    registry,
    spark_training,
    stamp,
    training,
)
from retrainer import metrics as mx
from retrainer.errors import UserError
from retrainer.notify.message import metric_summary
from retrainer.rollout import start as rollout_start

if TYPE_CHECKING:
    import numpy as np
    from mlflow import MlflowClient

    from retrainer.config import Config
    from retrainer.data import Dataset
    from retrainer.evaluation import Champion, Scores
    from retrainer.training import TrainedModel

log = logging.getLogger("retrainer")

#: The decision when `promote.approval: required` holds a gate-passing challenger back.
AWAITING_APPROVAL = "awaiting_approval"


def run_cycle(cfg: Config, data: str | None = None, trigger: str = "manual",
              reason: str | None = None, client: MlflowClient | None = None) -> dict[str, Any]:
    """Run one cycle and return its decision record (also logged as decision.json)."""
    import numpy as np

    client = client or registry.connect(cfg)
    registry.repair(client, cfg)

    progress.step("loading data")
    # An entrypoint that takes a Spark DataFrame trains in Spark (spark_training).
    spark_fit = spark_training.spark_entrypoint(cfg) if data is None else None
    if spark_fit is not None:
        prepared = spark_training.prepare(cfg)
        rows, train_rows, holdout = prepared.rows, prepared.train, prepared.holdout
    else:
        rows = data_mod.load(cfg, override=data)
        train_rows, holdout = data_mod.split(rows, cfg.split)
    evaluation.check_slices(cfg, rows)  # slice columns exist: say so before any write
    champion = load_champion(cfg, client)
    if champion is not None:
        evaluation.champion_inputs(champion, holdout)  # fails now, before anything is written

    cycle_id = new_decision_id()
    log.info("cycle %s: training on %d rows, holdout %d rows", cycle_id, len(train_rows),
             len(holdout))
    progress.step(f"training on {len(train_rows):,} rows")
    if spark_fit is not None:
        trained = spark_training.fit_and_log(cfg, prepared, spark_fit, cycle_id=cycle_id,
                                             trigger=trigger, reason=reason)
        # The hash split kept every training row out of this holdout: nothing to exclude.
        fps = np.zeros(0, dtype="uint64")
    else:
        trained = training.fit_and_log(cfg, train_rows, holdout, cycle_id=cycle_id,
                                       trigger=trigger, reason=reason)
        fps = data_mod.fingerprints(train_rows)
    candidate = Candidate(trained, fingerprints=fps, train_rows=train_rows)
    return decide(cfg, client, candidate, champion, rows, holdout, decision_id=cycle_id,
                  trigger=trigger, reason=reason, kind=None)


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
    pending = registry.approval_state(mv) == registry.APPROVAL_PENDING
    if pending and not force:
        raise UserError(f"version {version} of {cfg.model!r} is awaiting approval: "
                        f"`retrainer approve {version} --reason …` or `retrainer reject "
                        f"{version} --reason …` (or `promote {version} --force --reason …`)")
    rows = data_mod.load(cfg, override=data)
    evaluation.check_slices(cfg, rows)  # slice columns exist: say so before any write
    _, holdout = data_mod.split(rows, cfg.split)
    champion = load_champion(cfg, client)
    if champion is not None and champion.version == version:
        raise UserError(f"version {version} is already the champion of {cfg.model!r}")
    candidate = registered_candidate(cfg, client, version, mv, holdout)
    if champion is not None:
        evaluation.champion_inputs(champion, holdout)
    # How the history names this move: by hand, forced, or found by the watcher.
    kind = ("forced_promotion" if force else
            "manual_promotion" if trigger in ("manual", "manual_promotion") else
            f"{trigger}_promotion")
    record = decide(cfg, client, candidate, champion, rows, holdout,
                    decision_id=new_decision_id(), trigger=trigger, reason=reason, kind=kind,
                    force=force)
    if pending and record.get("move"):  # forced past its pending approval: say so on it
        registry.settle(client, cfg, version, "forced", reason)
    return record


# --------------------------------------------------------------------------- the one path

@dataclass
class Candidate:
    """A challenger to judge: trained by this cycle, or a version registered earlier."""

    model: TrainedModel
    fingerprints: np.ndarray | None  # the rows it trained on, when known
    train_rows: Dataset | None = None  # set when this cycle trained it
    version: str | None = None  # set once registered
    inputs: Any = None  # its view of the holdout, when its signature names columns
    # The registered version as loaded (its run's split, registration time,
    # dataset inputs): what is knowable about rows it trained on when it has no fingerprints.
    registered: Champion | None = None

    @property
    def trained_now(self) -> bool:
        return self.train_rows is not None


@dataclass
class Judgement:
    champion: Champion | None
    scores: Scores
    verdict: gate.Verdict


def decide(cfg: Config, client: MlflowClient, candidate: Candidate, champion: Champion | None,
           rows: Dataset, holdout: Dataset, *, decision_id: str, trigger: str,
           reason: str | None, kind: str | None, force: bool = False) -> dict[str, Any]:
    """Score -> judge -> promote under the lock with a re-check -> record.

    `kind` names the move in the history for a registered candidate (manual, forced, or
    the watcher's promotion); a cycle's move is named by its verdict.
    """
    judged = judge(cfg, candidate, champion, holdout, force=force, reason=reason)
    return promote_and_record(cfg, client, candidate, judged, rows, holdout,
                              decision_id=decision_id, trigger=trigger, reason=reason,
                              kind=kind, force=force)


def promote_and_record(cfg: Config, client: MlflowClient, candidate: Candidate,
                       judged: Judgement, rows: Dataset, holdout: Dataset, *, decision_id: str,
                       trigger: str, reason: str | None, kind: str | None,
                       force: bool = False) -> dict[str, Any]:
    """Act on a judgement: register the candidate, promote it if it passed, record why.

    The promotion takes the lock and compares the champion of that moment with the one
    judged against; if another process promoted meanwhile, the candidate is judged again
    against the new champion and that verdict decides.
    """
    version = candidate.version or _register(cfg, client, candidate, decision_id, trigger)
    if not candidate.trained_now:
        # Registered without a profile (plain MLflow): build one from the rows judged now,
        # so drift can be measured against it once it is champion.
        reference.attach_if_missing(cfg, client, version, candidate.model, candidate.inputs,
                                    holdout, decision_id=decision_id)
    move: registry.Move | None = None
    canary: dict[str, Any] | None = None
    would_be = judged.verdict.decision
    if judged.verdict.promotes and approval_required(cfg, force):
        # A person decides: `retrainer approve` acts on it later through the same path.
        judged.verdict = gate.Verdict(AWAITING_APPROVAL, True,
                                      f"awaiting approval: {judged.verdict.reason}",
                                      judged.verdict.checks)
    elif judged.verdict.promotes and rollout_start.wanted(cfg, judged.champion is not None,
                                                          force):
        # rollout.mode: canary: it answers a share of requests before it is champion.
        judged, canary = _start_canary(cfg, client, candidate, judged, holdout, version,
                                       decision_id=decision_id, trigger=trigger, reason=reason)
    elif judged.verdict.promotes:
        progress.step("promoting under the lock")
        judged, move = _promote(cfg, client, candidate, judged, holdout, version, kind=kind,
                                decision_id=decision_id, trigger=trigger, reason=reason,
                                force=force)
    forced = force and judged.verdict.promotes
    registry.tag_version(client, cfg.model, version, {
        "decision": judged.verdict.decision,
        **({} if candidate.trained_now else {"trigger": trigger}),
        **({"forced": "true"} if forced else {})})

    record = decision.build(
        cfg, trigger=trigger, trigger_reason=reason, decision_id=decision_id,
        verdict=judged.verdict, scores=judged.scores, champion=judged.champion,
        challenger=candidate.model, version=version, rows=rows,
        train_rows=candidate.train_rows, holdout=holdout, move=move)
    if judged.verdict.decision == AWAITING_APPROVAL:
        record["approval"] = _request_approval(cfg, client, version, judged, record, would_be)
    record["report"] = _report(client, cfg, record, judged, candidate)
    if canary is not None:
        record["rollout"] = canary
    if candidate.trained_now:
        decision.log_on_run(client, candidate.model.run_id, record)
    else:
        record["kind"] = kind
        record["forced"] = bool(force)
        decision.log_as_event(client, cfg, record)
    notify.send(cfg, record["decision"], record, client=client)  # recorded: now tell people
    return record


def _promote(cfg: Config, client: MlflowClient, candidate: Candidate, judged: Judgement,
             holdout: Dataset, version: str, *, kind: str | None, decision_id: str,
             trigger: str, reason: str | None, force: bool
             ) -> tuple[Judgement, registry.Move | None]:
    """The champion move, under the lock; re-judged against a champion that changed since."""
    judged_against = judged.champion.version if judged.champion else None

    def recheck(current: str | None) -> bool:
        nonlocal judged
        now = load_champion(cfg, client, current) if current else None
        judged = judge(cfg, candidate, now, holdout, force=force, reason=reason)
        return judged.verdict.promotes

    move, why = registry.promote(
        client, cfg, version, judged_against, recheck,
        kind=kind or judged.verdict.decision, decision_id=decision_id, reason=reason,
        trigger=trigger)
    if move is None:
        judged.verdict = gate.Verdict(gate.KEPT, False, why or "not promoted",
                                      judged.verdict.checks)
    return judged, move


def _report(client: MlflowClient, cfg: Config, record: dict[str, Any], judged: Judgement,
            candidate: Candidate) -> str | None:
    """The page of this judgement on the challenger's run (before the record: it says where)."""
    from retrainer.report.publish import publish

    return publish(client, cfg, record, diagnostics=judged.scores.diagnostics,
                   champion=judged.champion, train_rows=candidate.train_rows)


def approval_required(cfg: Config, force: bool) -> bool:
    """`promote.approval: required` holds every passing challenger; `--force` is the
    recorded way around it."""
    return cfg.promote.approval == "required" and not force


def _request_approval(cfg: Config, client: MlflowClient, version: str, judged: Judgement,
                      record: dict[str, Any], would_be: str) -> dict[str, Any]:
    against = judged.champion.version if judged.champion else None
    summary = metric_summary(record)
    at = registry.request_approval(client, cfg, version, decision_id=record["cycle_id"],
                                   judged_against=against, would_be=would_be, summary=summary)
    return {"status": registry.APPROVAL_PENDING, "requested_at": at, "would_be": would_be,
            "judged_against": against}


def _start_canary(cfg: Config, client: MlflowClient, candidate: Candidate, judged: Judgement,
                  holdout: Dataset, version: str, *, decision_id: str, trigger: str,
                  reason: str | None) -> tuple[Judgement, dict[str, Any] | None]:
    """The canary instead of the champion move: re-checked against a champion that changed,
    and against a running canary, which it replaces only if it beats it (same gate)."""
    def recheck(current: str | None) -> bool:
        nonlocal judged
        judged = judge(cfg, candidate, load_champion(cfg, client, current) if current else None,
                       holdout, reason=reason)
        return judged.verdict.promotes

    def beats_canary(canary_version: str) -> tuple[bool, str]:
        against = judge(cfg, candidate, load_champion(cfg, client, canary_version), holdout,
                        reason=reason)
        return against.verdict.promotes, against.verdict.reason

    assert judged.champion is not None
    started = rollout_start.start_canary(
        cfg, client, version, judged_against=judged.champion.version,
        gate_reason=judged.verdict.reason, recheck=recheck, beats_canary=beats_canary,
        decision_id=decision_id, reason=reason, trigger=trigger)
    judged.verdict = gate.Verdict(started.decision, started.started, started.reason,
                                  judged.verdict.checks)
    return judged, started.canary


def passes_gate(cfg: Config, client: MlflowClient, version: str,
                against: str | None) -> tuple[bool, str]:
    """Judge registered `version` against version `against` with the gate on the current
    holdout, recording nothing: the re-check of a canary whose champion changed."""
    rows = data_mod.load(cfg)
    _, holdout = data_mod.split(rows, cfg.split)
    mv = registry.get_version(client, cfg.model, version)
    candidate = registered_candidate(cfg, client, version, mv, holdout)
    judged = judge(cfg, candidate, load_champion(cfg, client, against) if against else None,
                   holdout)
    return judged.verdict.promotes, judged.verdict.reason


def judge(cfg: Config, candidate: Candidate, champion: Champion | None, holdout: Dataset, *,
          force: bool = False, reason: str | None = None) -> Judgement:
    """Both models on the clean holdout, then the gate; `force` overrules a rejection."""
    scores = evaluation.score_both(cfg, champion, candidate.model, holdout,
                                   candidate.fingerprints, candidate.inputs,
                                   candidate=candidate.registered)
    if champion is not None:
        scores.schema = evaluation.schema_diff(champion.signature, candidate.model.signature)
    verdict = gate.judge(scores, cfg.gate, cfg.metrics)
    if force and not verdict.promotes:
        verdict = gate.Verdict(gate.FIRST_CHAMPION if champion is None else gate.PROMOTED,
                               True, f"forced by {stamp.actor()}: {reason} (gate said: "
                               f"{verdict.decision}: {verdict.reason})", verdict.checks)
    return Judgement(champion, scores, verdict)


def _register(cfg: Config, client: MlflowClient, candidate: Candidate, decision_id: str,
              trigger: str) -> str:
    """A challenger this cycle trained becomes a version (and `challenger`) once judged."""
    trained = candidate.model
    candidate.version = registry.register(
        client, cfg, trained.model_uri, trained.run_id, trained.model_id,
        {"cycle_id": decision_id, "trigger": trigger, "decision": "pending"})
    if cfg.gate.mode != "dry_run":
        registry.set_challenger(client, cfg.model, candidate.version)
    return candidate.version


# --------------------------------------------------------------------------- contenders

def new_decision_id() -> str:
    return uuid.uuid4().hex[:12]


def load_champion(cfg: Config, client: MlflowClient, version: str | None = None) -> Champion | None:
    """The champion (or a named version) as a contender; None when there is none yet."""
    if version is None:
        found = registry.current_champion(client, cfg.model, cfg.promote.alias)
        if found is None:
            return None
        mv, source = found
        return evaluation.load_version(cfg, client, mv.version, source)
    return evaluation.load_version(cfg, client, version)


def registered_candidate(cfg: Config, client: MlflowClient, version: str, mv: Any,
                         holdout: Dataset) -> Candidate:
    """A version registered earlier, loaded as a challenger (its fingerprints if it has any)."""
    loaded = evaluation.load_version(cfg, client, version, source="registered")
    inputs = evaluation.champion_inputs(loaded, holdout)
    info = training.load_training_info(client, mv.run_id) if mv.run_id else {}
    task = info.get("task") or training.task_of(cfg, loaded.model, holdout.y)
    problem = mx.check_task(cfg.metrics, task)
    if problem:
        raise UserError(problem)
    model = training.TrainedModel(
        model=loaded.model, task=task, run_id=mv.run_id or "", model_uri=mv.source,
        model_id=getattr(mv, "model_id", None), metrics_as_logged=loaded.metrics_as_logged,
        fit_seconds=0.0, signature=loaded.signature, labels=info.get("labels"))
    return Candidate(model, fingerprints=loaded.train_fingerprints, version=version,
                     inputs=inputs, registered=loaded)
