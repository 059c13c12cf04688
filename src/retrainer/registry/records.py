"""History records that are not cycles (alias moves, manual promotions, repairs): runs."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from retrainer.redact import redact, redact_all
from retrainer.registry.names import PREFIX
from retrainer.registry.store import experiment_id
from retrainer.stamp import actor, now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config


def summary_tags(*, decision: str | None = None, version: str | None = None,
                 champion_before: str | None = None, champion_after: str | None = None,
                 reason: str | None = None, trigger: str | None = None,
                 decision_id: str | None = None, who: str | None = None,
                 record: str | None = None) -> dict[str, str]:
    """What `retrainer history` reads from a run's tags, so it never downloads artifacts."""
    tags = {"at_ms": str(time.time_ns() // 1_000_000), "actor": who or actor(),
            "record": record, "decision": decision, "version": version,
            "champion_before": champion_before, "champion_after": champion_after,
            "reason": redact((reason or "")[:4000]) or None, "trigger": trigger,
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
    client.log_dict(run.info.run_id, redact_all(_jsonable(body)), "event.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
