"""Notifications to a real HTTP receiver on loopback: payloads, signatures, failures.

Cycles that are not under test run in-process; the commands a user runs (`run`,
`rollback`, `notify test`) run as subprocesses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from conftest import edit_config, registry_snapshot
from notify_helpers import Receiver
from registry_helpers import WEEK_AGO, history_here, load_cfg, run_cycle_here
from retrainer import notify
from retrainer.notify import message
from watch_helpers import FEATURES, copy_project, events

# `watch_champion`: the article's version 1 as champion, made once per session.

SECRET = "s3cr3t-VALUE-9d2e"
PATH_TOKEN = "T0KEN-IN-PATH-77f0"


def _week_ago(project: Path) -> str:
    frame = pd.read_csv(project / "data" / "diabetes.csv")
    frame.iloc[:-20].to_csv(project / WEEK_AGO, index=False)
    return str(project / WEEK_AGO)


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize(("receiver", "expected", "hidden"), [
    ({"url": "http://127.0.0.1:9/hook", "events": ["promoted", "promted"]},
     "notify.0.events: unknown event 'promted' (did you mean 'promoted'?)", None),
    ({"url": f"hooks.slack.com/services/{PATH_TOKEN}"},
     "notify.0.url: must be an http:// or https:// URL", PATH_TOKEN),
    ({"url": "https://"}, "notify.0.url: the URL has no host", None),
    ({"url": f"http://example.com:port/{PATH_TOKEN}"}, "notify.0.url: not a valid URL",
     PATH_TOKEN),
    ({"url": "http://127.0.0.1:9/hook", "secret_env": SECRET + "!"},
     "notify.0.secret_env: must name an environment variable", SECRET),
    ({"url": "http://127.0.0.1:9/hook", "format": "teams"}, "notify.0.format:", None),
])
def test_bad_notify_config_exits_2_writes_nothing_and_echoes_no_secret(
        project: Path, cli, receiver: dict, expected: str, hidden: str | None) -> None:
    edit_config(project, notify=[receiver])
    before = registry_snapshot(project)
    result = cli("run", cwd=project)
    assert result.code == 2, result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    if hidden:
        assert hidden not in result.stderr
    assert registry_snapshot(project) == before == {}


# ----------------------------------------------------------------------------- payloads

def test_decisions_and_rollback_are_delivered_with_payloads_and_a_verifiable_signature(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with Receiver() as generic, Receiver() as slack:
        edit_config(project, notify=[
            {"url": generic.url, "secret_env": "HOOK_SECRET", "format": "json"},
            {"url": slack.url, "format": "slack", "events": ["first_champion", "rollback"]}])
        cfg = load_cfg(project)
        monkeypatch.setenv("HOOK_SECRET", SECRET)
        first = run_cycle_here(project, data=_week_ago(project))
        promoted = run_cycle_here(project)
        notify.drain()
        assert (first["decision"], promoted["decision"]) == ("first_champion", "promoted")

        assert generic.events() == ["first_champion", "promoted"]
        d1, d2 = generic.deliveries
        for d in (d1, d2):
            assert notify.verify(SECRET, d.headers, d.body)
            # The documented recipe, by hand: HMAC-SHA256 over "{timestamp}." + body.
            stamp = d.headers["X-Retrainer-Timestamp"]
            mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + d.body, hashlib.sha256)
            assert d.headers["X-Retrainer-Signature"] == "sha256=" + mac.hexdigest()
            assert abs(int(stamp) - time.time()) < 120
            assert len(d.headers["X-Retrainer-Delivery"]) == 32
        assert not notify.verify(SECRET, d2.headers, d2.body.replace(b"promoted", b"promotes"))
        assert not notify.verify("another-secret", d2.headers, d2.body)
        assert not notify.verify(SECRET, d2.headers, d2.body, now=time.time() + 3600)

        body = d2.json()
        assert body["record"] == json.loads(json.dumps(promoted, default=str))
        assert (body["event"], body["model"], body["version"], body["decision"]) == \
            ("promoted", cfg.model, "2", "promoted")
        text = body["text"]
        assert "\n" not in text and body["run_url"] is None  # sqlite: no server to link to
        assert text.startswith("diabetes-ridge: promoted version 2 (champion was 1) "
                               "(trigger: setup) — mse 3171.03 vs champion 3185.98 on 67 "
                               "clean holdout rows, difference -14.96 (95% CI ")
        assert "why: the difference is within noise" in text
        assert "rmse 56.31 beats champion 56.44 by 0.1326" in text
        assert d1.json()["text"].startswith(
            "diabetes-ridge: version 1 is the first champion (trigger: setup) — mse ")

        # Slack: subscribed to first_champion only so far; its own shape; unsigned.
        [s1] = slack.deliveries
        doc = s1.json()
        assert set(doc) == {"text", "blocks"}
        assert doc["text"] == d1.json()["text"]
        assert doc["blocks"][0]["text"]["type"] == "mrkdwn"
        assert "event `first_champion`" in doc["blocks"][1]["elements"][0]["text"]
        assert "X-Retrainer-Signature" not in s1.headers

        result = cli("rollback", "--reason", "bad predictions in EU", "--actor", "carol",
                     "--json", cwd=project, env={"HOOK_SECRET": SECRET})
        assert result.code == 0, result.stderr
        # Delivered before the command exited: nothing to wait for.
        assert generic.events()[-1] == "rollback" and len(slack.deliveries) == 2
        line = ("diabetes-ridge: champion rolled back by carol to version 1 (from 2) — "
                "reason: bad predictions in EU")
        assert generic.deliveries[-1].json()["text"] == line
        assert slack.deliveries[-1].json()["text"] == line
        assert notify.verify(SECRET, generic.deliveries[-1].headers,
                             generic.deliveries[-1].body)


# ----------------------------------------------------------------------------- failures

def test_failing_and_hanging_receivers_neither_fail_nor_hold_the_cycle_and_are_recorded(
        project: Path, cli) -> None:
    with Receiver("fail", path=f"/services/{PATH_TOKEN}") as failing, \
            Receiver("hang", path=f"/hook?token={PATH_TOKEN}") as hanging:
        edit_config(project, notify=[
            {"url": failing.url, "secret_env": "HOOK_SECRET", "timeout_seconds": 1,
             "attempts": 2},
            {"url": hanging.url, "format": "slack", "timeout_seconds": 1, "attempts": 2}])
        result = cli("run", "--json", cwd=project, env={"HOOK_SECRET": SECRET})
        assert result.code == 0, result.stderr
        assert result.json()["decision"] == "first_champion"
        # Retried (5xx and timeouts are), then given up within the receivers' budget.
        assert failing.events() == ["first_champion"] * 2
        assert len(hanging.deliveries) == 2

        entries = history_here(project)
        failed = sorted((e for e in entries if e["what"] == "notify_failed"),
                        key=lambda e: e["reason"])
        assert len(failed) == 2 and entries[-1]["what"] == "first_champion"
        port_f, port_h = failing.port, hanging.port
        assert failed[0]["reason"] == (
            f"could not deliver first_champion to #1 http://127.0.0.1:{port_f}/… after 2 "
            "attempt(s): HTTP 500")
        assert failed[1]["reason"] == (
            f"could not deliver first_champion to #2 http://127.0.0.1:{port_h}/… after 2 "
            "attempt(s): no answer within 1 s")
        [event] = [e for e in events(project, "notify_failed") if e["status"] == 500]
        assert event["notified_event"] == "first_champion" and event["attempts"] == 2
        status = cli("status", "--json", cwd=project).json()
        assert status["last_decision"]["decision"] == "first_champion"

        # Neither the secret nor the URL's credential is written or printed anywhere.
        everything = result.stdout + result.stderr + json.dumps(entries) + \
            json.dumps(events(project, "notify_failed"))
        for path in (project / "mlartifacts").rglob("*"):
            if path.is_file() and path.suffix in (".json", ".md", ".yaml", ".txt"):
                everything += path.read_text(errors="replace")
        everything += (project / "mlflow.db").read_bytes().decode("latin-1")  # every tag
        assert SECRET not in everything and PATH_TOKEN not in everything


def test_a_slow_receiver_is_off_the_critical_path(project: Path) -> None:
    from retrainer.notify import deliver

    with Receiver("hang") as hanging:
        edit_config(project, notify=[{"url": hanging.url, "timeout_seconds": 5,
                                      "attempts": 1}])
        record = run_cycle_here(project)
        # The cycle is done and recorded while its notification still waits for an answer.
        in_flight = [f for f in deliver._inflight if f.thread.is_alive()]
        assert record["decision"] == "first_champion" and in_flight
        hanging.close()  # answers nothing, closes: the delivery fails now
        notify.drain()
    failed = [e for e in history_here(project) if e["what"] == "notify_failed"]
    assert len(failed) == 1 and "#1 http://127.0.0.1" in failed[0]["reason"]


# ----------------------------------------------------------------------------- notify test

def test_notify_test_reports_each_receiver(project: Path, cli) -> None:
    with Receiver() as good, Receiver("fail") as bad, Receiver() as chat:
        edit_config(project, notify=[
            {"url": good.url, "secret_env": "HOOK_SECRET"},
            {"url": bad.url, "events": ["rollback"]},
            {"url": chat.url, "format": "slack", "events": ["promoted", "rollback"]}])
        result = cli("notify", "test", "--json", cwd=project, env={"HOOK_SECRET": SECRET})
        assert result.code == 3, result.stderr
        doc = result.json()
        assert doc["ok"] is False
        got = [(r["receiver"], r["ok"], r["status"], r["attempts"]) for r in doc["receivers"]]
        assert got == [(f"#1 http://127.0.0.1:{good.port}/…", True, 200, 1),
                       (f"#2 http://127.0.0.1:{bad.port}/…", False, 500, 1),
                       (f"#3 http://127.0.0.1:{chat.port}/…", True, 200, 1)]
        [test] = good.deliveries
        assert test.headers["X-Retrainer-Event"] == "test"
        assert notify.verify(SECRET, test.headers, test.body)
        assert test.json()["text"].startswith("diabetes-ridge: test message from retrainer")
        assert chat.deliveries[0].json()["text"].endswith("this receiver gets: promoted, rollback")
        assert registry_snapshot(project) == {}  # a test message records nothing

        # Without its secret a receiver is not sent to unsigned, and says why.
        unsigned = cli("notify", "test", cwd=project, env={"COLUMNS": "200"})
        assert unsigned.code == 3
        assert "environment variable HOOK_SECRET (secret_env) is not set" in unsigned.stdout
        assert len(good.deliveries) == 1

    edit_config(project, notify=[])
    none = cli("notify", "test", cwd=project)
    assert none.code == 2 and "no receivers configured" in none.stderr


# ----------------------------------------------------------------------------- the watcher

def test_watch_notifies_drift_and_failed_cycles(watch_champion: Path, tmp_path: Path) -> None:
    from retrainer.triggers.daemon import watch_once

    proj = copy_project(watch_champion, tmp_path / "proj")
    frame = pd.read_csv(proj / "data" / "diabetes.csv")
    for col in FEATURES:
        if col != "sex":
            frame[col] = frame[col] + 0.85 * frame[col].std()
    frame.to_csv(proj / "data" / "current.csv", index=False)
    (proj / "broken.py").write_text("def train(X, y, params):\n"
                                    "    raise RuntimeError('feature store unavailable')\n")
    with Receiver() as rx:
        edit_config(proj, triggers={"drift": {"data": "data/current.csv"}},
                    train={"entrypoint": "broken.py:train"},
                    notify=[{"url": rx.url, "events": ["drift", "cycle_failed"]}])
        result = watch_once(load_cfg(proj), now=datetime.fromisoformat(
            "2024-01-01T03:00:00+00:00"))
        notify.drain()
        assert [f.trigger for f in result.fired] == ["drift"] and result.failures
    assert rx.events() == ["drift", "cycle_failed"]
    drift, failed = (d.json() for d in rx.deliveries)
    # The reason names the rule that fired (the model's outputs moved, most features too).
    assert drift["text"].startswith("diabetes-ridge: predictions drifted (PSI ")
    assert "columns drifted" in drift["text"]
    assert "(champion version 1," in drift["text"] and drift["version"] == "1"
    assert failed["text"].startswith("diabetes-ridge: the drift cycle failed (attempt 1 of 5; "
                                     "retry after ")
    assert "feature store unavailable" in failed["text"]
    assert failed["record"]["trigger"] == "drift" and failed["record"]["given_up"] is False


# ----------------------------------------------------------------------------- message

def test_the_run_link_is_for_http_servers_only_and_never_carries_credentials() -> None:
    assert message.run_url("sqlite:////tmp/mlflow.db", "1", "abc") is None
    assert message.run_url("https://bob:pw@mlflow.example.com:5000/", "7", "abc") == \
        "https://mlflow.example.com:5000/#/experiments/7/runs/abc"
    assert notify.redact(f"https://hooks.slack.com/services/{PATH_TOKEN}") == \
        "https://hooks.slack.com/…"
    body = json.loads(message.body("slack", "rollback", "m", {"version": "2"},
                                   "a <b> & c", "http://x/#/r", "now", "id"))
    assert body["blocks"][0]["text"]["text"] == "a &lt;b&gt; &amp; c — <http://x/#/r|run>"
    line = message.one_line("m", "rejected", {"version": "3", "actor": "bob",
                                              "reason": "two\nlines"})
    assert line == "m: bob rejected version 3 — reason: two lines"
