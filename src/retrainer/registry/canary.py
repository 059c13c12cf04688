"""The canary in the registry: start, abort, complete, roll back by itself, and repair.

Writes only: *when* to do each is decided in `retrainer.rollout`. A canary is the alias
`canary` plus the registered-model tag `retrainer.rollout` (JSON: the version, the
champion it was judged against, since when, its share, and `state`). The tag is written
before any alias moves and names the step in progress (`starting`, `active`,
`completing`, `aborting`), so it is the journal of a rollout: a crash at any step is
finished by the next command (`repair`), as a promotion's journal is. Every step runs
under the promotion lock, and completing goes through the same journaled champion move
as a promotion, re-checked against the champion of that moment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError
from retrainer.registry.names import CANARY, PREVIOUS, ROLLOUT_TAG
from retrainer.registry.promotion import (
    Move,
    _fault,
    move_champion,
    promotion_lock,
)
from retrainer.registry.promotion import repair as repair_promotion
from retrainer.registry.reads import _not_found, current_champion
from retrainer.registry.records import record_event
from retrainer.registry.writes import retry_conflicts, tag_version
from retrainer.stamp import actor, now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

log = logging.getLogger("retrainer")

#: recheck(current champion) -> whether the candidate still passes against it.
Recheck = Callable[[str | None], bool]


@dataclass
class CanaryStart:
    """What `start` did: started (replacing `replaced`, if any) or why not."""

    started: bool
    canary: dict[str, Any] | None = None
    replaced: str | None = None
    why: str | None = None


# --------------------------------------------------------------------------- reading

def _model(client: MlflowClient, name: str) -> Any:
    try:
        return client.get_registered_model(name)
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            return None
        raise


def _tag(rm: Any) -> dict[str, Any] | None:
    raw = (rm.tags or {}).get(ROLLOUT_TAG) if rm is not None else None
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return {"state": "unreadable", "raw": raw}
    return doc if isinstance(doc, dict) else {"state": "unreadable", "raw": raw}


def canary_alias(rm: Any) -> str | None:
    value = (rm.aliases or {}).get(CANARY) if rm is not None else None
    return str(value) if value is not None else None


def read_canary(client: MlflowClient, name: str) -> dict[str, Any] | None:
    """The running canary (its tag, with `version` and `since`), or None.

    Only a consistent one counts: the alias set, the tag active and naming the same
    version. Anything else is a step a crash (or a hand in the MLflow UI) left half-done,
    which `repair` settles.
    """
    rm = _model(client, name)
    tag, alias = _tag(rm), canary_alias(rm)
    if tag and alias and tag.get("state") == "active" and str(tag.get("version")) == alias:
        return tag
    return None


# --------------------------------------------------------------------------- writing

def _write_tag(client: MlflowClient, cfg: Config, doc: dict[str, Any]) -> None:
    retry_conflicts(client.set_registered_model_tag, cfg.model, ROLLOUT_TAG,
                    json.dumps(doc, default=str))


def _clear_tag(client: MlflowClient, cfg: Config) -> None:
    with contextlib.suppress(Exception):  # already gone: the step is done
        client.delete_registered_model_tag(cfg.model, ROLLOUT_TAG)


def _drop_alias(client: MlflowClient, cfg: Config) -> None:
    with contextlib.suppress(Exception):  # already gone
        client.delete_registered_model_alias(cfg.model, CANARY)


def start(client: MlflowClient, cfg: Config, version: str, *, judged_against: str | None,
          recheck: Recheck | None = None,
          beats_canary: Callable[[str], tuple[bool, str]] | None = None,
          decision_id: str | None = None, reason: str | None = None,
          trigger: str | None = None) -> CanaryStart:
    """Make `version` the canary under the lock; the champion does not move.

    If the champion changed since `version` was judged, `recheck(current)` judges it
    again (no recheck: not started). A running canary is replaced only when
    `beats_canary(canary_version)` says the candidate beats it (same gate).
    """
    version = str(version)
    with promotion_lock(cfg):
        _repair_locked(client, cfg)
        found = current_champion(client, cfg.model, cfg.promote.alias)
        current = str(found[0].version) if found else None
        if current is None:
            return CanaryStart(False, why="there is no champion to run a canary beside")
        if current == version:
            return CanaryStart(False, why=f"version {version} is already the champion")
        if current != (str(judged_against) if judged_against else None) and \
                (recheck is None or not recheck(current)):
            return CanaryStart(False, why=f"champion changed to version {current} while "
                                          "judging; the re-check against it rejected this "
                                          "challenger")
        running = read_canary(client, cfg.model)
        replaced = None
        if running is not None:
            old = str(running["version"])
            if old == version:
                return CanaryStart(False, why=f"version {version} is already the canary")
            if beats_canary is None:
                return CanaryStart(False, why=f"a canary (version {old}) is already running")
            wins, detail = beats_canary(old)
            if not wins:
                return CanaryStart(False, why=f"canary version {old} is running and this "
                                              f"challenger does not beat it: {detail}")
            replaced = old
        since = now_iso()
        doc = {"version": version, "champion": current, "since": since,
               "since_ms": int(time.time() * 1000), "share": cfg.rollout.canary_share,
               "sticky_header": cfg.rollout.sticky_header, "decision_id": decision_id,
               "actor": actor(), "trigger": trigger, "replaced": replaced,
               "reason": (reason or "")[:300] or None, "state": "starting"}
        _write_tag(client, cfg, doc)
        _fault("canary_tagged")
        doc = _finish_start(client, cfg, doc)
        return CanaryStart(True, canary=doc, replaced=replaced)


def _finish_start(client: MlflowClient, cfg: Config, doc: dict[str, Any]) -> dict[str, Any]:
    version, since = str(doc["version"]), doc["since"]
    retry_conflicts(client.set_registered_model_alias, cfg.model, CANARY, version)
    _fault("canary_set")
    tag_version(client, cfg.model, version, {"rollout": "canary", "canary_since": since})
    if doc.get("replaced"):
        tag_version(client, cfg.model, doc["replaced"], {
            "rollout": "replaced", "replaced_by": version, "rollout_ended_at": since})
    doc = {**doc, "state": "active"}
    _write_tag(client, cfg, doc)
    log.info("%s: version %s is the canary (%.0f%% of requests) beside champion %s",
             cfg.model, version, 100 * float(doc.get("share") or 0), doc.get("champion"))
    return doc


def abort(client: MlflowClient, cfg: Config, version: str, reason: str,
          payload: dict[str, Any] | None = None, *, trigger: str = "manual",
          decision_id: str | None = None) -> dict[str, Any]:
    """Remove the canary: alias gone, version tagged `rollout=aborted`, recorded.

    Raises a UserError (nothing written) when `version` is not the running canary.
    """
    with promotion_lock(cfg):
        _repair_locked(client, cfg)
        running = read_canary(client, cfg.model)
        if running is None or str(running["version"]) != str(version):
            raise UserError(f"version {version} of {cfg.model!r} is not the running canary")
        doc = {**running, "state": "aborting", "end_reason": reason[:2000],
               "end_trigger": trigger, "end_payload": payload or {},
               "end_decision_id": decision_id, "end_actor": actor()}
        _write_tag(client, cfg, doc)
        _fault("canary_aborting")
        return _finish_abort(client, cfg, doc)


def _finish_abort(client: MlflowClient, cfg: Config, doc: dict[str, Any],
                  note: str | None = None) -> dict[str, Any]:
    version, at = str(doc["version"]), now_iso()
    _drop_alias(client, cfg)
    tag_version(client, cfg.model, version, {"rollout": "aborted", "rollout_ended_at": at})
    reason = doc.get("end_reason") or "aborted"
    record = {"reason": reason + (f" ({note})" if note else ""),
              "decision": "rollout_aborted", "trigger": doc.get("end_trigger"),
              "canary": _public(doc), **(doc.get("end_payload") or {})}
    record_event(client, cfg, "rollout_aborted", record, version=version,
                 champion_before=doc.get("champion"), champion_after=doc.get("champion"),
                 decision_id=doc.get("end_decision_id"), trigger=doc.get("end_trigger"))
    _clear_tag(client, cfg)
    _fault("rollout_cleared")
    log.warning("%s: canary version %s aborted: %s", cfg.model, version, reason)
    return {**record, "version": version, "at": at}


def complete(client: MlflowClient, cfg: Config, version: str, reason: str,
             payload: dict[str, Any] | None = None, *, recheck: Recheck | None = None,
             trigger: str = "manual", decision_id: str | None = None
             ) -> tuple[Move | None, str | None]:
    """The canary becomes champion through the journaled move; returns (move, None) or
    (None, why) when the champion changed meanwhile and the re-check rejects it (the
    canary is then aborted, with that reason)."""
    with promotion_lock(cfg):
        _repair_locked(client, cfg)
        running = read_canary(client, cfg.model)
        if running is None or str(running["version"]) != str(version):
            raise UserError(f"version {version} of {cfg.model!r} is not the running canary")
        found = current_champion(client, cfg.model, cfg.promote.alias)
        current = str(found[0].version) if found else None
        if current != running.get("champion") and current != str(version) and \
                (recheck is None or not recheck(current)):
            why = (f"champion changed to version {current} during the canary (it was judged "
                   f"against version {running.get('champion')}); the re-check against it "
                   "rejected the canary")
            doc = {**running, "state": "aborting", "end_reason": why, "end_trigger": trigger,
                   "end_payload": payload or {}, "end_decision_id": decision_id,
                   "end_actor": actor()}
            _write_tag(client, cfg, doc)
            _finish_abort(client, cfg, doc)
            return None, why
        doc = {**running, "state": "completing", "end_reason": reason[:2000],
               "end_trigger": trigger, "end_payload": payload or {},
               "end_decision_id": decision_id, "end_actor": actor(),
               "displaced": current}
        _write_tag(client, cfg, doc)
        _fault("canary_completing")
        return _finish_complete(client, cfg, doc), None


def _finish_complete(client: MlflowClient, cfg: Config, doc: dict[str, Any],
                     note: str | None = None) -> Move:
    version = str(doc["version"])
    found = current_champion(client, cfg.model, cfg.promote.alias)
    current = str(found[0].version) if found else None
    reason = (doc.get("end_reason") or "completed") + (f" ({note})" if note else "")
    if current != version:
        move = move_champion(client, cfg, version, current, "rollout_completed",
                             decision_id=doc.get("end_decision_id"), reason=reason,
                             trigger=doc.get("end_trigger"))
    else:  # a crash after the champion moved: the move is done and recorded
        move = Move(cfg.model, version, doc.get("displaced"), "rollout_completed", now_iso())
    _fault("canary_promoted")
    _drop_alias(client, cfg)
    tag_version(client, cfg.model, version, {"rollout": "completed",
                                             "rollout_ended_at": move.at})
    record = {"reason": reason, "decision": "rollout_completed",
              "trigger": doc.get("end_trigger"), "canary": _public(doc),
              "champion": version, "previous": move.previous,
              **(doc.get("end_payload") or {})}
    record_event(client, cfg, "rollout_completed", record, version=version,
                 champion_before=move.previous, champion_after=version,
                 decision_id=doc.get("end_decision_id"), trigger=doc.get("end_trigger"))
    _clear_tag(client, cfg)
    _fault("rollout_cleared")
    log.info("%s: canary version %s completed: champion %s -> %s", cfg.model, version,
             move.previous, version)
    return move


def auto_rollback(client: MlflowClient, cfg: Config, champion: str, previous: str,
                  reason: str, payload: dict[str, Any], decision_id: str) -> Move | None:
    """Champion back to `previous`, if they are still what was judged; recorded as
    `auto_rollback`. None (nothing written) when the registry moved meanwhile."""
    with promotion_lock(cfg):
        found = current_champion(client, cfg.model, cfg.promote.alias)
        current = str(found[0].version) if found else None
        back = (_model(client, cfg.model).aliases or {}).get(PREVIOUS)
        if current != str(champion) or str(back) != str(previous):
            log.warning("guard: the registry moved while judging (champion %s, previous %s)"
                        "; not rolling back", current, back)
            return None
        move = move_champion(client, cfg, str(previous), str(champion), "auto_rollback",
                             decision_id=decision_id, reason=reason, trigger="guard")
        tag_version(client, cfg.model, str(champion), {"rollout": "auto_rolled_back"})
        record_event(client, cfg, "auto_rollback", {
            "reason": reason, "decision": "auto_rollback", "trigger": "guard",
            "champion": str(previous), "previous": str(champion), **payload},
            version=str(champion), champion_before=str(champion),
            champion_after=str(previous), decision_id=decision_id, trigger="guard")
        return move


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    keep = ("version", "champion", "since", "share", "sticky_header", "decision_id",
            "actor", "replaced", "adopted")
    return {k: doc.get(k) for k in keep if doc.get(k) is not None}


# --------------------------------------------------------------------------- repair

def repair(client: MlflowClient, cfg: Config) -> Move | None:
    """Finish a promotion, then a rollout step, that a crash left half-done.

    `registry.repair` is this: every command that starts with a repair finishes both.
    """
    move = repair_promotion(client, cfg)
    rm = _model(client, cfg.model)
    tag, alias = _tag(rm), canary_alias(rm)
    if tag is None and alias is None:
        return move
    if tag and alias and tag.get("state") == "active" and str(tag.get("version")) == alias:
        return move
    with promotion_lock(cfg):
        return _repair_locked(client, cfg) or move


def _repair_locked(client: MlflowClient, cfg: Config) -> Move | None:
    rm = _model(client, cfg.model)
    tag, alias = _tag(rm), canary_alias(rm)
    if tag is None and alias is None:
        return None
    state = (tag or {}).get("state")
    if tag is not None and state == "active" and str(tag.get("version")) == alias:
        return None
    note = "finished by a later command after the process doing it ended"
    if state == "starting":
        _finish_start(client, cfg, tag)
        log.warning("%s: finished starting canary version %s", cfg.model, tag["version"])
        return None
    if state == "completing":
        return _finish_complete(client, cfg, tag, note)
    if state == "aborting":
        _finish_abort(client, cfg, tag, note)
        return None
    if tag is not None and state == "active":
        # The alias was removed or moved outside retrainer: that canary ended.
        _finish_abort(client, cfg, {
            **tag, "end_reason": f"the '{CANARY}' alias was "
            + (f"moved to version {alias}" if alias else "removed") + " outside retrainer",
            "end_trigger": "registry"})
    elif tag is not None:
        _clear_tag(client, cfg)  # unreadable
    if alias is not None:
        # A canary alias set by hand: adopt it, from now.
        found = current_champion(client, cfg.model, cfg.promote.alias)
        _write_tag(client, cfg, {
            "version": alias, "champion": str(found[0].version) if found else None,
            "since": now_iso(), "since_ms": int(time.time() * 1000),
            "share": cfg.rollout.canary_share, "sticky_header": cfg.rollout.sticky_header,
            "actor": actor(), "adopted": True, "state": "active"})
        log.warning("%s: adopted canary version %s (alias set outside retrainer)",
                    cfg.model, alias)
    return None
