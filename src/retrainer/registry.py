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
import getpass
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError

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


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def actor() -> str:
    try:
        return os.environ.get("RETRAINER_ACTOR") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


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
    return MlflowClient(tracking_uri=uri, registry_uri=cfg.registry_uri)


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
        client.set_model_version_tag(name, str(version), f"{PREFIX}{key}", str(value))


def set_challenger(client: MlflowClient, name: str, version: str) -> None:
    client.set_registered_model_alias(name, CHALLENGER, str(version))


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


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    # flock-based: the OS drops the lock when its holder dies, so a lock is never stale.
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise UserError(f"another promotion of this model holds {path} "
                        f"(waited {timeout:.0f} s)") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _advisory_lock(url: str, key: str, timeout: float) -> Iterator[None]:
    # Session-level advisory lock: PostgreSQL releases it when the holder's connection dies.
    import sqlalchemy

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        conn = engine.connect()
    except Exception as err:  # noqa: BLE001
        raise UserError(f"cannot reach the lock database: {str(err).splitlines()[0]}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(hashtext(:k))"),
                               {"k": key}).scalar()
            conn.commit()
            if got:
                break
            if time.monotonic() > deadline:
                raise UserError(f"another promotion of this model holds the advisory lock "
                                f"{key!r} (waited {timeout:.0f} s)")
            time.sleep(0.2)
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
            conn.commit()
    finally:
        conn.close()
        engine.dispose()


# --------------------------------------------------------------------------- promotion

@dataclass
class Move:
    """One alias move: what became champion, what it displaced."""

    model: str
    champion: str
    previous: str | None
    kind: str  # first_champion | promoted | rollback | manual_promotion | repair
    at: str


def _fault(step: str) -> None:
    """Crash-safety tests kill the process at a named step (RETRAINER_FAULT_AT=step)."""
    if os.environ.get("RETRAINER_FAULT_AT") == step:
        os._exit(17)


def move_champion(client: MlflowClient, cfg: Config, new_version: str,
                  old_version: str | None, kind: str,
                  extra_tags: dict[str, Any] | None = None) -> Move:
    """Journal, then move the aliases so that a champion is always in place."""
    name, alias = cfg.model, cfg.promote.alias
    new_version = str(new_version)
    old_version = str(old_version) if old_version is not None else None
    at = now_iso()
    journal = {"target": new_version, "previous": old_version, "kind": kind, "at": at,
               "pid": os.getpid()}
    client.set_registered_model_tag(name, JOURNAL_TAG, json.dumps(journal))
    _fault("journaled")
    _apply(client, cfg, journal, extra_tags or {})
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
        client.set_registered_model_alias(name, PREVIOUS, old)
        _fault("previous_set")
    client.set_registered_model_alias(name, alias, new)
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
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stages are deprecated: the user opted in
        client.transition_model_version_stage(name, new, LEGACY_PRODUCTION)
        if old and old != new:
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
    """Finish a promotion a crash left half-done. Returns the move it finished, if any."""
    journal = pending_journal(client, cfg.model)
    if journal is None:
        return None
    with promotion_lock(cfg):
        journal = pending_journal(client, cfg.model)
        if journal is None:
            return None
        if journal.get("target"):
            _apply(client, cfg, journal, {})
        client.delete_registered_model_tag(cfg.model, JOURNAL_TAG)
    log.warning("finished a half-done %s of %s to version %s (journal from %s)",
                journal.get("kind", "promotion"), cfg.model, journal.get("target"),
                journal.get("at"))
    move = Move(cfg.model, str(journal.get("target")), journal.get("previous"), "repair",
                now_iso())
    record_event(client, cfg, "repair", {
        "reason": f"finished a half-done {journal.get('kind', 'promotion')} "
                  f"journaled at {journal.get('at')}",
        "champion": move.champion, "previous": move.previous})
    return move


def promote(client: MlflowClient, cfg: Config, new_version: str, judged_against: str | None,
            recheck: Callable[[str | None], bool], kind: str) -> tuple[Move | None, str | None]:
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
        move = move_champion(client, cfg, new_version, current_version, kind)
        return move, None


def record_event(client: MlflowClient, cfg: Config, kind: str,
                 payload: dict[str, Any]) -> str:
    """A history record that is not a cycle (rollback, manual promotion, repair): a run."""
    from retrainer.training import experiment_id

    body = {"model": cfg.model, "event": kind, "at": now_iso(), "actor": actor(), **payload}
    run = client.create_run(experiment_id(cfg), tags={
        f"{PREFIX}model": cfg.model, f"{PREFIX}kind": "event", f"{PREFIX}event": kind,
        "mlflow.runName": f"{kind}-{cfg.model}"})
    client.log_dict(run.info.run_id, body, "event.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id
