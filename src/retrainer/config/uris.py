"""Which MLflow stores a config means: tracking, registry and artifact locations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from retrainer.config.schema import DEFAULT_TRACKING_URI

if TYPE_CHECKING:
    from retrainer.config.schema import Config


def resolve_tracking_uri(cfg: Config, flag: str | None = None) -> str:
    uri = flag or cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    return absolutize_uri(uri, cfg.base_dir)


def resolve_registry_uri(cfg: Config, named_by: str | None) -> tuple[str, str | None]:
    """The registry URI, and an environment registry URI that was ignored (for a warning).

    `registry_uri` in the config wins. Otherwise the registry goes with the tracking store: a
    store named by the config or `--tracking-uri` (or the embedded default) is never split
    by an inherited `MLFLOW_REGISTRY_URI` (`mlflow.set_registry_uri` exports it to child
    processes), which would put runs in one store and versions and aliases in another.
    Only a tracking store that itself came from `MLFLOW_TRACKING_URI` takes the registry
    from the environment too. Call after `resolve_tracking_uri`.
    """
    tracking = cfg.tracking_uri or resolve_tracking_uri(cfg)
    if cfg.registry_uri:
        return absolutize_uri(cfg.registry_uri, cfg.base_dir), None
    env = os.environ.get("MLFLOW_REGISTRY_URI") or None
    from_env = named_by is None and bool(os.environ.get("MLFLOW_TRACKING_URI"))
    if env and from_env:
        return absolutize_uri(env, Path.cwd()), None
    default = default_registry_uri(tracking)
    if env and absolutize_uri(env, Path.cwd()) != default:
        return default, env
    return default, None


def default_registry_uri(tracking: str) -> str:
    """MLflow's own default registry for a tracking store: the store itself, except Unity
    Catalog beside a Databricks workspace."""
    if tracking == "databricks":
        return "databricks-uc"
    if tracking.startswith("databricks://"):
        return "databricks-uc://" + tracking.removeprefix("databricks://")
    return tracking


def absolutize_uri(uri: str, base_dir: Path) -> str:
    """`sqlite:///mlflow.db` and plain paths become absolute against `base_dir`."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        if rel != ":memory:":
            return f"sqlite:///{(base_dir / rel).resolve()}"
    if "://" not in uri and not uri.startswith("databricks"):
        return str((base_dir / uri).resolve())
    return uri


def artifact_root(cfg: Config) -> str | None:
    """Artifacts of an embedded store go in a folder beside the config file."""
    uri = cfg.tracking_uri or ""
    if uri.startswith("sqlite:") or "://" not in uri:
        return (cfg.base_dir / "mlartifacts").resolve().as_uri()
    return None
