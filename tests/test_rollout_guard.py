"""Rollout decisions on real stores: automatic rollback, a crash mid-completion, one canary
at a time, finishing by hand, bad input; and the routing and guardrail rules themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import copy_project, edit_config, registry_snapshot
from registry_helpers import champion_state, run_all
from retrainer.history import model_history
from retrainer.rollout import guardrails as gr
from retrainer.rollout.routing import Router, sticky_bucket
from retrainer.triggers.daemon import watch_once
from rollout_helpers import (
    aliases,
    at,
    body,
    load_cfg,
    rows,
    running_canary,
    send,
    serving_app,
    version_tag,
    write_request_log,
)
from serving_helpers import ThreadServer, wait_for
from watch_helpers import MODEL, register_plain

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


def test_a_champion_clearly_worse_on_feedback_is_rolled_back_and_serving_follows(
        proj: Path) -> None:
    """A forced promotion of a poor model; labelled feedback rows show it; `watch --once`
    rolls back by itself and the server moves back to the previous version."""
    import httpx
    from sklearn.linear_model import Ridge

    from retrainer.cycle import judge_version

    pd.read_csv(proj / "data" / "diabetes.csv").to_csv(proj / "data" / "feedback.csv",
                                                        index=False)
    edit_config(proj, rollout={"guardrails": {
        "feedback": {"data": "data/feedback.csv", "max_degradation": 0.05}}})
    poor = register_plain(f"sqlite:///{proj / 'mlflow.db'}", Ridge(alpha=1000.0),
                          proj / "data" / "diabetes.csv", proj / "ds-artifacts")
    record = judge_version(load_cfg(proj), poor, force=True, reason="hotfix, no time to wait")
    assert record["decision"] == "promoted" and record["move"]["champion"] == poor
    one = [body(rows(proj).iloc[[0]])]
    with ThreadServer(serving_app(proj, canary_share=0.0)) as server:
        assert send(server.url, one) == [(200, poor)]
        doc = watch_once(load_cfg(proj)).to_json()
        wait_for(lambda: httpx.get(server.url + "/health").json()["version"] == "1")
        assert send(server.url, one) == [(200, "1")]

    [guard] = doc["rollout"]
    assert (guard["kind"], guard["version"], guard["previous"], guard["action"]) == \
        ("guard", poor, "1", "auto_rollback")
    assert "feedback mse on 442 labelled rows of data/feedback.csv" in guard["reason"]
    assert "clearly more than 5% worse" in guard["reason"]
    assert aliases(proj)["champion"] == "1" and aliases(proj)["previous"] == poor
    assert version_tag(proj, poor, "rollout") == "auto_rolled_back"
    entry = model_history(load_cfg(proj))["entries"][0]
    assert (entry["what"], entry["champion_before"], entry["champion_after"],
            entry["trigger"]) == ("auto_rollback", poor, "1", "guard")
    assert "clearly worse than previous" in entry["reason"]
    # Rolled back: nothing more to guard (a rollback is not a promotion).
    assert "rollout" not in watch_once(load_cfg(proj)).to_json()


def _ready_canary(project: Path) -> str:
    """Traffic enough to complete (written with the server's own writer): the canary's
    start time, as the registry holds it."""
    since = running_canary(project)["since"]
    answers = [("2", "canary", "ok", 2.0)] * 60 + [("1", "champion", "ok", 2.0)] * 140
    write_request_log(project, answers, at(since))
    return since


@pytest.mark.parametrize("steps", [("canary_completing", "champion_set")])
def test_a_watch_killed_mid_completion_leaves_one_champion_and_the_next_command_finishes(
        canary_session: Path, tmp_path: Path, steps: tuple[str, str]) -> None:
    projects = [copy_project(canary_session, tmp_path / step) for step in steps]
    now = at(_ready_canary(projects[0]), 61).isoformat()
    _ready_canary(projects[1])
    crashed, _ = run_all([(("watch", "--once", "--json", "--now", now), p,
                           {"RETRAINER_FAULT_AT": step}) for p, step in zip(projects, steps)])
    for step, project, res in zip(steps, projects, crashed):
        assert res.code == 17 and not res.stdout.strip(), (step, res.code, res.stderr[-500:])
        state = champion_state(f"sqlite:///{project / 'mlflow.db'}", MODEL)
        assert state["champion"] in ("1", "2"), (step, state)  # exactly one, old or new
    # Before the journal: champion still 1; mid-move: the promotion journal is there.
    assert champion_state(f"sqlite:///{projects[0] / 'mlflow.db'}", MODEL)["champion"] == "1"
    assert champion_state(f"sqlite:///{projects[1] / 'mlflow.db'}", MODEL)["journal"]

    finished, _ = run_all([(("status", "--json"), p, None) for p in projects])
    for step, project, res in zip(steps, projects, finished):
        assert res.code == 0, (step, res.stderr)
        doc = res.json()
        assert doc["champion"]["version"] == "2" and doc["previous"]["version"] == "1", step
        assert doc["canary"] is None and doc["journal"] is None, step
        assert "canary" not in aliases(project) and running_canary(project) is None
        assert version_tag(project, "2", "rollout") == "completed"
        whats = [e["what"] for e in model_history(load_cfg(project))["entries"]]
        assert whats.count("rollout_completed") == 1, (step, whats)
        completed = next(e for e in model_history(load_cfg(project))["entries"]
                         if e["what"] == "rollout_completed")
        assert "finished by a later command" in completed["reason"], completed


def test_one_canary_at_a_time_replaced_only_by_a_challenger_that_beats_it(
        canary_proj: Path) -> None:
    from retrainer.cycle import run_cycle

    same = run_cycle(load_cfg(canary_proj), trigger="schedule")  # retrained on the same rows
    assert same["decision"] == "kept_champion"
    assert "canary version 2 is running and this challenger does not beat it" in \
        same["reason"]
    assert running_canary(canary_proj)["version"] == "2"

    edit_config(canary_proj, train={"params": {"alpha": 0.1, "solver": "cholesky"}})
    better = run_cycle(load_cfg(canary_proj), trigger="schedule")
    new = better["challenger"]["version"]
    assert better["decision"] == "canary_started", better["reason"]
    assert "replaces canary version 2, which it beats" in better["reason"]
    assert better["rollout"]["replaced"] == "2"
    assert running_canary(canary_proj)["version"] == new
    assert aliases(canary_proj)["champion"] == "1"  # the champion never moved
    assert version_tag(canary_proj, "2", "rollout") == "replaced"


def test_a_canary_finished_by_hand_is_recorded_with_its_actor(canary_session: Path,
                                                                tmp_path: Path, cli) -> None:
    aborting = copy_project(canary_session, tmp_path / "abort")
    completing = copy_project(canary_session, tmp_path / "complete")
    _ready_canary(completing)
    res, _ = run_all([
        (("rollout", "abort", "--reason", "pager went off", "--actor", "alice", "--json"),
         aborting, None),
        (("rollout", "complete", "--reason", "looks fine", "--actor", "bob", "--json"),
         completing, None)])
    assert [r.code for r in res] == [0, 0], [r.stderr for r in res]
    assert res[0].json()["action"] == "aborted" and res[1].json()["action"] == "completed"
    assert "canary" not in aliases(aborting) and aliases(aborting)["champion"] == "1"
    assert aliases(completing)["champion"] == "2" and aliases(completing)["previous"] == "1"
    for project, what, who in ((aborting, "rollout_aborted", "alice"),
                               (completing, "rollout_completed", "bob")):
        entry = model_history(load_cfg(project))["entries"][0]
        assert (entry["what"], entry["actor"], entry["trigger"]) == (what, who, "manual")
        assert f"by hand by {who}" in entry["reason"]
    again = cli("rollout", "abort", "--reason", "twice", cwd=aborting)
    assert again.code == 2 and "has no canary running" in again.stderr


def test_completion_re_checks_against_a_champion_that_changed_during_the_canary(
        canary_proj: Path) -> None:
    """Version 3 was forced in while version 2 baked: completing judges 2 again, with
    the gate, against 3 (the champion of that moment), through the same locked move."""
    from sklearn.linear_model import Ridge

    from retrainer import cycle, registry
    from retrainer.rollout.lifecycle import finish_by_hand
    from retrainer.triggers.clock import utcnow

    poor = register_plain(f"sqlite:///{canary_proj / 'mlflow.db'}", Ridge(alpha=1000.0),
                          canary_proj / "data" / "diabetes.csv", canary_proj / "ds-artifacts")
    cfg = load_cfg(canary_proj)
    forced = cycle.judge_version(cfg, poor, force=True, reason="incident")
    assert forced["move"]["champion"] == poor  # --force is instant, even in canary mode
    assert running_canary(canary_proj)["champion"] == "1"  # judged against 1
    c = registry.connect(cfg)
    asked: list[tuple[str, str | None]] = []

    def rejudge(version: str, against: str | None) -> tuple[bool, str]:
        asked.append((version, against))
        return cycle.passes_gate(cfg, c, version, against)

    doc = finish_by_hand(c, cfg, "complete", "ship it", utcnow(), rejudge=rejudge)
    assert asked == [("2", poor)]
    assert doc["action"] == "completed" and doc["event"] == "rollout_completed"
    assert aliases(canary_proj)["champion"] == "2" and aliases(canary_proj)["previous"] == poor


BAD = {
    "share": ({"rollout": {"canary_share": 1.5}}, "rollout.canary_share"),
    "mode": ({"rollout": {"mode": "blue"}}, "rollout.mode"),
    "log": ({"rollout": {"mode": "canary"}}, "needs serve.inference_log"),
    "typo": ({"rollout": {"guardrails": {"max_model_error_rate_increse": 0.1}}},
             "did you mean 'max_model_error_rate_increase'"),
    "header": ({"rollout": {"sticky_header": "X User"}}, "not an HTTP header name"),
    "minutes": ({"rollout": {"bake_minutes": -1}}, "rollout.bake_minutes"),
}


def test_bad_input_exits_2_with_nothing_changed(proj: Path) -> None:
    import yaml

    from retrainer.config import load
    from retrainer.errors import UserError

    raw = yaml.safe_load((proj / "retrainer.yaml").read_text())
    for name, (change, expected) in BAD.items():
        (proj / f"{name}.yaml").write_text(yaml.safe_dump({**raw, **change}))
        with pytest.raises(UserError, match=re.escape(expected)):
            load(proj / f"{name}.yaml")
    before = registry_snapshot(proj)
    results, _ = run_all([(("rollout", "status", "-c", "share.yaml"), proj, None),
                          (("run", "-c", "log.yaml"), proj, None),
                          (("rollout", "complete", "--reason", "ship it"), proj, None),
                          (("rollout", "abort"), proj, None),
                          (("rollout", "status", "--json"), proj, None)])
    share, run_bad, complete, abort, status = results
    assert share.code == 2 and len(share.stderr.strip().splitlines()) == 1, share.stderr
    assert "rollout.canary_share" in share.stderr
    assert run_bad.code == 2 and "needs serve.inference_log" in run_bad.stderr
    assert complete.code == 2 and "has no canary running: nothing to complete" in \
        complete.stderr
    assert abort.code == 2 and "needs --reason" in abort.stderr
    assert status.code == 0 and status.json()["canary"] is None
    assert registry_snapshot(proj) == before


# ----------------------------------------------------------------------------- the rules

def test_routing_draws_the_share_and_a_sticky_key_always_lands_on_one_side() -> None:
    router = Router(0.3)
    draws = sum(router.to_canary([], "7") for _ in range(20000))
    assert 0.28 < draws / 20000 < 0.32
    sticky, again = Router(0.3, "X-User-Id"), Router(0.3, "x-user-id")  # another process
    keys = [f"user-{i}".encode() for i in range(4000)]
    sides = [sticky.to_canary([(b"x-user-id", k)], "7") for k in keys]
    assert sides == [again.to_canary([(b"x-user-id", k)], "7") for k in keys]
    assert 0.27 < sum(sides) / len(keys) < 0.33
    # Keyed by the canary's version: the next canary picks another set of users.
    assert sides != [sticky_bucket("8", k) < int(0.3 * 2**64) for k in keys]


def _traffic(label: str, scored: int, errors: int, latency_ms: float = 2.0) -> gr.Traffic:
    return gr.Traffic(label, scored, scored, errors, 0, np.full(scored - errors, latency_ms))


def test_guardrails_trip_only_on_clear_evidence() -> None:
    champion = _traffic("champion", 420, 0)
    broken = gr.model_error_rate(_traffic("canary", 180, 36), champion, 0.01)
    assert broken.state == gr.TRIPPED and "20.0% (36 of 180)" in broken.detail
    unlucky = gr.model_error_rate(_traffic("canary", 50, 1), champion, 0.01)
    assert unlucky.state == gr.UNCLEAR  # one error in fifty: above 1%, not clearly yet
    fine = gr.model_error_rate(_traffic("canary", 180, 0), champion, 0.01)
    assert fine.state == gr.HOLDING
    assert gr.model_error_rate(_traffic("canary", 0, 0), champion, 0.01).state == gr.WAITING

    slow = gr.latency_p99_ratio(_traffic("canary", 200, 0, 9.0), champion, 1.5, 500)
    assert slow.state == gr.TRIPPED and "ratio 4.50 > 1.5 allowed" in slow.detail
    few = gr.latency_p99_ratio(_traffic("canary", 20, 0, 9.0), champion, 1.5, 500)
    assert few.state == gr.WAITING  # 20 answers: no p99 to speak of

    rng = np.random.default_rng(0)
    base = rng.normal(150, 50, 2000)
    assert gr.prediction_psi(rng.normal(150, 50, 500), base, 0.1, "c", "b").state == \
        gr.HOLDING
    assert gr.prediction_psi(rng.normal(190, 50, 500), base, 0.1, "c", "b").state == \
        gr.TRIPPED
