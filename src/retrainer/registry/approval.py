"""Pending approvals, kept on the version itself: request, read, settle (approve/reject).

With ``promote.approval: required`` a challenger that passed the gate is not promoted: it
gets the `challenger` alias and version tags

- ``retrainer.approval`` = ``pending`` (later ``approved``, ``rejected``, ``stale`` when
  the re-check at approval rejected it, or ``forced`` by `promote --force`),
- ``retrainer.approval_requested_at``, ``…_decision_id`` (the judgement that asked),
  ``…_judged_against`` (the champion it beat, absent for a first champion),
  ``…_would_be`` (``promoted`` or ``first_champion``) and ``…_summary`` (the primary
  metric line, for the people who decide),
- once settled: ``…_by``, ``…_at``, ``…_reason``.

The registry is the record: a pending approval survives restarts and is visible to every
process and machine, and `watch` sees the tags and leaves the version alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError
from retrainer.registry.names import CHALLENGER, PREFIX
from retrainer.registry.reads import _not_found, aliases, current_champion, get_version
from retrainer.registry.records import record_event
from retrainer.registry.writes import retry_conflicts, set_challenger, tag_version
from retrainer.stamp import actor, now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from retrainer.config import Config

APPROVAL = "approval"
PENDING = "pending"
_KEEP = 500  # characters of a reason kept in a version tag
_SETTLED = {
    "approved": "{by} approved it at {at}",
    "rejected": "{by} rejected it at {at}",
    "stale": "{by} approved it at {at}, but the re-check against the champion of that "
             "moment rejected it",
    "forced": "{by} promoted it with --force at {at}",
}


@dataclass
class Pending:
    """A version awaiting approval, as its tags describe it."""

    version: str
    requested_at: str | None
    decision_id: str | None
    judged_against: str | None
    would_be: str
    summary: str | None
    run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _tag(mv: ModelVersion, key: str) -> str | None:
    return (mv.tags or {}).get(f"{PREFIX}{key}")


def approval_state(mv: ModelVersion) -> str | None:
    """``pending``, ``approved``, ``rejected``, ``stale``, ``forced``, or None."""
    return _tag(mv, APPROVAL)


def pending_of(mv: ModelVersion) -> Pending | None:
    if approval_state(mv) != PENDING:
        return None
    return Pending(version=str(mv.version),
                   requested_at=_tag(mv, "approval_requested_at"),
                   decision_id=_tag(mv, "approval_decision_id"),
                   judged_against=_tag(mv, "approval_judged_against") or None,
                   would_be=_tag(mv, "approval_would_be") or "promoted",
                   summary=_tag(mv, "approval_summary"), run_id=mv.run_id)


def is_pending(client: MlflowClient, cfg: Config, version: str) -> bool:
    try:
        return pending_of(client.get_model_version(cfg.model, str(version))) is not None
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            return False
        raise


def pending_approvals(client: MlflowClient, name: str,
                      champion: str | None = None) -> list[Pending]:
    """Every version awaiting approval, oldest request first (the champion excluded)."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            return []
        raise
    found = [p for p in (pending_of(mv) for mv in versions)
             if p is not None and p.version != champion]
    return sorted(found, key=lambda p: (p.requested_at or "", int(p.version)))


def request_approval(client: MlflowClient, cfg: Config, version: str, *, decision_id: str,
                     judged_against: str | None, would_be: str,
                     summary: str | None) -> str:
    """Mark a gate-passing challenger as awaiting approval; returns the request time."""
    at = now_iso()
    set_challenger(client, cfg.model, version)
    tag_version(client, cfg.model, version, {
        "approval_requested_at": at, "approval_decision_id": decision_id,
        "approval_would_be": would_be,
        **({"approval_judged_against": judged_against} if judged_against else {}),
        **({"approval_summary": summary[:_KEEP]} if summary else {}),
        # Last: a crash before this leaves a version that is not (yet) pending.
        APPROVAL: PENDING})
    return at


def require_pending(client: MlflowClient, cfg: Config, version: str, verb: str) -> Pending:
    """The version's pending approval, or a one-line refusal (exit 2) that says why not."""
    mv = get_version(client, cfg.model, version)
    pending = pending_of(mv)
    if pending is not None:
        return pending
    state = approval_state(mv)
    decision = _tag(mv, "decision")
    if state in _SETTLED:
        by = _tag(mv, "approval_by") or "someone"
        raise UserError(f"version {version} of {cfg.model!r} is not awaiting approval: "
                        + _SETTLED[state].format(by=by, at=_tag(mv, "approval_at") or "?"))
    if decision in ("kept_champion", "dry_run_would_keep"):
        raise UserError(f"cannot {verb} version {version} of {cfg.model!r}: the gate did not "
                        f"pass it ({decision}); to promote it anyway use `retrainer promote "
                        f"{version} --force --reason …`")
    raise UserError(f"version {version} of {cfg.model!r} is not awaiting approval"
                    + (f" (its decision: {decision})" if decision else
                       " (no judgement asked for one)"))


def approval_tags(state: str, reason: str | None) -> dict[str, str]:
    """The tags that close a pending approval (a promotion applies them with its move)."""
    return {"approval_by": actor(), "approval_at": now_iso(),
            **({"approval_reason": reason[:_KEEP]} if reason else {}), APPROVAL: state}


def settle(client: MlflowClient, cfg: Config, version: str, state: str,
           reason: str | None) -> dict[str, str]:
    """Close a pending approval: approved, rejected, stale (failed re-check) or forced."""
    tags = approval_tags(state, reason)
    tag_version(client, cfg.model, version, tags)
    return tags


def reject(client: MlflowClient, cfg: Config, version: str, reason: str,
           summary: str | None = None) -> dict[str, Any]:
    """Decline a pending version, under the promotion lock (an approval may be running).

    The `challenger` alias leaves the version (a declined model is no longer shadowed by
    serving); the event is recorded as `rejected` with the actor.
    """
    from retrainer.registry.promotion import promotion_lock

    with promotion_lock(cfg):
        pending = require_pending(client, cfg, version, "reject")
        tags = settle(client, cfg, version, "rejected", reason)
        tag_version(client, cfg.model, version, {"decision": "rejected"})
        moved = aliases(client, cfg.model).get(CHALLENGER) == str(version)
        if moved:
            with contextlib.suppress(Exception):  # already gone is fine
                retry_conflicts(client.delete_registered_model_alias, cfg.model, CHALLENGER)
        doc = {"model": cfg.model, "event": "rejected", "decision": "rejected",
               "version": str(version), "reason": reason, "actor": tags["approval_by"],
               "at": tags["approval_at"], "requested_at": pending.requested_at,
               "judged_against": pending.judged_against, "summary": pending.summary or summary,
               "challenger_alias_removed": moved, "approval_decision_id": pending.decision_id}
        found = current_champion(client, cfg.model, cfg.promote.alias)
        champion = str(found[0].version) if found else None
        doc["run_id"] = record_event(client, cfg, "rejected", doc, version=str(version),
                                     champion_before=champion, champion_after=champion)
    return doc
