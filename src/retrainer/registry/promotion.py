"""Moving the champion: journaled, locked, re-checked, crash-safe; rollback; repair.

A promotion is several registry calls, so it is journaled first (a registered-model tag
naming the target) and applied in an order that always leaves exactly one champion; the
next retrainer command finishes a journal it finds half-done. Promotions run under a lock
(a file lock beside a local store, a PostgreSQL advisory lock for a team server).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import locks
from retrainer.errors import UserError, require_reason
from retrainer.registry.names import (
    JOURNAL_TAG,
    LEGACY_ARCHIVED,
    LEGACY_PRODUCTION,
    PREFIX,
    PREVIOUS,
)
from retrainer.registry.reads import (
    _not_found,
    aliases,
    current_champion,
    get_version,
    model_exists,
    parse_version_ref,
)
from retrainer.registry.records import record_event
from retrainer.registry.writes import retry_conflicts, tag_version
from retrainer.stamp import actor, now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

log = logging.getLogger("retrainer")

_BUSY = "a promotion of this model"


@contextlib.contextmanager
def promotion_lock(cfg: Config) -> Iterator[None]:
    """One promotion at a time per model, across processes (and machines, with PostgreSQL)."""
    timeout = cfg.promote.lock_timeout
    target = cfg.promote.lock
    if target and target.startswith("postgres"):
        with locks.advisory_lock(target, f"retrainer:{cfg.model}", timeout, busy=_BUSY):
            yield
        return
    with locks.file_lock(lock_path(cfg), timeout, busy=_BUSY):
        yield


def lock_path(cfg: Config) -> Path:
    if cfg.promote.lock:
        return Path(cfg.resolve_path(cfg.promote.lock))
    uri = cfg.tracking_uri or ""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in cfg.model)
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).with_name(f".retrainer-{safe}.lock")
    if "://" not in uri:
        return Path(uri) / f".retrainer-{safe}.lock"
    # A server without a configured lock: guard this machine at least.
    import hashlib
    import tempfile

    digest = hashlib.sha1(f"{uri}|{cfg.model}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"retrainer-{digest}.lock"


# --------------------------------------------------------------------------- promotion

@dataclass
class Move:
    """One alias move: what became champion, what it displaced."""

    model: str
    champion: str
    previous: str | None
    kind: str  # first_champion, promoted, rollback, repair, {manual,forced,…}_promotion
    at: str


def _fault(step: str) -> None:
    """Crash-safety tests kill the process at a named step (RETRAINER_FAULT_AT=step)."""
    if os.environ.get("RETRAINER_FAULT_AT") == step:
        os._exit(17)


def move_champion(client: MlflowClient, cfg: Config, new_version: str,
                  old_version: str | None, kind: str,
                  extra_tags: dict[str, Any] | None = None, decision_id: str | None = None,
                  reason: str | None = None, trigger: str | None = None) -> Move:
    """Journal, then move the aliases so that a champion is always in place.

    The move is recorded in the history (an event run) before the journal is cleared: a
    crash before that point leaves the journal, and the repair records the move instead.
    """
    name, alias = cfg.model, cfg.promote.alias
    new_version = str(new_version)
    old_version = str(old_version) if old_version is not None else None
    at = now_iso()
    journal = {"target": new_version, "previous": old_version, "kind": kind, "at": at,
               "pid": os.getpid(), "actor": actor(), "decision_id": decision_id,
               "reason": (reason or "")[:500] or None, "trigger": trigger}
    client.set_registered_model_tag(name, JOURNAL_TAG, json.dumps(journal))
    _fault("journaled")
    _apply(client, cfg, journal, extra_tags or {})
    record_event(client, cfg, kind, {
        "reason": reason, "trigger": trigger, "champion": new_version,
        "previous": old_version, "decision_id": decision_id},
        record="move", version=new_version, champion_before=old_version,
        champion_after=new_version, decision_id=decision_id)
    client.delete_registered_model_tag(name, JOURNAL_TAG)
    _fault("cleared")
    log.info("%s: %s -> %s (%s)", name, old_version, new_version, alias)
    return Move(name, new_version, old_version, kind, at)


def _apply(client: MlflowClient, cfg: Config, journal: dict[str, Any],
           extra_tags: dict[str, Any]) -> None:
    """Each step is idempotent, so a repair can replay the whole journal."""
    name, alias = cfg.model, cfg.promote.alias
    new, old, at = journal["target"], journal.get("previous"), journal["at"]
    if old and old != new:
        retry_conflicts(client.set_registered_model_alias, name, PREVIOUS, old)
        _fault("previous_set")
    retry_conflicts(client.set_registered_model_alias, name, alias, new)
    _fault("champion_set")
    # promoted_by: what put it there (promoted, rollout_completed, rollback, …); the
    # guard after promotion reads it.
    tag_version(client, name, new, {"champion_since": at,
                                    "promoted_by": journal.get("kind") or "promotion",
                                    **extra_tags})
    with contextlib.suppress(Exception):  # a version back in service is no longer archived
        client.delete_model_version_tag(name, new, f"{PREFIX}archived_at")
    if old and old != new:
        tag_version(client, name, old, {"archived_at": at})
        _fault("archived")
    if cfg.promote.legacy_stages:
        _legacy_transition(client, name, new, old)
        _fault("stages")


def _legacy_transition(client: MlflowClient, name: str, new: str, old: str | None) -> None:
    """The article's stages: new to Production, the old champion to Archived.

    `archive_existing_versions` archives every other Production version in the same store
    call, so the stage view never shows two Production versions, even after a crash.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stages are deprecated: the user opted in
        client.transition_model_version_stage(name, new, LEGACY_PRODUCTION,
                                              archive_existing_versions=True)
        if old and old != new and \
                client.get_model_version(name, old).current_stage != LEGACY_ARCHIVED:
            client.transition_model_version_stage(name, old, LEGACY_ARCHIVED)


def pending_journal(client: MlflowClient, name: str) -> dict[str, Any] | None:
    try:
        rm = client.get_registered_model(name)
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            return None
        raise
    raw = (rm.tags or {}).get(JOURNAL_TAG)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return {"target": None, "raw": raw}


def repair(client: MlflowClient, cfg: Config) -> Move | None:
    """Finish a promotion a crash left half-done. Returns the move it finished, if any.

    Every step of a journaled move is idempotent, so replaying the journal forward always
    ends with the journal's target as champion and its `previous` one step away.
    """
    journal = pending_journal(client, cfg.model)
    if journal is None:
        return None
    with promotion_lock(cfg):
        journal = pending_journal(client, cfg.model)  # another process may have finished it
        if journal is None:
            return None
        if journal.get("target"):
            _apply(client, cfg, journal, {})
        kind = journal.get("kind", "promotion")
        move = Move(cfg.model, str(journal.get("target")), journal.get("previous"), "repair",
                    now_iso())
        # Recorded before the journal is cleared: a crash here repeats the repair, never
        # loses it.
        record_event(client, cfg, "repair", {
            "reason": f"finished a half-done {kind} to version {journal.get('target')} "
                      f"journaled at {journal.get('at')} by {journal.get('actor', 'unknown')} "
                      f"(process {journal.get('pid')})",
            "journal": journal, "champion": move.champion, "previous": move.previous},
            record="repair", version=move.champion, champion_before=journal.get("previous"),
            champion_after=move.champion, decision_id=journal.get("decision_id"),
            trigger=journal.get("trigger"))
        client.delete_registered_model_tag(cfg.model, JOURNAL_TAG)
    log.warning("finished a half-done %s of %s to version %s (journal from %s)",
                kind, cfg.model, journal.get("target"), journal.get("at"))
    return move


def promote(client: MlflowClient, cfg: Config, new_version: str, judged_against: str | None,
            recheck: Callable[[str | None], bool], kind: str, decision_id: str | None = None,
            reason: str | None = None, trigger: str | None = None,
            guard: Callable[[], None] | None = None,
            extra_tags: dict[str, Any] | None = None) -> tuple[Move | None, str | None]:
    """Move the champion alias to `new_version` under the lock.

    If the champion changed since the challenger was judged (another cycle promoted
    meanwhile), `recheck(current)` judges again against the champion of this moment;
    returns (move, None) or (None, reason) when the re-check rejects. `guard` runs first
    under the lock and raises to refuse (an approval checks the version is still pending);
    `extra_tags` go on the new champion with the move.
    """
    with promotion_lock(cfg):
        if guard is not None:
            guard()
        current = current_champion(client, cfg.model, cfg.promote.alias)
        current_version = str(current[0].version) if current else None
        if current_version != (str(judged_against) if judged_against else None) \
                and not recheck(current_version):
            return None, (f"champion changed to version {current_version} while judging; "
                          "the re-check against it rejected this challenger")
        if current_version == str(new_version):
            return None, f"version {new_version} is already the champion"
        if kind == "first_champion" and current_version is not None:
            kind = "promoted"  # judged as the first, re-checked against the champion of now
        move = move_champion(client, cfg, new_version, current_version, kind,
                             extra_tags=extra_tags, decision_id=decision_id, reason=reason,
                             trigger=trigger)
        return move, None


def rollback(client: MlflowClient, cfg: Config, reason: str, to: str | None = None) -> Move:
    """Champion back to `previous` (or `to`); the displaced champion becomes `previous`.

    Rolling back twice returns to where it started. Every check happens before the first
    write, so a refused rollback leaves the registry as it was.
    """
    require_reason(reason, "rollback needs --reason: say why the champion is rolled back")
    if to is not None:
        to = parse_version_ref(to, cfg.model)
    if not model_exists(client, cfg.model):
        raise UserError(f"model {cfg.model!r} is not registered: nothing to roll back")
    repair(client, cfg)
    with promotion_lock(cfg):
        found = current_champion(client, cfg.model, cfg.promote.alias)
        if found is None:
            raise UserError(f"model {cfg.model!r} has no champion to roll back")
        current = str(found[0].version)
        if to is None:
            target = aliases(client, cfg.model).get(PREVIOUS)
            if target is None:
                raise UserError(f"model {cfg.model!r} has no '{PREVIOUS}' version to roll back "
                                "to; name one with --to VERSION")
        else:
            target = to
        mv = get_version(client, cfg.model, target)
        if str(mv.status) not in ("READY", "ModelVersionStatus.READY", "1"):
            raise UserError(f"version {target} of {cfg.model!r} is not ready ({mv.status})")
        if target == current:
            raise UserError(f"version {target} is already the champion of {cfg.model!r}")
        return move_champion(client, cfg, target, current, "rollback", reason=reason.strip(),
                             trigger="rollback",
                             extra_tags={"rolled_back_to_at": now_iso()})
