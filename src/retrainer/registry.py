"""The only module that writes the MLflow Model Registry.

Aliases, not stages: ``champion`` (what serving and batch load), ``challenger`` (the last
candidate judged), ``previous`` (the champion before the last promotion). A promotion is
several registry calls, so it is journaled first (a registered-model tag naming the
target) and applied in an order that always leaves exactly one champion; the next
retrainer command finishes a journal it finds half-done. Promotions run under a lock
(a file lock beside a local store, a PostgreSQL advisory lock for a team server).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import locks
from retrainer.errors import UserError
from retrainer.stamp import actor, now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from retrainer.config import Config

log = logging.getLogger("retrainer")

PREFIX = "retrainer."
JOURNAL_TAG = f"{PREFIX}promotion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
LEGACY_PRODUCTION = "Production"
LEGACY_ARCHIVED = "Archived"


# --------------------------------------------------------------------------- connection

def connect(cfg: Config) -> MlflowClient:
    """Point MLflow at the configured stores and fail fast when they cannot be reached."""
    # MLflow retries an unreachable server for minutes: keep it short unless the user chose.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    uri = cfg.tracking_uri or ""
    probe(uri)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    if cfg.registry_uri:
        mlflow.set_registry_uri(cfg.registry_uri)
    with _store_init_guard(cfg):
        # The first client builds (and caches, per process) the tracking and registry
        # stores, which creates or migrates a database store's schema.
        client = MlflowClient(tracking_uri=uri, registry_uri=cfg.registry_uri)
        client.search_registered_models(max_results=1)
    return client


def _store_init_guard(cfg: Config) -> contextlib.AbstractContextManager[None]:
    """One process at a time creates or upgrades a database store.

    MLflow's tracking store creates and migrates a fresh database on first use without a
    lock: eight cycles starting at once on a new sqlite file fail with alembic errors
    ("duplicate column name", "table _alembic_tmp_latest_metrics already exists").
    """
    uri = cfg.tracking_uri or ""
    if uri.startswith("sqlite:///"):
        return _file_lock(Path(uri.removeprefix("sqlite:///") + ".init.lock"),
                          cfg.promote.lock_timeout, what="the store's schema set-up")
    if uri.startswith("postgres"):
        return _advisory_lock(uri, "retrainer:store-init", cfg.promote.lock_timeout)
    return contextlib.nullcontext()  # a server migrates its own store


def probe(uri: str) -> None:
    """A one-line UserError when the tracking store cannot be reached."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as resp:
                if resp.status >= 500:
                    raise UserError(f"MLflow server at {uri} is unhealthy (HTTP {resp.status})")
        except urllib.error.HTTPError as err:
            if err.code >= 500:
                raise UserError(f"MLflow server at {uri} is unhealthy (HTTP {err.code})") \
                    from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(f"cannot reach the MLflow tracking server at {uri}: {reason}") \
                from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.is_dir():
            raise UserError(f"tracking store folder does not exist: {path.parent}")
    elif uri.startswith(("postgresql", "mysql", "mssql")):
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(uri)
            with engine.connect():
                pass
            engine.dispose()
        except Exception as err:  # noqa: BLE001
            raise UserError(f"cannot reach the tracking database: {str(err).splitlines()[0]}") \
                from None


# --------------------------------------------------------------------------- reads

def _not_found(err: Exception) -> bool:
    code = getattr(err, "error_code", "")
    return "RESOURCE_DOES_NOT_EXIST" in str(code) or "not found" in str(err).lower() \
        or "INVALID_PARAMETER_VALUE" in str(code)


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            return None
        raise


def model_exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            return False
        raise


def legacy_production(client: MlflowClient, name: str) -> ModelVersion | None:
    """The newest version in the legacy Production stage (the article's registry)."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            return None
        raise
    prod = [v for v in versions if v.current_stage == LEGACY_PRODUCTION]
    return max(prod, key=lambda v: int(v.version)) if prod else None


def current_champion(client: MlflowClient, name: str,
                     alias: str = "champion") -> tuple[ModelVersion, str] | None:
    """The champion version and how it is known: ``alias`` or ``legacy_stage``."""
    if not model_exists(client, name):
        return None
    mv = version_by_alias(client, name, alias)
    if mv is not None:
        return mv, "alias"
    legacy = legacy_production(client, name)
    if legacy is not None:
        return legacy, "legacy_stage"
    return None


def get_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(name, str(version))
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            raise UserError(f"model {name!r} has no version {version}") from None
        raise


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> version (read from the registered model: search omits aliases)."""
    try:
        rm = client.get_registered_model(name)
    except Exception as err:  # noqa: BLE001
        if _not_found(err):
            return {}
        raise
    return {a: str(v) for a, v in (rm.aliases or {}).items()}


# --------------------------------------------------------------------------- writes

def ensure_model(client: MlflowClient, name: str) -> None:
    if model_exists(client, name):
        return
    try:
        client.create_registered_model(
            name, tags={f"{PREFIX}managed": "true"},
            description="Managed by retrainer: champion/challenger/previous aliases.")
    except Exception as err:  # noqa: BLE001 - another process created it first
        if "ALREADY_EXISTS" not in str(getattr(err, "error_code", "")) \
                and "already exists" not in str(err).lower():
            raise


def register(client: MlflowClient, cfg: Config, model_uri: str, run_id: str,
             model_id: str | None, tags: dict[str, str]) -> str:
    """Register a logged model as a new version; returns the version as a string."""
    ensure_model(client, cfg.model)
    mv = client.create_model_version(
        cfg.model, model_uri, run_id=run_id, model_id=model_id,
        tags={f"{PREFIX}{k}": str(v) for k, v in tags.items()},
        description=f"retrainer cycle {tags.get('cycle_id', '')}".strip())
    return str(mv.version)


def tag_version(client: MlflowClient, name: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        retry_conflicts(client.set_model_version_tag, name, str(version), f"{PREFIX}{key}",
                        str(value))


def set_challenger(client: MlflowClient, name: str, version: str) -> None:
    """Outside the promotion lock: concurrent cycles race here, the last one wins."""
    retry_conflicts(client.set_registered_model_alias, name, CHALLENGER, str(version))


_CONFLICTS = ("UniqueViolation", "duplicate key", "UNIQUE constraint failed",
              "database is locked", "deadlock detected", "could not serialize")


def retry_conflicts(call: Callable[..., Any], *args: Any, attempts: int = 6) -> Any:
    """Retry a registry write that lost a race inside the store.

    MLflow's alias and tag writes are check-then-insert: two processes setting the same
    alias at once make one fail with a unique-key violation (PostgreSQL through a server:
    "duplicate key value violates unique constraint registered_model_alias_pk"). The write
    is an upsert, so running it again is safe and takes the update path.
    """
    import random

    for attempt in range(attempts):
        try:
            return call(*args)
        except Exception as err:  # noqa: BLE001 - only store conflicts are retried
            if attempt == attempts - 1 or not any(c in str(err) for c in _CONFLICTS):
                raise
            time.sleep(0.05 * 2 ** attempt + random.random() * 0.05)
    return None


# --------------------------------------------------------------------------- locking

@contextlib.contextmanager
def promotion_lock(cfg: Config) -> Iterator[None]:
    """One promotion at a time per model, across processes (and machines, with PostgreSQL)."""
    timeout = cfg.promote.lock_timeout
    target = cfg.promote.lock
    if target and target.startswith("postgres"):
        with _advisory_lock(target, f"retrainer:{cfg.model}", timeout):
            yield
        return
    with _file_lock(lock_path(cfg), timeout):
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


def _file_lock(path: Path, timeout: float, what: str = "a promotion of this model"
               ) -> contextlib.AbstractContextManager[None]:
    return locks.file_lock(path, timeout, busy=what)


def _advisory_lock(url: str, key: str, timeout: float,
                   what: str = "a promotion of this model"
                   ) -> contextlib.AbstractContextManager[None]:
    return locks.advisory_lock(url, key, timeout, busy=what)


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
    tag_version(client, name, new, {"champion_since": at, **extra_tags})
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
            reason: str | None = None, trigger: str | None = None
            ) -> tuple[Move | None, str | None]:
    """Move the champion alias to `new_version` under the lock.

    If the champion changed since the challenger was judged (another cycle promoted
    meanwhile), `recheck(current)` judges again against the champion of this moment;
    returns (move, None) or (None, reason) when the re-check rejects.
    """
    with promotion_lock(cfg):
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
                             decision_id=decision_id, reason=reason, trigger=trigger)
        return move, None


def rollback(client: MlflowClient, cfg: Config, reason: str, to: str | None = None) -> Move:
    """Champion back to `previous` (or `to`); the displaced champion becomes `previous`.

    Rolling back twice returns to where it started. Every check happens before the first
    write, so a refused rollback leaves the registry as it was.
    """
    if not (reason or "").strip():
        raise UserError("rollback needs --reason: say why the champion is rolled back")
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


def parse_version_ref(ref: str, model: str) -> str:
    """`3`, `v3` or `models:/<model>/3` -> "3"; another model's version is refused."""
    text = str(ref).strip()
    if text.startswith("models:/"):
        name, _, number = text.removeprefix("models:/").rpartition("/")
        if name != model:
            raise UserError(f"{text} is a version of model {name!r}, not of {model!r}")
        text = number
    if text[:1] in ("v", "V") and text[1:].isdigit():
        text = text[1:]
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"not a model version: {ref!r} (expected a number like 3, or "
                        f"models:/{model}/3)")
    return str(int(text))


def check_version_of_model(client: MlflowClient, cfg: Config, mv: ModelVersion) -> None:
    """Refuse a version whose run was trained for another retrainer model."""
    if not mv.run_id:
        return
    try:
        tags = client.get_run(mv.run_id).data.tags
    except Exception:  # noqa: BLE001 - a deleted run says nothing either way
        return
    owner = tags.get(f"{PREFIX}model")
    if owner and owner != cfg.model:
        raise UserError(f"version {mv.version} of {cfg.model!r} was trained by retrainer for "
                        f"model {owner!r} (run {mv.run_id}); promote it in that model")


# --------------------------------------------------------------------------- history records

def summary_tags(*, decision: str | None = None, version: str | None = None,
                 champion_before: str | None = None, champion_after: str | None = None,
                 reason: str | None = None, trigger: str | None = None,
                 decision_id: str | None = None, who: str | None = None,
                 record: str | None = None) -> dict[str, str]:
    """What `retrainer history` reads from a run's tags, so it never downloads artifacts."""
    tags = {"at_ms": str(time.time_ns() // 1_000_000), "actor": who or actor(),
            "record": record, "decision": decision, "version": version,
            "champion_before": champion_before, "champion_after": champion_after,
            "reason": (reason or "")[:4000] or None, "trigger": trigger,
            "decision_id": decision_id}
    return {f"{PREFIX}{k}": str(v) for k, v in tags.items() if v is not None}


def tag_run(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    """All tags in one store call (one HTTP request against a server)."""
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def record_event(client: MlflowClient, cfg: Config, kind: str,
                 payload: dict[str, Any], *, record: str = "decision",
                 version: str | None = None, champion_before: str | None = None,
                 champion_after: str | None = None, decision_id: str | None = None,
                 trigger: str | None = None) -> str:
    """A history record that is not a cycle (alias move, manual promotion, repair): a run.

    `record` says what it is: ``decision`` (a judgement), ``move`` (an alias move) or
    ``repair``; the summary tags let `retrainer history` list it from one search.
    """
    from retrainer.training import experiment_id

    body = {"model": cfg.model, "event": kind, "record": record, "at": now_iso(),
            "actor": actor(), **payload}
    tags = {f"{PREFIX}model": cfg.model, f"{PREFIX}kind": "event", f"{PREFIX}event": kind,
            "mlflow.runName": f"{kind}-{cfg.model}",
            **summary_tags(decision=payload.get("decision") or kind, version=version,
                           champion_before=champion_before, champion_after=champion_after,
                           reason=payload.get("reason"),
                           trigger=trigger or payload.get("trigger"),
                           decision_id=decision_id, record=record)}
    run = client.create_run(experiment_id(cfg), tags=tags)
    client.log_dict(run.info.run_id, _jsonable(body), "event.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
