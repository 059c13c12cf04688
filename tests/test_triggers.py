"""Trigger logic without a store: cron with injected time, webhook signatures, reasons.

No sleeping anywhere: every moment is passed in.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrainer.drift.profile import build_profile
from retrainer.drift.statistics import compare
from retrainer.errors import UserError
from retrainer.triggers import webhooks
from retrainer.triggers.clock import parse_iso, parse_now
from retrainer.triggers.daemon import watch_lock
from retrainer.triggers.drift import drift_reason
from retrainer.triggers.fire import Fire
from retrainer.triggers.performance import relative_degradation
from retrainer.triggers.schedule import check_schedule
from retrainer.triggers.state import MAX_TAG, serialise

UTC = timezone.utc
MONDAY_3AM = "0 3 * * 1"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _run(cron: str, tz: str, moments: list[str]) -> list[Fire | None]:
    """Evaluate the schedule at each moment in turn, carrying the state like watch does."""
    state: dict[str, Any] = {}
    fires = []
    for moment in moments:
        fire, state = check_schedule(cron, tz, state, _at(moment))
        fires.append(fire)
    return fires


# ----------------------------------------------------------------------------- schedule

def test_first_watch_starts_the_clock_and_fires_nothing() -> None:
    fire, state = check_schedule(MONDAY_3AM, "UTC", {}, _at("2024-01-01T03:00:00+00:00"))
    assert fire is None
    assert state == {"since": "2024-01-01T03:00:00+00:00"}


def test_a_slot_fires_once_at_and_after_its_time() -> None:
    fires = _run(MONDAY_3AM, "UTC", [
        "2024-01-01T00:00:00+00:00",   # Monday before 3am: starts the clock
        "2024-01-01T02:59:59+00:00",   # not yet
        "2024-01-01T03:00:00+00:00",   # the slot itself
        "2024-01-01T03:00:00+00:00",   # same moment again
        "2024-01-03T12:00:00+00:00",   # later the same week
        "2024-01-08T03:00:01+00:00",   # next Monday
    ])
    assert [f is not None for f in fires] == [False, False, True, False, False, True]
    assert "slot 2024-01-01T03:00:00+00:00" in fires[2].reason
    assert fires[2].key != fires[5].key


def test_missed_slots_fire_once_not_once_per_slot() -> None:
    fires = _run(MONDAY_3AM, "UTC", [
        "2024-01-01T00:00:00+00:00",
        "2024-01-29T12:00:00+00:00",   # down for five Mondays (1st to 29th)
        "2024-01-29T13:00:00+00:00",
    ])
    assert fires[0] is None and fires[2] is None
    assert fires[1] is not None
    assert "slot 2024-01-29T03:00:00+00:00" in fires[1].reason
    assert "4 earlier slot(s) passed while nobody watched: fired once" in fires[1].reason


def test_time_zone_decides_the_slot() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
    winter = _run("0 3 * * *", "Europe/Berlin",
                  ["2024-01-10T00:00:00+00:00", "2024-01-10T01:59:00+00:00",
                   "2024-01-10T02:00:00+00:00"])
    assert [f is not None for f in winter] == [False, False, True]
    assert "2024-01-10T03:00:00+01:00" in winter[2].reason
    summer = _run("0 3 * * *", "Europe/Berlin",
                  ["2024-07-10T00:00:00+00:00", "2024-07-10T01:00:00+00:00"])
    assert summer[1] is not None and "2024-07-10T03:00:00+02:00" in summer[1].reason


def test_dst_fall_back_does_not_fire_the_repeated_hour_twice() -> None:
    # 2024-10-27 in Berlin: 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET).
    fires = _run("30 2 * * *", "Europe/Berlin", [
        "2024-10-26T12:00:00+00:00",
        "2024-10-27T00:31:00+00:00",
        "2024-10-27T01:31:00+00:00",
        "2024-10-28T01:31:00+00:00",
    ])
    assert [f is not None for f in fires] == [False, True, False, True]


def test_time_going_backwards_fires_nothing() -> None:
    fires = _run(MONDAY_3AM, "UTC", ["2024-01-01T00:00:00+00:00", "2024-01-08T04:00:00+00:00",
                                     "2024-01-02T00:00:00+00:00"])
    assert [f is not None for f in fires] == [False, True, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60 * 24 * 30), min_size=1, max_size=25),
       st.sampled_from(["*/15 * * * *", "0 3 * * 1", "30 2 * * *", "0 0 1 * *"]),
       st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
def test_property_never_two_fires_for_one_slot_and_never_a_future_slot(
        minutes: list[int], cron: str, tz: str) -> None:
    start = _at("2024-03-01T00:00:00+00:00")
    moments = sorted(start + timedelta(minutes=m) for m in minutes)
    state: dict[str, Any] = {}
    slots_fired = []
    for now in moments:
        fire, state = check_schedule(cron, tz, state, now)
        if fire is not None:
            slot = parse_iso(state["last_slot"])
            assert slot <= now
            slots_fired.append(slot)
    assert len(slots_fired) == len(set(slots_fired))
    # Each fire is for a slot after the previous fire's slot (missed ones collapse).
    assert slots_fired == sorted(slots_fired)


def test_parse_now_forms() -> None:
    assert parse_now(None) is None
    assert parse_now("2024-01-01T03:00:00Z") == _at("2024-01-01T03:00:00+00:00")
    assert parse_now("2024-01-01T04:00:00+01:00") == _at("2024-01-01T03:00:00+00:00")
    assert parse_now("2024-01-01 03:00") == _at("2024-01-01T03:00:00+00:00")
    with pytest.raises(UserError, match="ISO-8601"):
        parse_now("next monday")


# ----------------------------------------------------------------------------- reasons

def test_drift_reason_names_columns_statistics_and_thresholds() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"bmi": rng.normal(size=2000), "bp": rng.normal(size=2000),
                        "age": rng.normal(size=2000)})
    cur = ref.copy()
    cur["bmi"] = rng.normal(size=2000) + 1.0
    report = compare(build_profile(ref), cur, share=0.3)
    assert report.dataset_drift
    reason = drift_reason(report)
    bmi = next(c for c in report.columns if c.column == "bmi")
    assert reason.startswith("1 of 3 columns drifted (33%, equal weights; >= 30%): ")
    assert f"PSI {bmi.value:.3g} on bmi > {bmi.threshold:.3g}" in reason
    assert "bp" not in reason


def test_drift_reason_for_a_missing_column_says_so() -> None:
    ref = pd.DataFrame({"bmi": np.arange(100.0), "bp": np.arange(100.0)})
    report = compare(build_profile(ref), ref[["bp"]], share=0.5)
    assert "bmi: column missing from the current data" in drift_reason(report)


@pytest.mark.parametrize(("metric", "value", "baseline", "expected"), [
    ("rmse", 66.0, 60.0, 0.10), ("rmse", 54.0, 60.0, -0.10), ("r2", 0.36, 0.40, 0.10),
    ("r2", 0.44, 0.40, -0.10), ("accuracy", 0.72, 0.80, 0.10), ("mse", 1.0, 0.0, float("inf")),
])
def test_relative_degradation_respects_the_metric_direction(
        metric: str, value: float, baseline: float, expected: float) -> None:
    assert relative_degradation(metric, value, baseline) == pytest.approx(expected)


# ----------------------------------------------------------------------------- webhooks

SECRET = "s3cret-for-tests"


def _delivery(payload: dict[str, Any], secret: str = SECRET, sent_at: float | None = None,
              delivery_id: str | None = None) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload)
    stamp = str(int(time.time() if sent_at is None else sent_at))
    did = delivery_id or str(uuid.uuid4())
    headers = {"Content-Type": "application/json", webhooks.DELIVERY_ID_HEADER: did,
               webhooks.TIMESTAMP_HEADER: stamp,
               webhooks.SIGNATURE_HEADER: webhooks.sign(secret, did, stamp, body)}
    return headers, body.encode()


def _created(name: str = "diabetes-ridge", version: str = "3") -> dict[str, Any]:
    return {"entity": "model_version", "action": "created",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"name": name, "version": version, "source": "models:/m-1",
                     "run_id": "r1", "tags": {}, "description": None}}


def test_signature_is_exactly_mlflows() -> None:
    from mlflow.webhooks import constants
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert (webhooks.SIGNATURE_HEADER, webhooks.TIMESTAMP_HEADER,
            webhooks.DELIVERY_ID_HEADER) == (constants.WEBHOOK_SIGNATURE_HEADER,
                                             constants.WEBHOOK_TIMESTAMP_HEADER,
                                             constants.WEBHOOK_DELIVERY_ID_HEADER)
    body = json.dumps(_created())
    assert webhooks.sign(SECRET, "d-1", "1700000000", body) == \
        _generate_hmac_signature(SECRET, "d-1", "1700000000", body)


def _receiver(announced: list[dict[str, Any]]) -> webhooks.WebhookReceiver:
    return webhooks.WebhookReceiver("diabetes-ridge", SECRET, on_version=announced.append)


def test_valid_delivery_announces_the_version_once() -> None:
    announced: list[dict[str, Any]] = []
    rx = _receiver(announced)
    headers, body = _delivery(_created())
    verdict = rx.handle(headers, body)
    assert verdict.status == 202
    assert announced and announced[0]["data"]["version"] == "3"
    replay = rx.handle(headers, body)
    assert replay.status == 401 and "replayed" in replay.message
    assert len(announced) == 1


@pytest.mark.parametrize("case", ["unsigned", "bad_signature", "wrong_secret", "stale",
                                  "future", "tampered_body", "missing_timestamp"])
def test_rejected_deliveries_are_401_and_announce_nothing(case: str) -> None:
    announced: list[dict[str, Any]] = []
    rx = _receiver(announced)
    headers, body = _delivery(_created())
    if case == "unsigned":
        headers.pop(webhooks.SIGNATURE_HEADER)
    elif case == "bad_signature":
        headers[webhooks.SIGNATURE_HEADER] = "v1,AAAA"
    elif case == "wrong_secret":
        headers, body = _delivery(_created(), secret="not-the-secret")
    elif case == "stale":
        headers, body = _delivery(_created(), sent_at=time.time() - 3600)
    elif case == "future":
        headers, body = _delivery(_created(), sent_at=time.time() + 3600)
    elif case == "tampered_body":
        body = body.replace(b'"3"', b'"4"')
    elif case == "missing_timestamp":
        headers.pop(webhooks.TIMESTAMP_HEADER)
    verdict = rx.handle(headers, body)
    assert verdict.status == 401, verdict
    assert announced == []


def test_other_events_and_models_are_verified_but_ignored() -> None:
    announced: list[dict[str, Any]] = []
    rx = _receiver(announced)
    for payload in (_created(name="someone-elses-model"),
                    {**_created(), "entity": "model_version_tag", "action": "set"}):
        verdict = rx.handle(*_delivery(payload))
        assert verdict.status == 200 and verdict.message.startswith("ignored")
    assert announced == []


def test_seen_delivery_ids_survive_a_restart() -> None:
    headers, body = _delivery(_created())
    did, stamp = headers[webhooks.DELIVERY_ID_HEADER], int(headers[webhooks.TIMESTAMP_HEADER])
    announced: list[dict[str, Any]] = []
    restarted = webhooks.WebhookReceiver("diabetes-ridge", SECRET, on_version=announced.append,
                                         seen=[[did, stamp]])
    assert restarted.handle(headers, body).status == 401
    assert announced == []


# ----------------------------------------------------------------------------- state size

def test_state_tags_stay_under_mlflows_tag_limit_without_forgetting_pending_cycles() -> None:
    fired = [{"key": f"new_version@2024-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
              "at": "2024-01-01T00:00:00+00:00",
              "events": [f"new_version:{i}{j}" for j in range(5)]} for i in range(200)]
    kept = json.loads(serialise("fired", fired))
    assert len(json.dumps(kept, sort_keys=True)) <= MAX_TAG
    assert kept[-1] == fired[-1]  # the newest are kept
    pending = [{"id": str(i), "kind": "cycle", "trigger": "drift", "reason": "r" * 5000,
                "error": "e" * 5000, "attempt": 1, "next_at": "2024-01-01T00:00:00+00:00",
                "fired_at": "2024-01-01T00:00:00+00:00", "version": None} for i in range(20)]
    text = serialise("pending", pending)
    assert len(text) <= MAX_TAG
    assert [p["id"] for p in json.loads(text)] == [str(i) for i in range(20)]


# ----------------------------------------------------------------------------- locks

def _cfg(tmp_path: Path, **promote: Any) -> Any:
    from retrainer.config import parse

    return parse({"model": "m", "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                  "data": {"source": "d.csv"}, "train": {"estimator": "x.Y"},
                  "promote": promote}, tmp_path)


def test_file_watch_lock_admits_one_watcher_and_names_the_holder(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    held = rf"already running for model 'm' .*pid {os.getpid()}"
    with watch_lock(cfg), pytest.raises(UserError, match=held), \
            watch_lock(cfg):
        pass
    with watch_lock(cfg):  # released
        pass


@pytest.mark.postgres
def test_advisory_watch_lock_on_postgresql(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        import sqlalchemy

        sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://")) \
            .connect().close()
    except Exception:  # noqa: BLE001
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    cfg = _cfg(tmp_path, lock=url)
    with watch_lock(cfg), pytest.raises(UserError, match="advisory lock"), \
            watch_lock(cfg):
        pass
    with watch_lock(cfg):
        pass


# ----------------------------------------------------------------------------- layout

def _package_imports() -> dict[str, set[str]]:
    """Each module of retrainer.triggers -> the modules of the package it imports."""
    import ast

    import retrainer.triggers

    root = Path(retrainer.triggers.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "retrainer.triggers":
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "retrainer.triggers."):
                deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[2] for a in node.names
                            if a.name.startswith("retrainer.triggers."))
        graph[path.stem] = deps
    return graph


def test_the_triggers_package_is_layered_without_cycles() -> None:
    graph = _package_imports()
    assert {"schedule", "new_version", "drift", "performance", "state", "watcher", "daemon",
            "webhooks"} <= set(graph)
    assert graph["__init__"] == set()
    # A check knows only the shared small things, never the watcher that runs it.
    for check in ("schedule", "new_version", "drift", "performance"):
        assert graph[check] <= {"clock", "fire"}, (check, graph[check])
    assert "daemon" not in graph["watcher"]
    # No cycle: peel off modules whose imports are all peeled already.
    left = dict(graph)
    while left:
        ready = [m for m, deps in left.items() if not deps & set(left)]
        assert ready, f"import cycle among {sorted(left)}"
        for module in ready:
            del left[module]


def test_importing_the_watch_entry_points_loads_no_heavy_library() -> None:
    """`retrainer watch --help` stays fast: mlflow, pandas and sklearn load when used."""
    import subprocess
    import sys

    code = ("import sys, retrainer.triggers.daemon; "
            "print(sorted(m for m in ('mlflow', 'pandas', 'numpy', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
