"""Writing versions, tags and the challenger alias; retrying writes that lose a store race."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from retrainer.registry.names import CHALLENGER, PREFIX
from retrainer.registry.reads import model_exists

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config


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
