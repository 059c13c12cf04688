"""Judging a rollout each time `watch` evaluates: a running canary, and a new champion.

- A running canary is judged on the inference log's window from its start to *now*
  (every server's traffic) and, with `guardrails.feedback`, on labelled rows. A tripped
  guardrail aborts it; after `bake_minutes` and `min_requests` with every guardrail
  holding it completes through the journaled, locked champion move (re-checked against
  the champion of that moment when it changed meanwhile). Otherwise it keeps baking.
- For `guard_after_promotion_minutes` after a promotion (instant, or a completed
  canary), the champion is compared with `previous`: labelled feedback rows scored
  offline by both, and its live model-error rate and latency against `previous`'s last
  window before the promotion. A tripped guardrail rolls back (`auto_rollback`).

Nothing here is kept in memory between evaluations: the canary is the registry's alias
and tag, the traffic is the inference log, and *now* is injected (`watch --now`), so any
process reaches the same decision from the same files.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrainer import registry
from retrainer.errors import UserError, require_reason
from retrainer.rollout import guardrails as gr
from retrainer.rollout.logs import parse_time, read_predictions, read_requests

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

log = logging.getLogger("retrainer")

#: rejudge(version, against) -> (passes, why): the gate, for a re-check at completion.
Rejudge = Callable[[str, str | None], tuple[bool, str]]
#: The history event (and notification) of each action a judgement can take.
EVENTS = {"aborted": "rollout_aborted", "completed": "rollout_completed",
          "auto_rollback": "auto_rollback"}
#: Moves after which the guard does not watch (it was a step back, not forward).
_NOT_PROMOTIONS = {"rollback", "auto_rollback"}


@dataclass
class View:
    """A rollout judged at `now`: the lines, and what they lead to."""

    kind: str  # canary | guard
    version: str  # the canary, or the new champion
    baseline: str | None  # the champion, or previous
    since: datetime
    now: datetime
    lines: list[gr.Line] = field(default_factory=list)
    traffic: dict[str, Any] = field(default_factory=dict)
    waiting_for: list[str] = field(default_factory=list)
    until: datetime | None = None  # end of the bake (canary) or of the guard
    canary: dict[str, Any] = field(default_factory=dict)

    @property
    def tripped(self) -> list[gr.Line]:
        return [line for line in self.lines if line.state == gr.TRIPPED]

    @property
    def ready(self) -> bool:
        return not self.tripped and not self.waiting_for

    def public(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": self.kind, "version": self.version,
            ("champion" if self.kind == "canary" else "previous"): self.baseline,
            "since": self.since.isoformat(timespec="seconds"),
            "now": self.now.isoformat(timespec="seconds"),
            ("bake_until" if self.kind == "canary" else "guard_until"):
                self.until.isoformat(timespec="seconds") if self.until else None,
            "requests": self.traffic,
            "guardrails": [line.public() for line in self.lines],
        }
        if self.kind == "canary":
            doc.update(share=self.canary.get("share"),
                       sticky_header=self.canary.get("sticky_header"),
                       replaced=self.canary.get("replaced"), waiting_for=self.waiting_for,
                       ready=self.ready)
        return doc

    def evidence(self) -> dict[str, Any]:
        """What a record keeps, so the decision can be recomputed from the same log."""
        return {"window": {"from": self.since.isoformat(), "to": self.now.isoformat()},
                "requests": self.traffic,
                "guardrails": [line.public() for line in self.lines]}


def _log_dir(cfg: Config) -> str | None:
    return cfg.resolve_path(cfg.serve.inference_log) if cfg.serve.inference_log else None


def _champion(client: MlflowClient, cfg: Config) -> str | None:
    found = registry.current_champion(client, cfg.model, cfg.promote.alias)
    return str(found[0].version) if found else None


def _live_lines(cfg: Config, new: gr.Traffic, base: gr.Traffic) -> list[gr.Line]:
    g, lines = cfg.rollout.guardrails, []
    if g.max_model_error_rate_increase is not None:
        lines.append(gr.model_error_rate(new, base, g.max_model_error_rate_increase))
    if g.max_latency_p99_ratio is not None:
        lines.append(gr.latency_p99_ratio(new, base, g.max_latency_p99_ratio,
                                          cfg.rollout.min_requests))
    return lines


def _feedback(cfg: Config, client: MlflowClient, new: str, base: str, since: datetime,
              labels: tuple[str, str]) -> list[gr.Line]:
    spec = cfg.rollout.guardrails.feedback
    if spec is None:
        return []
    from retrainer.rollout.feedback import feedback_line

    return [feedback_line(cfg, client, spec, new, base, since, *labels)]


# --------------------------------------------------------------------------- the canary

def judge_canary(client: MlflowClient, cfg: Config, canary: dict[str, Any],
                 now: datetime) -> View:
    """Every guardrail of the running `canary` on the window [since, now]."""
    version, since = str(canary["version"]), parse_time(canary["since"])
    champion = _champion(client, cfg)
    ro = cfg.rollout
    view = View("canary", version, champion, since, now, canary=canary,
                until=since + timedelta(minutes=ro.bake_minutes))
    labels = (f"canary version {version}", f"champion version {champion}")
    folder = _log_dir(cfg)
    if folder is None:  # config validation requires it in canary mode; a hand-set alias
        view.waiting_for.append("serve.inference_log is not set: no request log to judge")
        return view
    frame = read_requests(folder, since, now)
    new = gr.traffic(frame, version, "canary", labels[0])
    base = gr.traffic(frame, champion, "champion", labels[1])
    view.traffic = {"canary": new.public(), "champion": base.public()}
    view.lines = _live_lines(cfg, new, base)
    if ro.guardrails.max_prediction_psi is not None:
        rows = read_predictions(folder, since, now)
        view.lines.append(gr.prediction_psi(
            gr.numeric_predictions(rows, version), gr.numeric_predictions(rows, champion),
            ro.guardrails.max_prediction_psi, *labels))
    if champion is not None:
        view.lines += _feedback(cfg, client, version, champion, since, labels)
    if view.until is not None and now < view.until:
        left = (view.until - now).total_seconds() / 60
        view.waiting_for.append(f"the bake: {left:.1f} of {ro.bake_minutes:g} min left")
    if new.scored < ro.min_requests:
        view.waiting_for.append(f"{ro.min_requests - new.scored} more canary requests "
                                f"({new.scored} of {ro.min_requests})")
    view.waiting_for += [line.detail for line in view.lines
                         if line.state in (gr.WAITING, gr.UNCLEAR)]
    return view


def _abort(client: MlflowClient, cfg: Config, view: View, reason: str,
           trigger: str) -> dict[str, Any]:
    return registry.abort_canary(client, cfg, view.version, reason, view.evidence(),
                                 trigger=trigger, decision_id=uuid.uuid4().hex[:12])


def _complete(client: MlflowClient, cfg: Config, view: View, reason: str, trigger: str,
              rejudge: Rejudge | None) -> tuple[Any, str | None]:
    def recheck(current: str | None) -> bool:
        return rejudge is not None and rejudge(view.version, current)[0]

    return registry.complete_canary(client, cfg, view.version, reason, view.evidence(),
                                    recheck=recheck, trigger=trigger,
                                    decision_id=uuid.uuid4().hex[:12])


def advance_canary(client: MlflowClient, cfg: Config, now: datetime,
                   rejudge: Rejudge | None = None) -> dict[str, Any] | None:
    """Judge the running canary and act: abort, complete, or keep baking."""
    canary = registry.read_canary(client, cfg.model)
    if canary is None:
        return None
    view = judge_canary(client, cfg, canary, now)
    doc = view.public()
    try:
        if view.tripped:
            reason = "guardrail tripped: " + "; ".join(line.detail for line in view.tripped)
            _abort(client, cfg, view, reason, trigger="guardrail")
            doc.update(action="aborted", reason=reason)
        elif view.ready:
            passing = "; ".join(line.detail for line in view.lines) or "no guardrails set"
            reason = (f"baked {(now - view.since).total_seconds() / 60:.0f} min with "
                      f"{view.traffic['canary']['scored']} canary requests, every guardrail "
                      f"holding: {passing}")
            move, why = _complete(client, cfg, view, reason, "rollout", rejudge)
            doc.update(action="completed" if move else "aborted",
                       reason=reason if move else why)
        else:
            doc.update(action="baking", reason="waiting for " + "; ".join(view.waiting_for))
    except UserError as err:  # someone finished or replaced it while this one judged
        doc.update(action="baking", reason=f"not acted on: {err}")
    return doc


def finish_by_hand(client: MlflowClient, cfg: Config, action: str, reason: str,
                   now: datetime, rejudge: Rejudge | None = None) -> dict[str, Any]:
    """`rollout complete|abort --reason`: a person decides; the guardrails of that moment
    are recorded beside the reason. Complete still re-checks a champion that changed."""
    from retrainer.stamp import actor

    require_reason(reason, f"rollout {action} needs --reason: say why")
    registry.repair(client, cfg)
    canary = registry.read_canary(client, cfg.model)
    if canary is None:
        raise UserError(f"model {cfg.model!r} has no canary running: nothing to {action}")
    view = judge_canary(client, cfg, canary, now)
    done = "aborted" if action == "abort" else "completed"
    text = f"{done} by hand by {actor()}: {reason.strip()}"
    doc = view.public()
    if action == "abort":
        _abort(client, cfg, view, text, trigger="manual")
        doc.update(action="aborted", reason=text)
        return _announce(client, cfg, _named(doc))
    move, why = _complete(client, cfg, view, text, "manual", rejudge)
    doc.update(action="completed" if move else "aborted", reason=text if move else why)
    return _announce(client, cfg, _named(doc))


# --------------------------------------------------------------------------- the guard

def judge_guard(client: MlflowClient, cfg: Config, now: datetime) -> View | None:
    """The champion against `previous`, within `guard_after_promotion_minutes` of its
    promotion; None when there is nothing to guard (or nothing to guard it with)."""
    ro = cfg.rollout
    g, folder = ro.guardrails, _log_dir(cfg)
    live = folder is not None and (g.max_model_error_rate_increase is not None
                                   or g.max_latency_p99_ratio is not None)
    if ro.guard_after_promotion_minutes <= 0 or not (live or g.feedback is not None):
        return None
    champion = _champion(client, cfg)
    previous = registry.aliases(client, cfg.model).get(registry.PREVIOUS)
    if champion is None or previous is None or previous == champion:
        return None
    tags = registry.get_version(client, cfg.model, champion).tags or {}
    since_text = tags.get(f"{registry.PREFIX}champion_since")
    if not since_text or tags.get(f"{registry.PREFIX}promoted_by") in _NOT_PROMOTIONS:
        return None
    since = parse_time(since_text)
    until = since + timedelta(minutes=ro.guard_after_promotion_minutes)
    if not since <= now <= until:
        return None
    view = View("guard", champion, previous, since, now, until=until)
    labels = (f"champion version {champion}", f"previous version {previous}")
    if live:
        assert folder is not None
        span = timedelta(minutes=ro.bake_minutes or 60)
        after = read_requests(folder, max(since, now - span), now)
        before = read_requests(folder, since - span, since)
        new = gr.traffic(after, champion, "champion", labels[0])
        base = gr.traffic(before, previous, "champion", labels[1])
        view.traffic = {"champion": new.public(), "previous": base.public()}
        view.lines = _live_lines(cfg, new, base)
    view.lines += _feedback(cfg, client, champion, previous, since, labels)
    return view


def guard_promotion(client: MlflowClient, cfg: Config, now: datetime) -> dict[str, Any] | None:
    """Judge the champion against `previous` and roll back on a clear degradation."""
    view = judge_guard(client, cfg, now)
    if view is None:
        return None
    doc = view.public()
    if not view.tripped:
        doc.update(action="watching", reason="no guardrail tripped: " + "; ".join(
            line.detail for line in view.lines))
        return doc
    reason = ("champion clearly worse than previous after its promotion: "
              + "; ".join(line.detail for line in view.tripped))
    move = registry.auto_rollback(client, cfg, view.version, str(view.baseline), reason,
                                  view.evidence(), decision_id=uuid.uuid4().hex[:12])
    doc.update(action="auto_rollback" if move else "watching",
               reason=reason if move else "the registry moved meanwhile: not rolled back")
    return doc


# --------------------------------------------------------------------------- entry points

def _named(doc: dict[str, Any]) -> dict[str, Any]:
    """`event`: the history event an action recorded (what notifications are keyed by)."""
    if doc["action"] in EVENTS:
        doc["event"] = EVENTS[doc["action"]]
    return doc


def _announce(client: MlflowClient, cfg: Config, doc: dict[str, Any]) -> dict[str, Any]:
    """Tell the team about a recorded rollout event (off the critical path)."""
    from retrainer import notify

    if doc.get("event"):
        payload = {"model": cfg.model, "decision": doc["event"], **doc}
        if doc["event"] == "auto_rollback":  # the guarded champion went back to `previous`
            payload.update(champion=doc.get("previous"), previous=doc.get("version"))
        notify.send(cfg, doc["event"], payload, client=client)
    return doc


def evaluate(client: MlflowClient, cfg: Config, now: datetime,
             rejudge: Rejudge | None = None) -> list[dict[str, Any]]:
    """One evaluation (what `watch` runs before its triggers): the canary, then the guard."""
    out = []
    registry.repair(client, cfg)
    for step in (lambda: advance_canary(client, cfg, now, rejudge),
                 lambda: guard_promotion(client, cfg, now)):
        doc = step()
        if doc is not None:
            out.append(_announce(client, cfg, _named(doc)))
            if doc["action"] not in ("baking", "watching"):
                level = logging.INFO if doc["action"] == "completed" else logging.WARNING
                log.log(level, "%s %s: %s — %s", doc["kind"], doc["version"], doc["action"],
                        doc["reason"])
    return out


def rollout_status(client: MlflowClient, cfg: Config, now: datetime) -> dict[str, Any]:
    """`retrainer rollout status`: the running canary and the guard, judged now."""
    repaired = registry.repair(client, cfg)
    canary = registry.read_canary(client, cfg.model)
    guard = judge_guard(client, cfg, now)
    return {"model": cfg.model, "mode": cfg.rollout.mode, "repaired": repaired is not None,
            "canary": judge_canary(client, cfg, canary, now).public() if canary else None,
            "guard": guard.public() if guard else None}
