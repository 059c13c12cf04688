"""The watcher: one evaluation of a model's triggers at an injected moment, and its cycles.

`Watcher.tick(now)` first judges a running canary and the guard after a promotion
(`retrainer.rollout.lifecycle`), then checks the configured triggers, plans what to run
(one judgement per new version, one retrain however many retrain triggers fired, retries
that are due), saves the state *before* running, then runs. A failed cycle is recorded
and retried with backoff until `triggers.max_attempts`; a crash mid-cycle leaves it
pending, so the next tick after the backoff runs it again (a cycle that kills its process
cannot loop hot).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrainer import notify, registry
from retrainer.errors import UserError
from retrainer.triggers.clock import iso, parse_iso
from retrainer.triggers.drift import check_drift
from retrainer.triggers.fire import Fire
from retrainer.triggers.new_version import check_new_versions
from retrainer.triggers.performance import check_performance
from retrainer.triggers.schedule import check_schedule
from retrainer.triggers.state import StateStore
from retrainer.triggers.webhooks import WEBHOOK_TOLERANCE_SECONDS

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

log = logging.getLogger("retrainer")

#: Evaluation order; new versions are judged before any retrain so that a better
#: model a data scientist registered becomes the champion the retrain is judged against.
TRIGGERS = ("new_version", "drift", "performance", "schedule")
#: When several retrain triggers fire together they run one cycle, named after the first.
RETRAIN_PRIORITY = ("drift", "performance", "schedule")


@dataclass
class TickResult:
    """What one evaluation did. `to_json` is the `watch --once --json` document."""

    now: datetime
    fired: list[Fire] = field(default_factory=list)
    cycles: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    abandoned: bool = False
    rollout: list[dict[str, Any]] = field(default_factory=list)  # canary / guard judgements

    def to_json(self) -> dict[str, Any]:
        doc = {"fired": [f.public() for f in self.fired], "cycles": self.cycles}
        if self.rollout:  # only while a canary runs or a new champion is guarded
            doc["rollout"] = self.rollout
        return doc

    @property
    def rollout_acted(self) -> bool:
        return any(r["action"] not in ("baking", "watching") for r in self.rollout)


class Abandoned(BaseException):
    """Raised by a second SIGTERM to abandon the cycle in progress.

    A BaseException so that the cycle's own `except Exception` handlers do not swallow it;
    `with` blocks still unwind (the MLflow run is marked failed, locks are released) and
    a half-done promotion is finished by the next command from its journal.
    """


def backoff_seconds(cfg: Config, attempt: int) -> float:
    """Delay after failed attempt `attempt`: `backoff_seconds`, doubling per attempt, capped."""
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

    def watches_rollout(self) -> bool:
        """Canary mode, or a guard after promotion that has something to judge with."""
        ro = self.cfg.rollout
        return ro.mode == "canary" or (ro.guard_after_promotion_minutes > 0 and bool(
            self.cfg.serve.inference_log or ro.guardrails.feedback))

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
        if only is None:
            result.rollout = self._rollout(now, strict)
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
        for fire in fires:  # drift is recorded in the watch state: now tell people
            if fire.trigger == "drift":
                notify.send(self.cfg, "drift", {"reason": fire.reason, "trigger": "drift",
                                                "version": state["drift"].get("champion")},
                            client=self.client)
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

    def _rollout(self, now: datetime, strict: bool) -> list[dict[str, Any]]:
        """Judge a running canary (abort / complete) and guard a new champion."""
        from retrainer import cycle
        from retrainer.rollout.lifecycle import evaluate

        def rejudge(version: str, against: str | None) -> tuple[bool, str]:
            return cycle.passes_gate(self.cfg, self.client, version, against)

        try:
            return evaluate(self.client, self.cfg, now, rejudge)
        except Exception:  # noqa: BLE001 - the daemon outlives a failed rollout judgement
            if strict:
                raise
            log.exception("the rollout could not be judged")
            return []

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
                if parse_iso(entry["next_at"]) > now:
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
                elif registry.is_pending(self.client, self.cfg, action["version"]):
                    # a version awaiting approval waits for a person, not a re-judge
                    log.info("version %s is awaiting approval", action["version"])
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
        notify.send(self.cfg, "cycle_failed", {**failure, "given_up": give_up},
                    client=self.client)
