"""`retrainer watch --once` on a real embedded store: each trigger fires a real cycle.

Time is injected with `--now` / `now=`; nothing sleeps. Restarts are new processes (the
CLI) or new Watcher objects with fresh clients: state lives only in the tracking store.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from conftest import edit_config, registry_snapshot, run_cli
from retrainer.config import load
from retrainer.history import model_history
from retrainer.triggers.daemon import watch_once
from retrainer.triggers.watcher import TickResult
from watch_helpers import (
    FEATURES,
    events,
    register_plain,
    watch_state,
)

# The watch fixtures: `proj`, a private copy of the session's champion project.

NOTHING = {"fired": [], "cycles": []}
MON_0000 = "2024-01-01T00:00:00+00:00"
MON_0300 = "2024-01-01T03:00:00+00:00"


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)




def _tick(proj: Path, moment: datetime) -> TickResult:
    """`watch --once` in-process: the config loaded and the store connected anew."""
    return watch_once(load(proj / "retrainer.yaml"), now=moment)


def _history(proj: Path, source: str | None = None) -> list[dict[str, Any]]:
    entries = model_history(load(proj / "retrainer.yaml"))["entries"]
    return [e for e in entries if source is None or e["source"] == source]


def _shifted(proj: Path, sd: float = 0.85) -> pd.DataFrame:
    """The diabetes rows with every numeric feature moved by `sd` standard deviations."""
    frame = pd.read_csv(proj / "data" / "diabetes.csv")
    for col in FEATURES:
        if col != "sex":
            frame[col] = frame[col] + sd * frame[col].std()
    return frame


# ----------------------------------------------------------------------------- drift

def test_drifted_data_fires_exactly_one_cycle_and_a_rerun_fires_nothing(proj: Path) -> None:
    edit_config(proj, triggers={"drift": {"data": "data/current.csv"}})
    current = proj / "data" / "current.csv"

    # Undrifted: the same distribution the champion trained on.
    pd.read_csv(proj / "data" / "diabetes.csv").to_csv(current, index=False)
    assert watch_once(load(proj / "retrainer.yaml"), now=_t(MON_0000)).to_json() == NOTHING
    assert watch_state(proj)["drift"]["verdict"] is False

    _shifted(proj).to_csv(current, index=False)
    before = registry_snapshot(proj)
    result = run_cli("watch", "--once", "--json", "--now", MON_0300, cwd=proj)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert set(doc) == {"fired", "cycles"}
    assert [f["trigger"] for f in doc["fired"]] == ["drift"]
    reason = doc["fired"][0]["reason"]
    assert re.search(r"PSI [0-9.]+ on bmi > [0-9.]+", reason), reason
    assert len(doc["cycles"]) == 1
    record = doc["cycles"][0]
    assert record["trigger"] == "drift" and record["trigger_reason"] == reason
    assert record["champion"]["version"] == "1"
    assert record["challenger"]["version"] == "2"
    after = registry_snapshot(proj)
    assert len(after["versions"]) == len(before["versions"]) + 1

    # A restart at the same moment fires nothing, and neither does a later moment with
    # the same rows (a retrain already answered them).
    assert _tick(proj, _t(MON_0300)).to_json() == NOTHING
    assert _tick(proj, _t("2024-01-02T00:00:00+00:00")).to_json() == NOTHING
    assert registry_snapshot(proj) == after


# ----------------------------------------------------------------------------- new version

def test_versions_registered_by_plain_mlflow_are_judged_promoted_or_rejected(proj: Path) -> None:
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression

    edit_config(proj, triggers={"new_version": {"poll_seconds": 60}})
    uri = f"sqlite:///{proj / 'mlflow.db'}"
    data = proj / "data" / "diabetes.csv"
    worse = register_plain(uri, DummyRegressor(), data, proj / "ds-artifacts")
    better = register_plain(uri, LinearRegression(), data, proj / "ds-artifacts")
    assert (worse, better) == ("2", "3")

    result = run_cli("watch", "--once", "--json", "--now", MON_0300, cwd=proj)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert [(f["trigger"], f["reason"].split(" of ")[0]) for f in doc["fired"]] == [
        ("new_version", "version 2"), ("new_version", "version 3")]
    assert "registered outside retrainer" in doc["fired"][0]["reason"]
    decisions = {c["challenger"]["version"]: c["decision"] for c in doc["cycles"]}
    assert decisions == {"2": "kept_champion", "3": "promoted"}
    assert all(c["trigger"] == "new_version" for c in doc["cycles"])

    snap = registry_snapshot(proj)
    assert snap["aliases"]["champion"] == "3" and snap["aliases"]["previous"] == "1"
    tags = {v: dict(t) for v, t, _stage in snap["versions"]}
    assert tags["2"]["retrainer.decision"] == "kept_champion"
    assert tags["3"]["retrainer.trigger"] == "new_version"
    assert watch_state(proj)["new_version"]["last_seen"] == 3

    again = watch_once(load(proj / "retrainer.yaml"), now=_t("2024-01-01T04:00:00+00:00"))
    assert again.to_json() == NOTHING
    assert registry_snapshot(proj) == snap


# ----------------------------------------------------------------------------- schedule

def test_schedule_fires_once_per_slot_across_restarts(proj: Path) -> None:
    edit_config(proj, triggers={"schedule": {"cron": "0 3 * * 1", "timezone": "UTC"}})
    # Each call loads the config and connects anew: a restart, state only in the store.
    def tick(moment: str) -> dict:
        return watch_once(load(proj / "retrainer.yaml"), now=_t(moment)).to_json()

    assert tick(MON_0000) == NOTHING            # the first watch starts the clock
    assert tick("2024-01-01T02:59:59+00:00") == NOTHING
    fired = tick(MON_0300)
    assert [f["trigger"] for f in fired["fired"]] == ["schedule"]
    assert fired["cycles"][0]["trigger"] == "schedule"
    assert fired["cycles"][0]["trigger_reason"].startswith("cron '0 3 * * 1' (UTC) slot ")
    assert fired["cycles"][0]["decision"] == "promoted"  # the article: all rows beat v1
    assert tick(MON_0300) == NOTHING
    assert tick("2024-01-05T00:00:00+00:00") == NOTHING
    state = watch_state(proj)["schedule"]
    assert state["last_slot"] == MON_0300
    assert registry_snapshot(proj)["aliases"]["champion"] == "2"


# ----------------------------------------------------------------------------- performance

def test_performance_decay_on_labelled_feedback_fires_a_cycle(proj: Path) -> None:
    feedback = proj / "data" / "feedback.csv"
    edit_config(proj, triggers={"performance": {"data": "data/feedback.csv",
                                                "max_degradation": 0.10}})
    rows = pd.read_csv(proj / "data" / "diabetes.csv").sample(120, random_state=3)
    rows.to_csv(feedback, index=False)
    cfg = load(proj / "retrainer.yaml")
    assert watch_once(cfg, now=_t(MON_0000)).to_json() == NOTHING
    perf = watch_state(proj)["performance"]
    assert perf["metric"] == "mse" and perf["degradation"] <= 0.10

    # The world changed: outcomes drift away from what the champion predicts.
    decayed = rows.copy()
    decayed["target"] = decayed["target"] * 1.3 + 25
    decayed.to_csv(feedback, index=False)
    doc = watch_once(load(proj / "retrainer.yaml"), now=_t(MON_0300)).to_json()
    assert [f["trigger"] for f in doc["fired"]] == ["performance"]
    reason = doc["fired"][0]["reason"]
    assert re.match(r"mse [0-9,.]+ on 120 labelled feedback rows vs [0-9,.]+ on the "
                    r"champion's holdout \(version 1\): [0-9.]+% worse > 10% allowed", reason), \
        reason
    assert len(doc["cycles"]) == 1 and doc["cycles"][0]["trigger"] == "performance"
    assert watch_once(load(proj / "retrainer.yaml"), now=_t(MON_0300)).to_json() == NOTHING


# ----------------------------------------------------------------------------- failures

BROKEN = '''
def train(X, y, params):
    raise RuntimeError("feature store unavailable")
'''


def test_a_failing_cycle_is_recorded_and_retried_with_backoff(proj: Path) -> None:
    (proj / "broken.py").write_text(BROKEN)
    edit_config(proj, triggers={"schedule": {"cron": "0 3 * * 1", "timezone": "UTC"},
                                "backoff_seconds": 60},
                train={"entrypoint": "broken.py:train"})
    assert watch_once(load(proj / "retrainer.yaml"), now=_t(MON_0000)).to_json() == NOTHING
    before = registry_snapshot(proj)

    failed = run_cli("watch", "--once", "--json", "--now", MON_0300, cwd=proj)
    assert failed.code == 1, failed.stderr
    assert [f["trigger"] for f in failed.json()["fired"]] == ["schedule"]
    assert failed.json()["cycles"] == []
    assert "feature store unavailable" in failed.stderr
    assert "retry after 2024-01-01T03:01:00+00:00" in failed.stderr
    assert registry_snapshot(proj) == before
    [event] = events(proj, "cycle_failed")
    assert event["trigger"] == "schedule" and event["attempt"] == 1
    assert "feature store unavailable" in event["error"]
    [pending] = watch_state(proj)["pending"]
    assert pending["attempt"] == 1 and pending["next_at"] == "2024-01-01T03:01:00+00:00"

    # Not before the backoff, and never twice for one moment.
    cfg = load(proj / "retrainer.yaml")
    assert watch_once(cfg, now=_t("2024-01-01T03:00:30+00:00")).to_json() == NOTHING

    # The team fixed their script: the retry runs the cycle, with the original reason.
    edit_config(proj, train={"entrypoint": "train.py:train"})
    retried = watch_once(load(proj / "retrainer.yaml"), now=_t("2024-01-01T03:01:00+00:00"))
    doc = retried.to_json()
    assert [f["trigger"] for f in doc["fired"]] == ["schedule"]
    assert doc["fired"][0]["reason"].startswith("retry 2 of 5: cron '0 3 * * 1'")
    assert len(doc["cycles"]) == 1 and doc["cycles"][0]["trigger"] == "schedule"
    assert watch_state(proj)["pending"] == []


def test_a_trigger_that_cannot_be_evaluated_exits_2_and_writes_nothing(proj: Path) -> None:
    edit_config(proj, triggers={"drift": {"data": "data/not-there.parquet"}})
    before = registry_snapshot(proj)
    result = run_cli("watch", "--once", "--json", cwd=proj)
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    assert "not-there.parquet" in result.stderr and "Traceback" not in result.stderr
    assert registry_snapshot(proj) == before
    assert watch_state(proj) == {}


def test_retries_back_off_doubling_up_to_the_cap_then_give_up_and_say_so(proj: Path) -> None:
    (proj / "broken.py").write_text(BROKEN)
    edit_config(proj, triggers={"schedule": {"cron": "0 3 * * 1", "timezone": "UTC"},
                                "backoff_seconds": 60, "max_backoff_seconds": 150,
                                "max_attempts": 4},
                train={"entrypoint": "broken.py:train"})
    assert _tick(proj, _t(MON_0000)).to_json() == NOTHING
    before = registry_snapshot(proj)

    # Attempt 1 fires at 03:00; the waits after attempts 1, 2, 3 are 60 s, 120 s and
    # 150 s (240 s capped by max_backoff_seconds).
    at = _t(MON_0300)
    for attempt, wait in ((1, 60), (2, 120), (3, 150)):
        result = _tick(proj, at)
        [fire] = result.fired
        expected = "cron '0 3 * * 1'" if attempt == 1 else f"retry {attempt} of 4: cron "
        assert fire.reason.startswith(expected), fire.reason
        assert result.cycles == []
        [failure] = result.failures
        due = at + timedelta(seconds=wait)
        assert (failure["attempt"], failure["max_attempts"], failure["retry_at"]) == \
            (attempt, 4, due.isoformat())
        [pending] = watch_state(proj)["pending"]
        assert (pending["attempt"], pending["next_at"]) == (attempt, due.isoformat())
        # A second before the retry is due nothing runs.
        early = _tick(proj, due - timedelta(seconds=1))
        assert (early.to_json(), early.failures) == (NOTHING, [])
        at = due
    assert at == _t("2024-01-01T03:05:30+00:00")

    # The last attempt fails too: given up, said on stderr, exit 1, nothing pending.
    last = run_cli("watch", "--once", "--json", "--now", at.isoformat(), cwd=proj)
    assert last.code == 1, last.stderr
    assert last.json()["fired"][0]["reason"].startswith("retry 4 of 4: cron ")
    assert "(attempt 4 of 4)" in last.stderr and "giving up" in last.stderr
    assert watch_state(proj)["pending"] == []
    assert _tick(proj, at + timedelta(days=1)).to_json() == NOTHING  # never retried again

    # Recorded: three failures with their retry times, then the given-up cycle.
    failed = sorted(events(proj, "cycle_failed"), key=lambda e: e["attempt"])
    assert [(e["attempt"], e["retry_at"]) for e in failed] == [
        (1, "2024-01-01T03:01:00+00:00"), (2, "2024-01-01T03:03:00+00:00"),
        (3, "2024-01-01T03:05:30+00:00")]
    [given_up] = events(proj, "cycle_given_up")
    assert (given_up["attempt"], given_up["retry_at"], given_up["trigger"]) == \
        (4, None, "schedule")
    assert "feature store unavailable" in given_up["error"]
    assert [e["what"] for e in _history(proj, "event") if e["what"].startswith("cycle_")] \
        == ["cycle_given_up", "cycle_failed", "cycle_failed", "cycle_failed"]
    assert registry_snapshot(proj) == before


# ----------------------------------------------------------------------------- together

def test_schedule_and_drift_firing_at_one_tick_run_exactly_one_cycle(proj: Path) -> None:
    edit_config(proj, triggers={"schedule": {"cron": "0 3 * * 1", "timezone": "UTC"},
                                "drift": {"data": "data/current.csv"}})
    current = proj / "data" / "current.csv"
    pd.read_csv(proj / "data" / "diabetes.csv").to_csv(current, index=False)
    assert _tick(proj, _t(MON_0000)).to_json() == NOTHING  # clock started, no drift
    _shifted(proj).to_csv(current, index=False)
    before, cycles_before = registry_snapshot(proj), _history(proj, "cycle")

    doc = _tick(proj, _t(MON_0300)).to_json()
    # Both are listed as fired; one cycle runs, named after drift, with both reasons.
    assert [f["trigger"] for f in doc["fired"]] == ["drift", "schedule"]
    drift_reason, schedule_reason = (f["reason"] for f in doc["fired"])
    assert drift_reason.startswith("predictions drifted (PSI ")
    assert "columns drifted" in drift_reason
    assert schedule_reason == "cron '0 3 * * 1' (UTC) slot 2024-01-01T03:00:00+00:00"
    [record] = doc["cycles"]
    both = f"drift: {drift_reason}; schedule: {schedule_reason}"
    assert (record["trigger"], record["trigger_reason"]) == ("drift", both)
    assert len(registry_snapshot(proj)["versions"]) == len(before["versions"]) + 1
    cycles = _history(proj, "cycle")
    assert len(cycles) == len(cycles_before) + 1
    assert (cycles[0]["trigger"], cycles[0]["trigger_reason"]) == ("drift", both)
    fired_keys = {e["key"] for e in watch_state(proj)["fired"]}
    assert {f"drift@{MON_0300}", f"schedule@{MON_0300}"} <= fired_keys
    assert watch_state(proj)["pending"] == []
    assert _tick(proj, _t(MON_0300)).to_json() == NOTHING
