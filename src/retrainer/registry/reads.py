"""Reading the registry: versions, aliases, the champion (by alias or legacy stage)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrainer.errors import UserError
from retrainer.registry.names import LEGACY_PRODUCTION, PREFIX

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from retrainer.config import Config


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
