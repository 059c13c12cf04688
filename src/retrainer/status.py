"""What `retrainer status` shows: the aliases, a running canary, pending approvals, the last
decision."""

from __future__ import annotations

from typing import Any

from retrainer import registry, stamp
from retrainer.redact import redact

ROLES = ("champion", "challenger", "previous")


def model_status(cfg: Any) -> dict[str, Any]:
    """Champion, challenger, previous with their run metrics; repairs a half-done promotion."""
    client = registry.connect(cfg)
    repaired = registry.repair(client, cfg)
    doc: dict[str, Any] = {"model": cfg.model, "tracking_uri": redact(cfg.tracking_uri),
                           "registry_uri": redact(cfg.registry_uri or cfg.tracking_uri),
                           "metrics": cfg.metrics, "repaired": repaired is not None}
    found = registry.current_champion(client, cfg.model, cfg.promote.alias)
    names = registry.aliases(client, cfg.model)
    versions = {
        "champion": str(found[0].version) if found else None,
        "challenger": names.get(registry.CHALLENGER),
        "previous": names.get(registry.PREVIOUS),
    }
    for role in ROLES:
        doc[role] = _entry(client, cfg, versions[role]) if versions[role] else None
    if found and doc["champion"] is not None:
        doc["champion"]["known_by"] = found[1]
        if not doc["champion"]["since"] and found[1] == "legacy_stage":
            # A stage-only registry records no promotion time: the version's last update
            # (its transition to Production, unless edited since) is the closest there is.
            doc["champion"]["since"] = _ms_iso(found[0].last_updated_timestamp)
            doc["champion"]["since_source"] = "last_updated (legacy stage)"
    doc["pending_approvals"] = pending_approvals(client, cfg, versions["champion"])
    doc["rollout_mode"] = cfg.rollout.mode
    doc["canary"] = _canary(client, cfg)
    doc["last_decision"] = last_decision(client, cfg)
    doc["journal"] = registry.pending_journal(client, cfg.model)
    return doc


def pending_approvals(client: Any, cfg: Any, champion: str | None) -> list[dict[str, Any]]:
    """Versions awaiting `retrainer approve`, oldest first, with how long they have waited."""
    out = []
    for pending in registry.pending_approvals(client, cfg.model, champion):
        age = stamp.age_seconds(pending.requested_at)
        out.append({**pending.to_dict(), "age_seconds": age, "age": stamp.age_text(age)})
    return out


def _canary(client: Any, cfg: Any) -> dict[str, Any] | None:
    """The running canary: its version entry plus since, share and the champion beside it."""
    running = registry.read_canary(client, cfg.model)
    if running is None:
        return None
    entry = _entry(client, cfg, str(running["version"]))
    keep = ("since", "share", "sticky_header", "replaced", "adopted")
    return {**entry, **{k: running.get(k) for k in keep}, "beside": running.get("champion")}


def _ms_iso(ms: Any) -> str | None:
    from datetime import datetime, timezone

    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _entry(client: Any, cfg: Any, version: str) -> dict[str, Any]:
    mv = registry.get_version(client, cfg.model, version)
    metrics: dict[str, float] = {}
    if mv.run_id:
        try:
            metrics = dict(client.get_run(mv.run_id).data.metrics)
        except Exception:  # noqa: BLE001 - a deleted run
            metrics = {}
    tags = mv.tags or {}
    return {"version": str(mv.version), "run_id": mv.run_id,
            "metrics": {m: metrics.get(m) for m in cfg.metrics},
            "since": tags.get(f"{registry.PREFIX}champion_since"),
            "decision": tags.get(f"{registry.PREFIX}decision"),
            "archived_at": tags.get(f"{registry.PREFIX}archived_at"),
            "stage": mv.current_stage,
            "created": mv.creation_timestamp}


def last_decision(client: Any, cfg: Any) -> dict[str, Any] | None:
    """The newest history entry: a cycle's decision, a manual promotion, rollback or repair."""
    from retrainer.history import latest_decision

    entry = latest_decision(client, cfg)
    if entry is None:
        return None
    keep = ("decision", "what", "reason", "trigger", "at", "actor", "version",
            "champion_before", "champion_after", "run_id")
    return {k: entry.get(k) for k in keep} | {"cycle_id": entry.get("decision_id"),
                                              "decision": entry.get("decision") or
                                              entry["what"]}
