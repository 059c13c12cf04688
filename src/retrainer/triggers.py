"""Deciding when to retrain: schedule, drift, new registered version, performance decay.

`Watcher.tick(now)` evaluates the configured triggers once at the moment `now` (time is
injected, so schedules are testable without sleeping), runs what fired and returns what
it did. `watch_once` is one tick under the watch lock (cron, Airflow, Databricks Jobs);
`run_daemon` ticks in a loop, optionally receiving MLflow registry webhooks.

Trigger state (last scheduled slot, last seen version, last drift and performance
verdicts, fired keys, failed cycles awaiting a retry, webhook delivery ids) lives in the
tracking store as JSON tags on one run per model tagged ``retrainer.kind=watch_state``,
so a restart neither fires twice nor forgets. State is saved *before* a fired cycle
runs: a crash mid-cycle leaves a pending entry that the next tick retries (after a
backoff, so a cycle that kills its process cannot loop hot).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from retrainer import locks, registry
from retrainer.errors import UserError
from retrainer.redact import redact

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from retrainer.config import Config
    from retrainer.drift.statistics import DriftReport

log = logging.getLogger("retrainer")

#: Evaluation order; new versions are judged before any retrain so that a better
#: model a data scientist registered becomes the champion the retrain is judged against.
TRIGGERS = ("new_version", "drift", "performance", "schedule")
#: When several retrain triggers fire together they run one cycle, named after the first.
RETRAIN_PRIORITY = ("drift", "performance", "schedule")

STATE_KIND = "watch_state"
STATE_TAG = f"{registry.PREFIX}watch."
STATE_AREAS = ("schedule", "new_version", "drift", "performance", "fired", "pending",
               "deliveries")
MAX_FIRED = 60          # fired keys kept (tag values are limited to 8,000 characters)
MAX_DELIVERIES = 100    # webhook delivery ids kept for replay detection
MAX_TEXT = 600          # reasons and errors kept in pending entries
MAX_TAG = 7_500         # MLflow refuses run tag values over 8,000 characters

# MLflow's delivery headers (mlflow/webhooks/constants.py) and Standard Webhooks' default
# tolerance for the timestamp.
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
WEBHOOK_TOLERANCE_SECONDS = 300
WEBHOOK_PATH = "/webhooks/mlflow"
MAX_WEBHOOK_BODY = 1_000_000


# --------------------------------------------------------------------------- time

def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_now(value: str | None) -> datetime | None:
    """`--now` as an aware UTC datetime (a naive value is taken as UTC); None if not given."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--now {value!r}: expected an ISO-8601 moment, e.g. "
                        "2024-01-01T03:00:00+00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --------------------------------------------------------------------------- results

@dataclass
class Fire:
    """A trigger that fired: what, why, and the key of the event (for deduplication)."""

    trigger: str
    reason: str
    key: str
    version: str | None = None  # new_version: the version to judge

    def public(self) -> dict[str, str]:
        return {"trigger": self.trigger, "reason": self.reason}


@dataclass
class TickResult:
    """What one evaluation did. `to_json` is the `watch --once --json` document."""

    now: datetime
    fired: list[Fire] = field(default_factory=list)
    cycles: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    abandoned: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"fired": [f.public() for f in self.fired], "cycles": self.cycles}


class Abandoned(BaseException):
    """Raised by a second SIGTERM to abandon the cycle in progress.

    A BaseException so that the cycle's own `except Exception` handlers do not swallow it;
    `with` blocks still unwind (the MLflow run is marked failed, locks are released) and
    a half-done promotion is finished by the next command from its journal.
    """


# --------------------------------------------------------------------------- schedule

def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001
        raise UserError(f"triggers.schedule.timezone: unknown time zone {name!r}") from None


def latest_slot(cron: str, tz: str, now: datetime) -> datetime:
    """The latest cron slot at or before `now`, in the schedule's time zone."""
    from croniter import croniter

    local = now.astimezone(_zone(tz))
    # croniter's get_prev is strict: nudge so that a slot exactly at `now` counts.
    return croniter(cron, local + timedelta(microseconds=1)).get_prev(datetime)


def _slots_between(cron: str, tz: str, after: datetime, until: datetime, cap: int = 1000) -> int:
    """How many slots lie in (after, until]; capped, it only feeds the reason text."""
    from croniter import croniter

    it = croniter(cron, after.astimezone(_zone(tz)))
    count = 0
    while count < cap and it.get_next(datetime) <= until:
        count += 1
    return count


def check_schedule(cron: str, tz: str, state: dict[str, Any],
                   now: datetime) -> tuple[Fire | None, dict[str, Any]]:
    """Fire once for the latest slot not yet fired, however many were missed.

    The first watch of a model records `since` and fires nothing: it starts the clock
    rather than firing for a slot that passed before anyone was watching.
    """
    new = dict(state)
    last, since = state.get("last_slot"), state.get("since")
    if last is None and since is None:
        new["since"] = iso(now)
        return None, new
    slot = latest_slot(cron, tz, now)
    baseline = _parse_iso(last or since)
    if slot <= baseline:
        return None, new
    if last is not None:
        # DST fall-back repeats an hour: a slot with the same wall-clock time as the last
        # fired one is the same slot, as cron itself treats it.
        last_local = _parse_iso(last).astimezone(slot.tzinfo)
        if last_local.replace(tzinfo=None) == slot.replace(tzinfo=None):
            return None, new
    slots = _slots_between(cron, tz, baseline, slot)
    reason = f"cron '{cron}' ({tz}) slot {slot.isoformat()}"
    if slots > 1:
        more = f"{slots - 1}" if slots < 1000 else "1000+"
        reason += f"; {more} earlier slot(s) passed while nobody watched: fired once"
    new["last_slot"] = slot.isoformat()
    new["fired_at"] = iso(now)
    return Fire("schedule", reason, key=f"schedule:{slot.isoformat()}"), new


# --------------------------------------------------------------------------- new versions

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
        if f"{registry.PREFIX}cycle_id" in tags or f"{registry.PREFIX}decision" in tags:
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
        tags = mv.tags or {}
        if f"{registry.PREFIX}cycle_id" in tags or f"{registry.PREFIX}decision" in tags:
            known.append(int(mv.version))
    return max(known, default=0)


# --------------------------------------------------------------------------- drift

def frame_digest(frame: pd.DataFrame) -> str:
    """A short content hash of a frame: the same rows give the same digest."""
    import pandas as pd

    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    try:
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    except TypeError:  # unhashable cells (lists, dicts): fall back to their text
        h.update(frame.to_csv(index=False).encode())
    return h.hexdigest()[:16]


_STAT_NAMES = {"psi": "PSI", "chi2": "chi-square"}


def drift_reason(report: DriftReport, key_columns: list[str] | None = None,
                 limit: int = 5) -> str:
    """The report's verdict (rules fired), then e.g. 'PSI 0.31 on bmi > 0.12, PSI 0.2 on bp'."""
    drifted = [c for c in report.columns if c.drifted]

    def strength(c: Any) -> float:
        if c.value is not None and c.threshold:
            return float(c.value) / float(c.threshold)
        return float("inf")  # a missing or emptied column is the strongest finding

    parts = []
    for c in sorted(drifted, key=strength, reverse=True):
        if c.value is not None and c.threshold is not None and c.value > c.threshold:
            name = _STAT_NAMES.get(c.statistic or "", c.statistic or "statistic")
            parts.append(f"{name} {_fmt(c.value)} on {c.column} > {_fmt(c.threshold)}")
        else:
            parts.append(f"{c.column}: {c.note or ', '.join(c.reasons) or 'drifted'}")
    text = report.verdict  # which rules fired, with their numbers (drift.statistics)
    shown = ", ".join(parts[:limit])
    if len(parts) > limit:
        shown += f" and {len(parts) - limit} more"
    return f"{text}: {shown}" if shown else text


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def check_drift(client: MlflowClient, cfg: Config, state: dict[str, Any],
                 now: datetime) -> tuple[Fire | None, dict[str, Any]]:
    """Fire when the current data drifted from the champion's training data.

    Each drifted dataset fires once: a retrain already answered these rows, and firing
    again on the same rows (say the gate kept the champion) would retrain in a loop. New
    rows that still drift fire again, and so does drift that returns after it cleared.
    """
    from retrainer.drift.champion import champion_drift

    spec = cfg.triggers.drift
    assert spec is not None
    if registry.current_champion(client, cfg.model, cfg.promote.alias) is None:
        log.info("drift trigger: no champion yet, nothing to compare with")
        return None, dict(state)
    # `retrainer drift`'s own logic: the champion's profile against triggers.drift.data.
    result = champion_drift(cfg)
    report = result.report
    digest = frame_digest(result.current)
    new = {**state, "verdict": bool(report.dataset_drift), "checked_at": iso(now),
           "champion": result.version, "digest": digest,
           "drifted_columns": report.drifted_columns[:20],
           "share_drifted": round(float(report.share_drifted), 4)}
    if not report.dataset_drift:
        new.pop("fired_digest", None)
        return None, new
    if state.get("fired_digest") == digest:
        log.info("drift trigger: these rows (%s) already fired a retrain", digest)
        return None, new
    new["fired_digest"] = digest
    reason = drift_reason(report, cfg.drift.key_columns)
    return Fire("drift", f"{reason} (champion version {result.version}, "
                         f"{len(result.current)} rows of {spec.data})",
                key=f"drift:{digest}"), new


# --------------------------------------------------------------------------- performance

def relative_degradation(metric: str, value: float, baseline: float) -> float:
    """How much worse `value` is than `baseline`, relative (0.1 = 10 % worse; <0 = better)."""
    import math

    from retrainer.metrics import GREATER_IS_BETTER

    worse_by = (baseline - value) if GREATER_IS_BETTER[metric] else (value - baseline)
    if baseline == 0:
        return math.inf if worse_by > 0 else 0.0
    return worse_by / abs(baseline)


def check_performance(client: MlflowClient, cfg: Config, state: dict[str, Any],
                      now: datetime) -> tuple[Fire | None, dict[str, Any]]:
    """Fire when the champion's primary metric on labelled feedback rows is worse than
    on its own holdout (what its run logged) by more than `max_degradation`, relative."""
    from retrainer import cycle, evaluation, training
    from retrainer.data import read_source, validate

    spec = cfg.triggers.performance
    assert spec is not None
    metric = cfg.primary_metric
    champion = cycle.load_champion(cfg, client)
    if champion is None:
        log.info("performance trigger: no champion yet")
        return None, dict(state)
    baseline = champion.metrics_as_logged.get(metric)
    if baseline is None:
        log.warning("performance trigger: the champion's run (version %s) logged no %s to "
                    "compare with: skipped", champion.version, metric)
        return None, {**state, "checked_at": iso(now), "champion": champion.version}
    frame = read_source(spec.data, cfg.base_dir, spec.query)
    rows = validate(frame, cfg.data, spec.data, min_rows=1)
    info = training.load_training_info(client, champion.run_id) if champion.run_id else {}
    task = info.get("task") or training.task_of(cfg, champion.model, rows.y)
    pred, proba = training.predict(champion.model, evaluation.champion_inputs(champion, rows),
                                   task)
    value = training.score([metric], rows.y, pred, proba, info.get("labels"))[metric]
    worse = relative_degradation(metric, value, baseline)
    digest = frame_digest(frame)
    new = {**state, "checked_at": iso(now), "champion": champion.version, "metric": metric,
           "value": value, "baseline": baseline, "degradation": round(worse, 6),
           "rows": len(rows), "digest": digest}
    if not worse > spec.max_degradation:
        new.pop("fired_digest", None)
        return None, new
    if state.get("fired_digest") == digest:
        log.info("performance trigger: these feedback rows (%s) already fired", digest)
        return None, new
    new["fired_digest"] = digest
    reason = (f"{metric} {_fmt(value)} on {len(rows)} labelled feedback rows vs "
              f"{_fmt(baseline)} on the champion's holdout (version {champion.version}): "
              f"{worse:.1%} worse > {spec.max_degradation:.0%} allowed")
    return Fire("performance", reason, key=f"performance:{digest}"), new


# --------------------------------------------------------------------------- state

class StateStore:
    """Trigger state as JSON tags on one run per model (kind ``watch_state``)."""

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
        state: dict[str, Any] = {area: ([] if area in ("fired", "pending", "deliveries")
                                        else {}) for area in STATE_AREAS}
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
            raw = _serialise(area, state.get(area))
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


def _serialise(area: str, value: Any) -> str:
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


# --------------------------------------------------------------------------- watcher

def backoff_seconds(cfg: Config, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: doubles per failure, capped."""
    t = cfg.triggers
    return min(t.backoff_seconds * (2 ** max(attempt - 1, 0)), t.max_backoff_seconds)


class Watcher:
    """Evaluates the triggers of one model and runs the cycles they fire."""

    def __init__(self, cfg: Config, client: MlflowClient | None = None) -> None:
        self.cfg = cfg
        self.client = client or registry.connect(cfg)
        self.store = StateStore(self.client, cfg)
        self.stopping = threading.Event()   # first SIGTERM: finish the cycle, then stop
        self.busy = False                   # a cycle is running (a 2nd SIGTERM abandons it)
        self.deliveries: list[list[Any]] = []  # accepted webhook ids, saved with the state
        self._deliveries_lock = threading.Lock()

    def configured(self) -> list[str]:
        return [name for name in TRIGGERS if getattr(self.cfg.triggers, name) is not None]

    def seen_deliveries(self) -> list[list[Any]]:
        return list(self.store.load().get("deliveries") or [])

    def note_delivery(self, delivery_id: str, timestamp: int) -> None:
        with self._deliveries_lock:
            self.deliveries.append([delivery_id, timestamp])

    # -- one evaluation -------------------------------------------------------------
    def tick(self, now: datetime, only: set[str] | None = None,
             strict: bool = False) -> TickResult:
        """Evaluate the triggers (all, or `only` these) at `now` and run what fired.

        `strict` (``--once``): a trigger that cannot be evaluated (missing data, bad
        source) raises before anything is written; the daemon logs it and carries on.
        """
        result = TickResult(now)
        registry.repair(self.client, self.cfg)
        state = self.store.load()
        now_key = iso(now)
        fired_before = {entry.get("key") for entry in state["fired"]}
        fires: list[Fire] = []
        for name in self.configured():
            if only is not None and name not in only:
                continue
            try:
                found, area = self._check(name, state, now)
            except UserError as err:
                if strict:
                    raise
                log.error("trigger %s could not be evaluated: %s", name, err)
                continue
            except Exception:  # noqa: BLE001 - one broken trigger must not stop the others
                if strict:
                    raise
                log.exception("trigger %s failed", name)
                continue
            if found and f"{name}@{now_key}" in fired_before:
                # Fired at this very moment already (a rerun with the same --now): keep
                # the trigger's old state, so what it found now fires at the next moment.
                log.info("%s already fired at %s", name, now_key)
                continue
            state[name] = area
            fires.extend(found)
        for name in dict.fromkeys(f.trigger for f in fires):
            state["fired"].append({"key": f"{name}@{now_key}", "at": now_key,
                                   "events": [f.key for f in fires if f.trigger == name][:5]})
        result.fired.extend(fires)

        actions = self._plan(fires, state, now, only, result)
        self._drain_deliveries(state, now)
        self.store.save(state)  # before running: a crash now leaves pending entries
        for action in actions:
            if self.stopping.is_set():
                log.warning("stopping: %s cycle left pending for the next watch",
                            action["trigger"])
                break
            try:
                self._run(action, state, now, result)
            except Abandoned:
                result.abandoned = True
                break
        log.info("watch at %s: %d fired, %d cycle(s), %d failure(s)", now_key,
                 len(result.fired), len(result.cycles), len(result.failures))
        return result

    def _check(self, name: str, state: dict[str, Any],
               now: datetime) -> tuple[list[Fire], dict[str, Any]]:
        spec = getattr(self.cfg.triggers, name)
        area = dict(state.get(name) or {})
        if name == "schedule":
            fire, area = check_schedule(spec.cron, spec.timezone, area, now)
            return ([fire] if fire else []), area
        if name == "new_version":
            return check_new_versions(self.client, self.cfg, area)
        if name == "drift":
            fire, area = check_drift(self.client, self.cfg, area, now)
            return ([fire] if fire else []), area
        if name == "performance":
            fire, area = check_performance(self.client, self.cfg, area, now)
            return ([fire] if fire else []), area
        raise ValueError(name)

    def _plan(self, fires: list[Fire], state: dict[str, Any], now: datetime,
              only: set[str] | None, result: TickResult) -> list[dict[str, Any]]:
        """Pending entries for what fired and for failed cycles whose retry is due."""
        actions: list[dict[str, Any]] = []
        for fire in fires:
            if fire.trigger == "new_version":
                actions.append(self._pending("judge", fire.trigger, fire.reason, now,
                                             version=fire.version))
        retrains = sorted((f for f in fires if f.trigger in RETRAIN_PRIORITY),
                          key=lambda f: RETRAIN_PRIORITY.index(f.trigger))
        if retrains:
            reason = retrains[0].reason if len(retrains) == 1 else "; ".join(
                f"{f.trigger}: {f.reason}" for f in retrains)
            actions.append(self._pending("cycle", retrains[0].trigger, reason, now))
        # Retries of failed (or interrupted) cycles, in full evaluations only.
        if only is None:
            for entry in list(state["pending"]):
                if _parse_iso(entry["next_at"]) > now:
                    continue
                state["pending"].remove(entry)
                if entry["kind"] == "cycle" and retrains:
                    log.info("a new %s cycle replaces the retry of %s", retrains[0].trigger,
                             entry["trigger"])
                    continue
                entry = {**entry, "attempt": entry["attempt"] + 1,
                         "next_at": iso(now + timedelta(
                             seconds=backoff_seconds(self.cfg, entry["attempt"] + 1)))}
                actions.append(entry)
                result.fired.append(Fire(entry["trigger"],
                                         f"retry {entry['attempt']} of "
                                         f"{self.cfg.triggers.max_attempts}: {entry['reason']}",
                                         key=f"retry:{entry['id']}:{entry['attempt']}",
                                         version=entry.get("version")))
        state["pending"].extend(a for a in actions if a not in state["pending"])
        return actions

    def _pending(self, kind: str, trigger: str, reason: str, now: datetime,
                 version: str | None = None) -> dict[str, Any]:
        # next_at is the retry time should this process die mid-cycle.
        return {"id": uuid.uuid4().hex[:12], "kind": kind, "trigger": trigger,
                "reason": reason, "version": version, "attempt": 1, "fired_at": iso(now),
                "next_at": iso(now + timedelta(seconds=backoff_seconds(self.cfg, 1))),
                "error": None}

    def _drain_deliveries(self, state: dict[str, Any], now: datetime) -> None:
        with self._deliveries_lock:
            new, self.deliveries = self.deliveries, []
        if not new:
            return
        horizon = time.time() - 2 * WEBHOOK_TOLERANCE_SECONDS
        kept = [d for d in state["deliveries"] if d[1] >= horizon]
        state["deliveries"] = kept + new

    def _run(self, action: dict[str, Any], state: dict[str, Any], now: datetime,
             result: TickResult) -> None:
        from retrainer import cycle

        self.busy = True
        try:
            if action["kind"] == "judge":
                found = registry.current_champion(self.client, self.cfg.model,
                                                  self.cfg.promote.alias)
                if found and str(found[0].version) == str(action["version"]):
                    log.info("version %s is already the champion", action["version"])
                    record = None
                else:
                    record = cycle.judge_version(self.cfg, action["version"],
                                                 trigger=action["trigger"],
                                                 reason=action["reason"], client=self.client)
            else:
                record = cycle.run_cycle(self.cfg, trigger=action["trigger"],
                                         reason=action["reason"], client=self.client)
        except Abandoned:
            self.busy = False
            result.abandoned = True
            log.warning("abandoned the %s cycle in progress; it is retried after %s",
                        action["trigger"], action["next_at"])
            with contextlib.suppress(Exception):
                registry.record_event(self.client, self.cfg, "cycle_abandoned", {
                    "trigger": action["trigger"], "trigger_reason": action["reason"],
                    "reason": "SIGTERM while the cycle ran", "retry_at": action["next_at"]})
            raise
        except Exception as err:  # noqa: BLE001 - a failed cycle never kills the watcher
            self.busy = False
            self._failed(action, err, state, result)
            return
        self.busy = False
        if record is not None:
            result.cycles.append(record)
        state["pending"] = [p for p in state["pending"] if p["id"] != action["id"]]
        self.store.save(state)

    def _failed(self, action: dict[str, Any], err: Exception, state: dict[str, Any],
                result: TickResult) -> None:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if not isinstance(err, UserError):
            text = f"{type(err).__name__}: {text}"
        limit = self.cfg.triggers.max_attempts
        give_up = action["attempt"] >= limit
        state["pending"] = [p for p in state["pending"] if p["id"] != action["id"]]
        if not give_up:
            state["pending"].append({**action, "error": text})
        failure = {"trigger": action["trigger"], "trigger_reason": action["reason"],
                   "kind": action["kind"], "version": action.get("version"),
                   "error": text, "attempt": action["attempt"], "max_attempts": limit,
                   "retry_at": None if give_up else action["next_at"]}
        result.failures.append(failure)
        # Info only: the caller shows result.failures (the CLI prints them on stderr).
        log.info("%s cycle failed (attempt %d of %d): %s%s", action["trigger"],
                  action["attempt"], limit, text,
                  "; giving up" if give_up else f"; retry after {action['next_at']}")
        try:
            registry.record_event(self.client, self.cfg,
                                  "cycle_given_up" if give_up else "cycle_failed",
                                  {**failure, "decision": "failed", "reason": text},
                                  version=action.get("version"))
            self.store.save(state)
        except Exception:  # noqa: BLE001 - the store itself may be what failed
            log.exception("could not record the failure")


# --------------------------------------------------------------------------- locking

def watch_lock_path(cfg: Config) -> Any:
    path = registry.lock_path(cfg)
    return path.with_name(path.name.removesuffix(".lock") + ".watch.lock")


def watch_lock(cfg: Config) -> contextlib.AbstractContextManager[None]:
    """One watcher per model: a second one fails at once with a UserError (exit 2)."""
    busy = (f"another `retrainer watch` is already running for model {cfg.model!r} "
            "(one watcher per model)")
    target = cfg.promote.lock
    if target and target.startswith("postgres"):
        return locks.advisory_lock(target, f"retrainer-watch:{cfg.model}", 0, busy=busy)
    return locks.file_lock(watch_lock_path(cfg), 0, busy=busy)


# --------------------------------------------------------------------------- signals

@contextlib.contextmanager
def _graceful_signals(watcher: Watcher, wake: threading.Event | None = None) -> Iterator[None]:
    """First SIGTERM/SIGINT: finish the cycle in progress, then stop. Second: abandon it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: Any) -> None:
        if watcher.stopping.is_set() and watcher.busy:
            raise Abandoned()
        watcher.stopping.set()
        if wake is not None:
            wake.set()
        if watcher.busy:
            log.warning("%s: finishing the cycle in progress, then stopping (send it again "
                        "to abandon the cycle)", signal.Signals(signum).name)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- entry points

def watch_once(cfg: Config, now: datetime | None = None,
               client: MlflowClient | None = None) -> TickResult:
    """`retrainer watch --once`: one strict evaluation under the watch lock."""
    with watch_lock(cfg):
        watcher = Watcher(cfg, client)
        if not watcher.configured():
            log.warning("the config's `triggers` section is empty: nothing to watch")
        with _graceful_signals(watcher):
            return watcher.tick(now or utcnow(), strict=True)


def run_daemon(cfg: Config, *, interval: float = 60.0, now: datetime | None = None,
               webhook_port: int | None = None, webhook_host: str = "127.0.0.1",
               on_tick: Callable[[TickResult], None] | None = None,
               on_ready: Callable[[str | None], None] | None = None,
               client: MlflowClient | None = None) -> int:
    """`retrainer watch`: evaluate the triggers every `interval` seconds until SIGTERM.

    New versions are also polled every `triggers.new_version.poll_seconds`, and checked
    at once when a verified webhook delivery announces one. Returns the exit code.
    """
    secret = _webhook_secret(cfg) if webhook_port is not None else None
    with watch_lock(cfg):
        watcher = Watcher(cfg, client)
        if not watcher.configured():
            raise UserError("no triggers configured: add a `triggers` section to the config "
                            "(schedule, drift, new_version, performance)")
        wake = threading.Event()         # wakes the loop early: webhook or SIGTERM
        webhook_due = threading.Event()  # a verified delivery announced a new version
        server = None
        if webhook_port is not None and secret is not None:
            def announced(_payload: dict[str, Any]) -> None:
                webhook_due.set()
                wake.set()

            receiver = WebhookReceiver(cfg.model, secret, on_version=announced,
                                       on_accept=watcher.note_delivery,
                                       seen=watcher.seen_deliveries())
            server = WebhookServer(receiver, webhook_host, webhook_port)
            server.start()
        if on_ready:
            on_ready(server.url if server else None)
        poll = cfg.triggers.new_version.poll_seconds if cfg.triggers.new_version else None
        next_full = next_poll = time.monotonic()
        failures = 0
        try:
            with _graceful_signals(watcher, wake):
                while not watcher.stopping.is_set():
                    clock = time.monotonic()
                    full = clock >= next_full
                    check_versions = webhook_due.is_set() or (poll is not None
                                                              and clock >= next_poll)
                    webhook_due.clear()
                    if full or check_versions:
                        only = None if full else {"new_version"}
                        try:
                            result = watcher.tick(now or utcnow(), only=only)
                        except Exception:  # noqa: BLE001 - e.g. the store is down: back off
                            failures += 1
                            pause = min(cfg.triggers.backoff_seconds * 2 ** (failures - 1),
                                        cfg.triggers.max_backoff_seconds)
                            log.exception("watch evaluation failed; next try in %.0f s", pause)
                            next_full = next_poll = time.monotonic() + pause
                            wake.wait(pause)
                            wake.clear()
                            continue
                        failures = 0
                        if on_tick:
                            on_tick(result)
                        if result.abandoned:
                            break
                        if full:
                            next_full = time.monotonic() + interval
                        if poll is not None:
                            next_poll = time.monotonic() + poll
                    deadline = min(next_full, next_poll if poll is not None else next_full)
                    wake.wait(max(deadline - time.monotonic(), 0.0))
                    wake.clear()
        finally:
            if server is not None:
                server.stop()
    return 0


def _webhook_secret(cfg: Config) -> str:
    spec = cfg.triggers.new_version
    if spec is None or not spec.webhook_secret_env:
        raise UserError("--webhook-port needs triggers.new_version.webhook_secret_env: the "
                        "name of the environment variable holding the webhook's secret "
                        "(unsigned deliveries are always rejected)")
    secret = os.environ.get(spec.webhook_secret_env)
    if not secret:
        raise UserError(f"environment variable {spec.webhook_secret_env} (the webhook "
                        "secret) is not set")
    return secret


# --------------------------------------------------------------------------- webhooks

def sign(secret: str, delivery_id: str, timestamp: str, payload: str) -> str:
    """The signature header value MLflow sends: ``v1,`` + base64 HMAC-SHA256 of
    ``{delivery_id}.{timestamp}.{payload}`` (mlflow/webhooks/delivery.py)."""
    digest = hmac.new(secret.encode("utf-8"), f"{delivery_id}.{timestamp}.{payload}"
                      .encode(), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


@dataclass
class Verdict:
    status: int
    message: str
    payload: dict[str, Any] | None = None


class WebhookReceiver:
    """Verifies MLflow webhook deliveries; rejection changes nothing.

    Rejected with 401: no signature headers, a signature that does not match, a
    timestamp more than `tolerance` seconds from now (stale or replayed later), a
    delivery id already accepted (replayed).
    """

    def __init__(self, model: str, secret: str,
                 on_version: Callable[[dict[str, Any]], None],
                 on_accept: Callable[[str, int], None] | None = None,
                 seen: list[list[Any]] | None = None,
                 tolerance: float = WEBHOOK_TOLERANCE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.model, self._secret, self.tolerance, self.clock = model, secret, tolerance, clock
        self.on_version, self.on_accept = on_version, on_accept
        self._seen: dict[str, int] = {str(d[0]): int(d[1]) for d in (seen or [])}
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], body: bytes) -> Verdict:
        lower = {k.lower(): v for k, v in headers.items()}
        signature = lower.get(SIGNATURE_HEADER.lower())
        stamp = lower.get(TIMESTAMP_HEADER.lower())
        delivery = lower.get(DELIVERY_ID_HEADER.lower())
        if not signature or not stamp or not delivery:
            return Verdict(401, "unsigned delivery: the X-MLflow-Signature, X-MLflow-Timestamp "
                                "and X-MLflow-Delivery-Id headers are required")
        try:
            text = body.decode("utf-8")
            sent_at = int(stamp)
        except (UnicodeDecodeError, ValueError):
            return Verdict(401, "malformed delivery: bad timestamp or body encoding")
        expected = sign(self._secret, delivery, stamp, text)
        # Standard Webhooks allows several space-separated signatures (secret rotation).
        if not any(hmac.compare_digest(expected, s) for s in signature.split()):
            return Verdict(401, "bad signature")
        now = self.clock()
        if abs(now - sent_at) > self.tolerance:
            return Verdict(401, f"stale delivery: timestamp {sent_at} is more than "
                                f"{self.tolerance:.0f} s from now")
        with self._lock:
            horizon = now - 2 * self.tolerance
            self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
            if delivery in self._seen:
                return Verdict(401, f"replayed delivery {delivery}")
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                return Verdict(400, "the body is not JSON")
            self._seen[delivery] = sent_at
        if self.on_accept:
            self.on_accept(delivery, sent_at)
        return Verdict(200, "ok", payload if isinstance(payload, dict) else {})

    def handle(self, headers: Mapping[str, str], body: bytes) -> Verdict:
        """Verify, then act on ``model_version.created`` for this model only."""
        verdict = self.verify(headers, body)
        if verdict.status != 200 or verdict.payload is None:
            return verdict
        payload = verdict.payload
        data = payload.get("data") or {}
        if (payload.get("entity"), payload.get("action")) != ("model_version", "created") \
                or data.get("name") != self.model:
            return Verdict(200, "ignored: not a new version of " + self.model)
        log.info("webhook: version %s of %s registered", data.get("version"), self.model)
        self.on_version(payload)
        return Verdict(202, "accepted: checking new versions", payload)


class WebhookServer:
    """A small Starlette app on uvicorn in a background thread."""

    def __init__(self, receiver: WebhookReceiver, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        import socket

        self.receiver = receiver
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as err:
            self._sock.close()
            raise UserError(f"cannot listen for webhooks on {host}:{port}: {err.strerror}") \
                from None
        self._sock.listen(64)
        self.host, self.port = host, self._sock.getsockname()[1]
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{WEBHOOK_PATH}"

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        receiver = self.receiver

        async def deliver(request: Request) -> JSONResponse:
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > MAX_WEBHOOK_BODY:
                return JSONResponse({"error": "body too large"}, status_code=413)
            body = await request.body()
            if len(body) > MAX_WEBHOOK_BODY:
                return JSONResponse({"error": "body too large"}, status_code=413)
            verdict = receiver.handle(request.headers, body)
            if verdict.status >= 400:
                log.warning("webhook rejected (%d): %s", verdict.status, verdict.message)
                return JSONResponse({"error": verdict.message}, status_code=verdict.status)
            return JSONResponse({"status": verdict.message}, status_code=verdict.status)

        async def health(_request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok", "model": receiver.model})

        return Starlette(routes=[Route(WEBHOOK_PATH, deliver, methods=["POST"]),
                                 Route("/health", health, methods=["GET"])])

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.app(), log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]},
                                        name="retrainer-webhooks", daemon=True)
        self._thread.start()
        log.info("listening for MLflow webhooks on %s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self._sock.close()
