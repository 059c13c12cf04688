"""Starting a canary: in `rollout.mode: canary` a challenger that passes the gate gets the
`canary` alias instead of `champion`.

`cycle.promote_and_record` calls `start_canary` where it would promote; so does anything
else that decides a version should go live (e.g. an approval). One canary at a time per
model: a new passing challenger replaces a running canary only when it beats it with the
same gate (`beats_canary`), and the decision's reason says so either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrainer import registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

CANARY_STARTED = "canary_started"
KEPT = "kept_champion"  # as gate.KEPT: the champion stays, and so does a running canary


@dataclass
class Started:
    """What `start_canary` decided: `decision` (canary_started or kept_champion), why, and
    the canary's record (version, champion, since, share, replaced) when it started."""

    started: bool
    decision: str
    reason: str
    canary: dict[str, Any] | None = None
    replaced: str | None = None


def wanted(cfg: Config, has_champion: bool, force: bool = False) -> bool:
    """Whether a passing challenger starts a canary: canary mode, a champion to run beside
    (the first champion is promoted at once) and not forced (`--force` is instant)."""
    return cfg.rollout.mode == "canary" and has_champion and not force


def start_canary(cfg: Config, client: MlflowClient, version: str, *,
                 judged_against: str | None, gate_reason: str = "",
                 recheck: Callable[[str | None], bool] | None = None,
                 beats_canary: Callable[[str], tuple[bool, str]] | None = None,
                 decision_id: str | None = None, reason: str | None = None,
                 trigger: str | None = None) -> Started:
    """Make `version` (judged against champion `judged_against`) the canary.

    Under the promotion lock: if the champion changed since the judgement, `recheck`
    judges again against the champion of that moment (without one, nothing starts); a
    running canary is replaced only if `beats_canary(canary_version)` returns (True, why).
    `gate_reason` (the gate's line) starts the decision's reason. Returns the decision;
    nothing is written when the canary does not start.
    """
    outcome = registry.start_canary(
        client, cfg, str(version), judged_against=judged_against, recheck=recheck,
        beats_canary=beats_canary, decision_id=decision_id, reason=reason, trigger=trigger)
    lead = f"{gate_reason}; " if gate_reason else ""
    if not outcome.started:
        return Started(False, KEPT, f"{lead}passed the gate, but no canary started: "
                                    f"{outcome.why}")
    ro = cfg.rollout
    canary = outcome.canary or {}
    how = f" by a hash of {ro.sticky_header}" if ro.sticky_header else ""
    text = (f"{lead}canary: version {version} answers {ro.canary_share:.0%} of requests{how} "
            f"beside champion {canary.get('champion')} from {canary.get('since')}; it "
            f"completes after {ro.bake_minutes:g} min and {ro.min_requests} requests with "
            "every guardrail holding")
    if outcome.replaced:
        text += f"; replaces canary version {outcome.replaced}, which it beats"
    return Started(True, CANARY_STARTED, text, canary, outcome.replaced)
