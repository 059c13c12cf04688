"""What people decide about a model: approve or reject a pending challenger, roll back.

Each action is checked before the first write (a refusal is a `UserError`: one line,
exit 2, the registry as it was), goes through the registry's locked, journaled paths,
is recorded in the history with its actor, and then notified.

`approve` promotes through the same promotion as a cycle: under the lock, with the
re-check. If the champion changed since the gate passed the version, it is judged again
against the champion of this moment, on the current holdout, and promoted only if it
still passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from retrainer import notify, registry, stamp
from retrainer.errors import UserError, require_reason

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

log = logging.getLogger("retrainer")


def approve(cfg: Config, version: str, reason: str | None, data: str | None = None,
            client: MlflowClient | None = None) -> dict[str, Any]:
    """Promote a version awaiting approval; the `approved` event says what happened."""
    reason = _need_reason(reason, "approve")
    version, client = _open(cfg, version, client)
    pending = registry.require_pending(client, cfg, version, "approve")
    found = registry.current_champion(client, cfg.model, cfg.promote.alias)
    if found is not None and str(found[0].version) == version:
        raise UserError(f"version {version} is already the champion of {cfg.model!r}")

    from retrainer.cycle import new_decision_id

    decision_id = new_decision_id()
    rejudged: dict[str, Any] = {}

    def still_pending() -> None:  # under the lock: a `reject` may have won the race
        registry.require_pending(client, cfg, version, "approve")

    def recheck(current: str | None) -> bool:
        rejudged["record"] = rejudge(cfg, client, version, current, data, decision_id)
        return rejudged["record"]["decision"] in ("promoted", "first_champion")

    if cfg.rollout.mode == "canary" and found is not None:
        return start_canary_instead(cfg, client, version, pending, reason,
                                    recheck=recheck, decision_id=decision_id)
    move, why = registry.promote(
        client, cfg, version, pending.judged_against, recheck, kind="approved",
        decision_id=decision_id, reason=reason, trigger="approval", guard=still_pending,
        extra_tags=registry.approval_tags("approved", reason))
    if move is not None:
        outcome = "first_champion" if move.previous is None else "promoted"
        registry.tag_version(client, cfg.model, version, {"decision": outcome})
        before, after = move.previous, move.champion
    else:  # the re-check against a newer champion rejected it: the approval is stale
        outcome = "kept_champion"
        registry.settle(client, cfg, version, "stale", reason)
        registry.tag_version(client, cfg.model, version, {"decision": outcome})
        now = registry.current_champion(client, cfg.model, cfg.promote.alias)
        before = after = str(now[0].version) if now else None
    return _record_approved(cfg, client, version, pending, reason, outcome, before, after,
                            decision_id, outcome=why, recheck=rejudged.get("record"))


def reject(cfg: Config, version: str, reason: str | None,
           client: MlflowClient | None = None) -> dict[str, Any]:
    """Decline a version awaiting approval (recorded as `rejected`, then notified)."""
    reason = _need_reason(reason, "reject")
    version, client = _open(cfg, version, client)
    registry.require_pending(client, cfg, version, "reject")  # refuse before the lock
    doc = registry.reject_approval(client, cfg, version, reason)
    notify.send(cfg, "rejected", doc, client=client)
    return doc


def rollback(cfg: Config, reason: str | None, to: str | None = None,
             client: MlflowClient | None = None) -> dict[str, Any]:
    """Champion back to `previous` (or `to`), recorded by the registry, then notified."""
    client = client or registry.connect(cfg)
    move = registry.rollback(client, cfg, reason or "", to=to)
    doc = {"model": move.model, "event": "rollback", "decision": "rollback",
           "version": move.champion, "champion": move.champion, "previous": move.previous,
           "at": move.at, "reason": (reason or "").strip(), "actor": stamp.actor()}
    notify.send(cfg, "rollback", doc, client=client)
    return doc


# --------------------------------------------------------------------------- canary

def start_canary_instead(cfg: Config, client: MlflowClient, version: str,
                         pending: registry.Pending, reason: str, *,
                         recheck: Callable[[str | None], bool],
                         decision_id: str) -> dict[str, Any]:
    """With `rollout.mode: canary` an approval starts the version's canary (beside the
    champion) instead of making it champion; the rollout then completes or aborts it."""
    from retrainer.rollout.start import start_canary

    started = start_canary(cfg, client, version, judged_against=pending.judged_against,
                           gate_reason=pending.summary or "", recheck=recheck,
                           decision_id=decision_id, reason=reason, trigger="approval")
    registry.settle(client, cfg, version, "approved" if started.started else "stale", reason)
    registry.tag_version(client, cfg.model, version, {"decision": started.decision})
    champion = registry.current_champion(client, cfg.model, cfg.promote.alias)
    current = str(champion[0].version) if champion else None
    return _record_approved(cfg, client, version, pending, reason, started.decision, current,
                            current, decision_id, outcome=started.reason,
                            rollout=started.canary)


def _record_approved(cfg: Config, client: MlflowClient, version: str,
                     pending: registry.Pending, reason: str, decision: str,
                     before: str | None, after: str | None, decision_id: str,
                     **details: Any) -> dict[str, Any]:
    """The `approved` event in the history (whatever the approval led to), then notified."""
    at = stamp.now_iso()
    doc = {"model": cfg.model, "event": "approved", "decision": decision,
           "version": version, "reason": reason, "actor": stamp.actor(), "at": at,
           "champion_before": before, "champion_after": after,
           "requested_at": pending.requested_at,
           "waited_seconds": stamp.age_seconds(pending.requested_at, at),
           "judged_against": pending.judged_against,
           "approval_decision_id": pending.decision_id, "summary": pending.summary,
           **details, "run_id": pending.run_id, "decision_id": decision_id}
    registry.record_event(client, cfg, "approved", doc, version=version,
                          champion_before=before, champion_after=after,
                          decision_id=decision_id, trigger="approval")
    notify.send(cfg, "approved", doc, client=client)
    return doc


# --------------------------------------------------------------------------- helpers

def rejudge(cfg: Config, client: MlflowClient, version: str, champion: str | None,
            data: str | None, decision_id: str) -> dict[str, Any]:
    """The version judged again against `champion`, on the current holdout: a record."""
    from retrainer import cycle, decision
    from retrainer import data as data_mod

    rows = data_mod.load(cfg, override=data)
    _, holdout = data_mod.split(rows, cfg.split)
    mv = registry.get_version(client, cfg.model, version)
    candidate = cycle.registered_candidate(cfg, client, version, mv, holdout)
    now = cycle.load_champion(cfg, client, champion) if champion else None
    judged = cycle.judge(cfg, candidate, now, holdout)
    log.info("approval re-check of version %s against champion %s: %s", version, champion,
             judged.verdict.decision)
    return decision.build(
        cfg, trigger="approval", trigger_reason="the champion changed since the gate passed "
        "this version", decision_id=decision_id, verdict=judged.verdict, scores=judged.scores,
        champion=judged.champion, challenger=candidate.model, version=version, rows=rows,
        train_rows=None, holdout=holdout, move=None)


def _need_reason(reason: str | None, verb: str) -> str:
    return require_reason(reason, f"{verb} needs --reason: say why (it is recorded in the "
                                  "history)")


def _open(cfg: Config, version: str, client: MlflowClient | None) -> tuple[str, MlflowClient]:
    version = registry.parse_version_ref(str(version), cfg.model)
    client = client or registry.connect(cfg)
    if not registry.model_exists(client, cfg.model):
        raise UserError(f"model {cfg.model!r} is not registered: nothing awaits approval")
    registry.repair(client, cfg)
    return version, client
