"""What `retrainer status` shows: the three aliases and the last decision."""

from __future__ import annotations

from typing import Any

from retrainer import registry

ROLES = ("champion", "challenger", "previous")


def model_status(cfg: Any) -> dict[str, Any]:
    """Champion, challenger, previous with their run metrics; repairs a half-done promotion."""
    client = registry.connect(cfg)
    repaired = registry.repair(client, cfg)
    doc: dict[str, Any] = {"model": cfg.model, "tracking_uri": _redact(cfg.tracking_uri),
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
    doc["last_decision"] = last_decision(client, cfg)
    return doc


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
    exp = client.get_experiment_by_name(cfg.experiment_name)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`retrainer.model` = '{cfg.model}' and "
                      "tags.`retrainer.kind` = 'cycle'",
        order_by=["attributes.start_time DESC"], max_results=5)
    for run in runs:
        decision = run.data.tags.get(f"{registry.PREFIX}decision")
        if not decision:
            continue
        try:
            return client.download_artifacts(run.info.run_id, "decision.json") and \
                _read_json(client.download_artifacts(run.info.run_id, "decision.json"))
        except Exception:  # noqa: BLE001
            return {"decision": decision, "run_id": run.info.run_id}
    return None


def _read_json(path: str) -> dict[str, Any]:
    import json
    from pathlib import Path

    rec = json.loads(Path(path).read_text())
    keep = ("decision", "reason", "trigger", "at", "cycle_id", "actor")
    return {k: rec.get(k) for k in keep} | {"version": rec["challenger"]["version"]}


def _redact(uri: str | None) -> str | None:
    """Never print credentials that came from ${ENV} expansion."""
    if uri and "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
