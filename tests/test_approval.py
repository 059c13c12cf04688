"""Human approval before promotion (`promote.approval: required`), on real stores.

The commands under test run through the CLI in subprocesses; set-ups that are not under
test run in-process. A real HTTP receiver on loopback checks what people are told.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from conftest import edit_config, registry_snapshot
from notify_helpers import Receiver
from registry_helpers import champion_state, history_here, load_cfg, run_cycle_here
from retrainer import notify
from watch_helpers import MODEL, copy_project, register_plain

# `watch_champion`: the article's version 1 as champion, made once per session.

SECRET = "whsec-approval-test-4f1c"


@pytest.fixture
def proj(watch_champion: Path, tmp_path: Path) -> Path:
    """A private copy of the champion project, with approval required."""
    project = copy_project(watch_champion, tmp_path / "proj")
    edit_config(project, promote={"approval": "required"})
    return project


def _uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


def _version_tags(project: Path, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=_uri(project), registry_uri=_uri(project))
    return dict(client.get_model_version(MODEL, version).tags)


def _aliases(project: Path) -> dict[str, str]:
    return registry_snapshot(project)["aliases"]


def test_a_passing_challenger_waits_for_approval_and_approve_promotes_it(proj: Path,
                                                                          cli) -> None:
    env = {"HOOK_SECRET": SECRET}
    with Receiver() as rx:
        edit_config(proj, notify=[{"url": rx.url, "secret_env": "HOOK_SECRET",
                                   "events": ["awaiting_approval", "approved", "promoted"]}])
        run = cli("run", "--json", cwd=proj, env=env)
        assert run.code == 0, run.stderr
        record = run.json()
        assert record["decision"] == "awaiting_approval"
        assert record["reason"].startswith("awaiting approval: the difference is within noise")
        assert "rmse 56.31 beats champion 56.44" in record["reason"]
        assert all(check["passed"] for check in record["checks"])
        assert record["move"] is None
        approval = record["approval"]
        assert (approval["status"], approval["would_be"], approval["judged_against"]) == \
            ("pending", "promoted", "1")
        # Not promoted: champion stays, the candidate is the challenger, tagged pending.
        assert champion_state(_uri(proj), MODEL)["champion"] == "1"
        assert _aliases(proj)["challenger"] == "2" and "previous" not in _aliases(proj)
        tags = _version_tags(proj, "2")
        assert tags["retrainer.approval"] == "pending"
        assert tags["retrainer.decision"] == "awaiting_approval"
        assert tags["retrainer.approval_judged_against"] == "1"

        status = cli("status", "--json", cwd=proj)
        assert status.code == 0, status.stderr
        [pending] = status.json()["pending_approvals"]
        assert (pending["version"], pending["judged_against"]) == ("2", "1")
        assert 0 <= pending["age_seconds"] < 600 and pending["age"]
        assert pending["summary"].startswith(
            "mse 3171.03 vs champion 3185.98 on 67 clean holdout rows, difference -14.96 "
            "(95% CI ")
        human = cli("status", cwd=proj, env={"COLUMNS": "200"})
        assert "awaiting approval: version 2 (beat champion 1; waiting" in human.stdout

        # The CLI waited for its notification before exiting: it is already here.
        [asked] = rx.deliveries
        assert asked.headers["X-Retrainer-Event"] == "awaiting_approval"
        assert notify.verify(SECRET, asked.headers, asked.body)
        body = asked.json()
        assert body["record"] == record and body["version"] == "2"
        assert "version 2 passed the gate and awaits approval (champion: 1)" in body["text"]
        assert "95% CI" in body["text"] and "retrainer approve 2" in body["text"]

        approve = cli("approve", "2", "--reason", "reviewed the slices", "--actor", "alice",
                      "--json", cwd=proj, env=env)
        assert approve.code == 0, approve.stderr
        doc = approve.json()
        assert (doc["event"], doc["decision"], doc["version"]) == ("approved", "promoted", "2")
        assert (doc["champion_before"], doc["champion_after"]) == ("1", "2")
        assert doc["actor"] == "alice" and doc["reason"] == "reviewed the slices"
        assert doc["recheck"] is None and doc["waited_seconds"] >= 0

        state = champion_state(_uri(proj), MODEL)
        assert (state["champion"], state["previous"], state["journal"]) == ("2", "1", None)
        tags = _version_tags(proj, "2")
        assert (tags["retrainer.approval"], tags["retrainer.approval_by"],
                tags["retrainer.decision"]) == ("approved", "alice", "promoted")
        assert tags["retrainer.champion_since"]

        entries = history_here(proj)
        newest = entries[0]
        assert (newest["what"], newest["decision"], newest["actor"]) == \
            ("approved", "promoted", "alice")
        assert newest["alias_moved"] and newest["reason"] == "reviewed the slices"
        assert (newest["champion_before"], newest["champion_after"]) == ("1", "2")
        assert entries[1]["what"] == "awaiting_approval" and entries[1]["version"] == "2"
        assert cli("status", "--json", cwd=proj).json()["pending_approvals"] == []

        approved = rx.deliveries[1]
        assert approved.headers["X-Retrainer-Event"] == "approved"
        assert notify.verify(SECRET, approved.headers, approved.body)
        text = approved.json()["text"]
        assert "alice approved version 2: now champion (was 1)" in text
        assert "reason: reviewed the slices" in text and len(rx.deliveries) == 2


def test_reject_declines_the_version_and_it_cannot_be_approved_afterwards(proj: Path,
                                                                          cli) -> None:
    assert run_cycle_here(proj)["decision"] == "awaiting_approval"
    reject = cli("reject", "v2", "--reason", "drops recall for the new clinic", "--actor",
                 "bob", "--json", cwd=proj)
    assert reject.code == 0, reject.stderr
    doc = reject.json()
    assert (doc["event"], doc["version"], doc["actor"]) == ("rejected", "2", "bob")
    assert doc["challenger_alias_removed"] is True

    assert champion_state(_uri(proj), MODEL)["champion"] == "1"
    assert "challenger" not in _aliases(proj)  # serving no longer shadows it
    tags = _version_tags(proj, "2")
    assert (tags["retrainer.approval"], tags["retrainer.decision"]) == ("rejected", "rejected")
    newest = history_here(proj)[0]
    assert (newest["what"], newest["version"], newest["actor"]) == ("rejected", "2", "bob")
    assert newest["reason"] == "drops recall for the new clinic"
    assert not newest["alias_moved"]

    before = registry_snapshot(proj)
    again = cli("approve", "2", "--reason", "changed my mind", cwd=proj)
    assert again.code == 2
    assert again.stderr.strip() == ("error: version 2 of 'diabetes-ridge' is not awaiting "
                                    "approval: bob rejected it at " + tags[
                                        "retrainer.approval_at"])
    assert registry_snapshot(proj) == before


def test_bad_approvals_exit_2_and_change_nothing(proj: Path, cli) -> None:
    week_ago = str(proj / "data" / "week_ago.csv")
    assert run_cycle_here(proj, data=week_ago)["decision"] == "kept_champion"  # version 2
    assert run_cycle_here(proj)["decision"] == "awaiting_approval"  # version 3
    before = registry_snapshot(proj)
    n_history = len(history_here(proj))

    refusals = {
        ("approve", "3"): "approve needs --reason",
        ("approve", "2", "--reason", "x"): "cannot approve version 2 of 'diabetes-ridge': the "
                                           "gate did not pass it (kept_champion)",
        ("approve", "1", "--reason", "x"): "is not awaiting approval (its decision: "
                                           "first_champion)",
        ("approve", "9", "--reason", "x"): "has no version 9",
        ("approve", "three", "--reason", "x"): "not a model version: 'three'",
        ("reject", "2", "--reason", "x"): "gate did not pass it",
        ("reject", "3", "--reason", " "): "reject needs --reason",
        ("promote", "3"): "version 3 of 'diabetes-ridge' is awaiting approval",
    }
    for args, expected in refusals.items():
        result = cli(*args, cwd=proj)
        assert result.code == 2, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert registry_snapshot(proj) == before
    assert len(history_here(proj)) == n_history


def test_approval_rechecks_against_a_champion_that_changed_meanwhile(proj: Path, cli) -> None:
    from retrainer.governance import approve

    # Two cycles on the same rows: versions 2 and 3, the same model, both judged against 1.
    assert run_cycle_here(proj)["decision"] == "awaiting_approval"
    assert run_cycle_here(proj)["decision"] == "awaiting_approval"
    assert approve(load_cfg(proj), "3", "the newer one")["decision"] == "promoted"

    late = cli("approve", "2", "--reason", "approving the older one", "--json", cwd=proj)
    assert late.code == 0, late.stderr
    doc = late.json()
    # Judged again against the champion of this moment (3, identical): not better.
    assert doc["decision"] == "kept_champion"
    assert doc["outcome"].startswith("champion changed to version 3 while judging")
    assert doc["recheck"]["champion"]["version"] == "3"
    assert doc["recheck"]["decision"] == "kept_champion"
    assert (doc["champion_before"], doc["champion_after"]) == ("3", "3")
    assert champion_state(_uri(proj), MODEL)["champion"] == "3"
    assert _version_tags(proj, "2")["retrainer.approval"] == "stale"
    assert history_here(proj)[0]["what"] == "approved"
    assert history_here(proj)[0]["decision"] == "kept_champion"


def test_the_first_champion_also_waits_and_exactly_one_champion_follows(
        project: Path) -> None:
    from retrainer.governance import approve

    edit_config(project, promote={"approval": "required"})
    record = run_cycle_here(project)
    assert record["decision"] == "awaiting_approval"
    assert record["approval"]["would_be"] == "first_champion"
    assert "champion" not in registry_snapshot(project)["aliases"]
    doc = approve(load_cfg(project), "1", "first model signed off")
    assert (doc["decision"], doc["champion_before"], doc["champion_after"]) == \
        ("first_champion", None, "1")
    state = champion_state(_uri(project), MODEL)
    assert (state["champion"], state["previous"], state["journal"]) == ("1", None, None)


def test_watch_does_not_judge_a_pending_version_again(proj: Path) -> None:
    from sklearn.linear_model import LinearRegression

    from retrainer.triggers.daemon import watch_once
    from retrainer.triggers.watcher import TickResult, Watcher

    edit_config(proj, triggers={"new_version": {"poll_seconds": 60}})
    uri = _uri(proj)
    version = register_plain(uri, LinearRegression(), proj / "data" / "diabetes.csv",
                             proj / "ds-artifacts")
    now = datetime.fromisoformat("2024-01-01T03:00:00+00:00")
    first = watch_once(load_cfg(proj), now=now)
    [cycle] = first.cycles
    assert (cycle["decision"], cycle["kind"]) == ("awaiting_approval", "new_version_promotion")
    assert _version_tags(proj, version)["retrainer.approval"] == "pending"
    assert _aliases(proj)["challenger"] == version
    snap, n_history = registry_snapshot(proj), len(history_here(proj))

    later = datetime.fromisoformat("2024-01-01T04:00:00+00:00")
    assert watch_once(load_cfg(proj), now=later).to_json() == {"fired": [], "cycles": []}
    # A retry of the judgement (the watcher died mid-judge) leaves it alone as well.
    watcher = Watcher(load_cfg(proj))
    action = {"id": "retry1", "kind": "judge", "trigger": "new_version", "reason": "retry",
              "version": version, "attempt": 2, "next_at": "2024-01-01T05:00:00+00:00"}
    state = watcher.store.load()
    state["pending"].append(action)
    result = TickResult(later)
    watcher._run(action, state, later, result)
    assert result.cycles == [] and result.failures == []
    assert registry_snapshot(proj) == snap and len(history_here(proj)) == n_history


def test_approving_in_canary_mode_starts_the_canary_and_records_the_approval(
        proj: Path, cli) -> None:
    edit_config(proj, rollout={"mode": "canary"}, serve={"inference_log": "inference"})
    assert run_cycle_here(proj)["decision"] == "awaiting_approval"
    approved = cli("approve", "2", "--reason", "looks right", "--json", cwd=proj)
    assert approved.code == 0, approved.stderr
    doc = approved.json()
    # The champion does not move: the version answers its share as the canary.
    assert (doc["event"], doc["decision"], doc["version"]) == ("approved", "canary_started", "2")
    assert doc["champion_before"] == doc["champion_after"] == "1"
    assert doc["rollout"] and doc["reason"] == "looks right"
    assert _aliases(proj)["canary"] == "2" and _aliases(proj)["champion"] == "1"
    assert _version_tags(proj, "2")["retrainer.approval"] == "approved"
    newest = history_here(proj)[0]
    assert (newest["what"], newest["decision"], newest["version"]) == \
        ("approved", "canary_started", "2")
