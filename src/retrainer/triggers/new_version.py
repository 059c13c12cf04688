"""The new-version check: versions registered outside retrainer that nobody judged yet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrainer import registry
from retrainer.triggers.fire import Fire

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

_OWN_TAGS = (f"{registry.PREFIX}cycle_id", f"{registry.PREFIX}decision")


def check_new_versions(client: MlflowClient, cfg: Config,
                       state: dict[str, Any]) -> tuple[list[Fire], dict[str, Any]]:
    """Versions newer than the last seen that retrainer did not create and nobody judged."""
    name = cfg.model
    if not registry.model_exists(client, name):
        return [], dict(state)
    versions = sorted(client.search_model_versions(f"name='{name}'"),
                      key=lambda mv: int(mv.version))
    found = registry.current_champion(client, name, cfg.promote.alias)
    champion = str(found[0].version) if found else None
    last_seen = state.get("last_seen")
    if last_seen is None:
        last_seen = _baseline_version(versions, champion)
    fires = []
    newest = last_seen
    for mv in versions:
        number, tags = int(mv.version), mv.tags or {}
        if number <= last_seen:
            continue
        status = str(getattr(mv, "status", "READY") or "READY")
        if status.upper().removeprefix("MODELVERSIONSTATUS.") != "READY":
            break  # still registering (async registries): look again next time
        newest = number
        if any(tag in tags for tag in _OWN_TAGS):
            continue  # retrainer's own challenger, or already judged (`retrainer promote`)
        if str(number) == champion:
            continue
        origin = f" from run {mv.run_id}" if mv.run_id else f" from {mv.source}"
        who = f" by {mv.user_id}" if getattr(mv, "user_id", None) else ""
        fires.append(Fire("new_version",
                          f"version {number} of {name} registered outside retrainer{origin}{who}",
                          key=f"new_version:{number}", version=str(number)))
    return fires, {**state, "last_seen": newest}


def _baseline_version(versions: list[Any], champion: str | None) -> int:
    """Without state: everything up to what retrainer already knows about counts as seen.

    That is the champion and every version retrainer created or judged; an older registry
    adopting retrainer does not get its whole history judged on the first watch, while a
    version registered after retrainer's last one is still noticed.
    """
    known = [int(champion)] if champion else []
    for mv in versions:
        if any(tag in (mv.tags or {}) for tag in _OWN_TAGS):
            known.append(int(mv.version))
    return max(known, default=0)
