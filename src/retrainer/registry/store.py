"""Connecting to the tracking store and registry, failing fast when they cannot be reached."""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from retrainer import locks
from retrainer.errors import UserError
from retrainer.redact import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config


def connect(cfg: Config) -> MlflowClient:
    """Point MLflow at the configured stores and fail fast when they cannot be reached."""
    # MLflow retries an unreachable server for minutes: keep it short unless the user chose.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    uri = cfg.tracking_uri or ""
    probe(uri)
    import mlflow
    from mlflow import MlflowClient

    from retrainer.config import default_registry_uri

    # Never leave the registry to an inherited MLFLOW_REGISTRY_URI: it would split versions
    # and aliases from the runs (config.load decides, and warns when it ignores one).
    registry_uri = cfg.registry_uri or default_registry_uri(uri)
    mlflow.set_tracking_uri(uri)
    if registry_uri == default_registry_uri(uri):
        # Follow the tracking store. "" makes MLflow derive the registry from the current
        # tracking URI and skip the environment variable; pinning the URI instead would
        # split code in this process that later sets only a tracking URI.
        mlflow.set_registry_uri("")
        os.environ.pop("MLFLOW_REGISTRY_URI", None)  # nor hand it to child processes
    else:
        mlflow.set_registry_uri(registry_uri)
    with _store_init_guard(cfg):
        # The first client builds (and caches, per process) the tracking and registry
        # stores, which creates or migrates a database store's schema.
        client = MlflowClient(tracking_uri=uri, registry_uri=registry_uri)
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
        return locks.file_lock(Path(uri.removeprefix("sqlite:///") + ".init.lock"),
                          cfg.promote.lock_timeout, busy="the store's schema set-up")
    if uri.startswith("postgres"):
        return locks.advisory_lock(uri, "retrainer:store-init", cfg.promote.lock_timeout,
                                   busy="the store's schema set-up")
    return contextlib.nullcontext()  # a server migrates its own store


def probe(uri: str) -> None:
    """A one-line UserError when the tracking store cannot be reached (credentials blanked)."""
    shown = redact(uri)
    if uri.startswith(("http://", "https://")):
        url, headers = _without_userinfo(f"{uri.rstrip('/')}/health")
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as resp:
                if resp.status >= 500:
                    raise UserError(f"MLflow server at {shown} is unhealthy (HTTP {resp.status})")
        except urllib.error.HTTPError as err:
            if err.code >= 500:
                raise UserError(f"MLflow server at {shown} is unhealthy (HTTP {err.code})") \
                    from None
        except (urllib.error.URLError, OSError) as err:
            reason = redact(str(getattr(err, "reason", err)))
            raise UserError(f"cannot reach the MLflow tracking server at {shown}: {reason}") \
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
            first = redact(str(err).splitlines()[0] if str(err) else type(err).__name__)
            raise UserError(f"cannot reach the tracking database {shown}: {first}") from None


def _without_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """`http://user:pw@host/x` as urllib can open it: the URL without the credentials, and
    them as a Basic authorization header (what MLflow's requests-based client sends)."""
    import base64
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), \
        {"Authorization": f"Basic {token}"}


def experiment_id(cfg: Config) -> str:
    """The experiment's id, created on first use (artifacts beside an embedded store)."""
    from mlflow import MlflowClient

    from retrainer.config import artifact_root

    client = MlflowClient()
    name = cfg.experiment_name
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(cfg))
    except Exception:  # noqa: BLE001 - another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
