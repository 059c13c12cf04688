"""Trigger state as JSON tags on one run per model (``retrainer.kind=watch_state``).

The tracking store is the only memory, so a restart neither fires twice nor forgets, and
several machines on one tracking server share it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from retrainer import registry
from retrainer.redact import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

log = logging.getLogger("retrainer")

STATE_KIND = "watch_state"
STATE_TAG = f"{registry.PREFIX}watch."
STATE_AREAS = ("schedule", "new_version", "drift", "performance", "fired", "pending",
               "deliveries")
LIST_AREAS = ("fired", "pending", "deliveries")
MAX_FIRED = 60          # fired keys kept (tag values are limited to 8,000 characters)
MAX_DELIVERIES = 100    # webhook delivery ids kept for replay detection
MAX_TEXT = 600          # reasons and errors kept in pending entries
MAX_TAG = 7_500         # MLflow refuses run tag values over 8,000 characters


class StateStore:
    """Loads and saves the state; a save writes only the areas that changed."""

    def __init__(self, client: MlflowClient, cfg: Config) -> None:
        self.client, self.cfg = client, cfg
        self._run_id: str | None = None
        self._saved: dict[str, str] = {}

    def _find(self) -> str | None:
        exp = self.client.get_experiment_by_name(self.cfg.experiment_name)
        if exp is None:
            return None
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{registry.PREFIX}model` = '{self.cfg.model}' and "
                          f"tags.`{registry.PREFIX}kind` = '{STATE_KIND}'",
            order_by=["attributes.start_time ASC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def load(self) -> dict[str, Any]:
        self._run_id = self._run_id or self._find()
        state: dict[str, Any] = {area: ([] if area in LIST_AREAS else {})
                                 for area in STATE_AREAS}
        if self._run_id is None:
            return state
        tags = self.client.get_run(self._run_id).data.tags
        for area in STATE_AREAS:
            raw = tags.get(STATE_TAG + area)
            if raw:
                self._saved[area] = raw
                try:
                    state[area] = json.loads(raw)
                except json.JSONDecodeError:
                    log.warning("watch state %s is not JSON; starting it afresh", area)
        return state

    def save(self, state: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        changed = []
        for area in STATE_AREAS:
            raw = serialise(area, state.get(area))
            if self._saved.get(area) != raw:
                changed.append((area, raw))
        if not changed:
            return
        if self._run_id is None:
            self._run_id = self._find() or self._create()
        self.client.log_batch(self._run_id, tags=[RunTag(STATE_TAG + a, raw)
                                                  for a, raw in changed])
        self._saved.update(dict(changed))

    def _create(self) -> str:
        from retrainer.registry import experiment_id

        run = self.client.create_run(experiment_id(self.cfg), tags={
            f"{registry.PREFIX}model": self.cfg.model, f"{registry.PREFIX}kind": STATE_KIND,
            "mlflow.runName": f"watch-state-{self.cfg.model}",
            "mlflow.note.content": "retrainer watch: trigger state (do not delete)"})
        # Finished, so the UI does not show a run that never ends; tags stay writable.
        self.client.set_terminated(run.info.run_id)
        return run.info.run_id


def serialise(area: str, value: Any) -> str:
    """The area's JSON, kept under MLflow's 8,000-character limit for a tag value.

    Fired keys and delivery ids are a recent window: the oldest go first. Pending cycles
    must not be forgotten, so their texts are shortened before any is dropped.
    """
    def dump(v: Any) -> str:
        return redact(json.dumps(v, sort_keys=True, default=str)) or ""  # reasons quote URLs

    if area == "pending":
        items = list(value or [])
        for width in (MAX_TEXT, 200, 80):
            items = [{**p, "reason": str(p.get("reason") or "")[:width],
                      "error": str(p["error"])[:width] if p.get("error") else None}
                     for p in items]
            if len(dump(items)) <= MAX_TAG:
                return dump(items)
        while len(items) > 1 and len(dump(items)) > MAX_TAG:
            log.warning("watch state: too many pending cycles, forgetting the oldest (%s)",
                        items[0].get("reason"))
            items.pop(0)
        return dump(items)
    if area in ("fired", "deliveries"):
        items = list(value or [])[-(MAX_FIRED if area == "fired" else MAX_DELIVERIES):]
        while items and len(dump(items)) > MAX_TAG:
            items.pop(0)
        return dump(items)
    return dump(value)
