"""The `retrainer watch` daemon as a real process: lock, SIGTERM/SIGKILL mid-cycle, webhooks.

Real stores, real HTTP on loopback, real signals. Waiting is done by polling for an
observable event (a file the training script writes, a line on stderr, an HTTP answer)
with a generous deadline; nothing asserts on how long anything took. The daemon's own
timing (interval, backoff) runs on an injected virtual clock: nothing sleeps for it.
Parallel-safe: every daemon binds its webhook port 0 and says which port it got.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import cli_runner
from conftest import edit_config, registry_snapshot, run_cli
from mlflow_server import _stop, _wait_healthy, free_port
from retrainer.config import load
from retrainer.triggers import webhooks
from retrainer.triggers.clock import DaemonClock, iso
from retrainer.triggers.daemon import run_daemon, watch_once
from retrainer.triggers.watcher import TickResult
from watch_helpers import (
    events,
    register_plain,
    watch_state,
)

# The watch fixtures: `proj`, a private copy of the session's champion project.

MON_0000 = "2024-01-01T00:00:00+00:00"
MON_0300 = "2024-01-01T03:00:00+00:00"
SECRET_ENV = "RETRAINER_TEST_WEBHOOK_SECRET"
SECRET = "whsec-test-" + uuid.uuid4().hex
DEADLINE = 180.0

SLOW_TRAIN = '''
import os
import time
from pathlib import Path

from sklearn.linear_model import Ridge


def train(X, y, params):
    """Like train.py, but waits for a `go` file: the test kills the daemon meanwhile."""
    here = Path(__file__).parent
    (here / "started").write_text(str(os.getpid()))
    while not (here / "go").exists():
        time.sleep(0.02)
    return Ridge(**params).fit(X, y)
'''




class Daemon:
    """`retrainer watch …` in the background, output in files (no pipe can fill up)."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.out, self.err = cwd / f"daemon-{uuid.uuid4().hex[:6]}.out", None
        self.err = self.out.with_suffix(".err")
        full_env = {**os.environ, "RETRAINER_VERBOSE": "1", **(env or {})}
        full_env.pop("MLFLOW_TRACKING_URI", None)
        # A process of its own, forked with the libraries already imported (cli_runner).
        self.proc = cli_runner.start(["watch", *args], cwd, full_env, out=self.out,
                                     err=self.err)

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.proc.wait(timeout=timeout)

    def webhook_url(self) -> str:
        """Where it receives webhooks: started with `--webhook-port 0`, it names its port."""
        found = wait_for(lambda: re.search(r"webhooks: POST (\S+)", self.stderr),
                         "the webhook URL", self)
        return found.group(1)

    def evaluations(self) -> int:
        """Evaluations finished so far (logged on stderr with RETRAINER_VERBOSE=1)."""
        return self.stderr.count("watch at ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def wait_for(check: Callable[[], Any], what: str, daemon: Daemon | None = None,
             deadline: float = DEADLINE) -> Any:
    """Poll until `check()` is truthy; fail with the daemon's stderr if it dies or never is."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        if daemon is not None and daemon.proc.poll() is not None:
            pytest.fail(f"daemon exited ({daemon.proc.returncode}) before {what}:\n"
                        f"{daemon.stderr[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}" +
                (f":\n{daemon.stderr[-3000:]}" if daemon else ""))


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _schedule(proj: Path, **extra: Any) -> None:
    edit_config(proj, triggers={"schedule": {"cron": "0 3 * * 1", "timezone": "UTC"},
                                "backoff_seconds": 60}, **extra)
    # The first watch starts the clock, so the daemons below fire at their --now.
    assert watch_once(load(proj / "retrainer.yaml"), now=_t(MON_0000)).fired == []


# ----------------------------------------------------------------------------- lock

def test_one_watcher_per_model_and_sigterm_stops_an_idle_daemon(proj: Path) -> None:
    _schedule(proj)
    daemon = Daemon(proj, "--interval", "3600")
    try:
        wait_for(lambda: "watching diabetes-ridge" in daemon.stderr, "the daemon to start",
                 daemon)
        second = run_cli("watch", "--once", "--json", cwd=proj)
        assert second.code == 2, second.stderr
        assert "another `retrainer watch` is already running for model 'diabetes-ridge'" \
            in second.stderr
        assert f"pid {daemon.proc.pid}" in second.stderr
        assert second.stdout == ""
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.stderr
    finally:
        daemon.stop()
    # The lock went with the daemon.
    assert watch_once(load(proj / "retrainer.yaml"), now=_t(MON_0000)).fired == []


# ----------------------------------------------------------------------------- timing

class VirtualClock(DaemonClock):
    """The daemon's clock on virtual time: a wait returns at once, the time it would have
    slept is added, and `after_wait` runs (the test's script of what happens meanwhile)."""

    def __init__(self, start: datetime, after_wait: Callable[[VirtualClock], None]) -> None:
        self.start, self.elapsed, self.after_wait = start, 0.0, after_wait
        self.waits: list[float] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def wait(self, wake: threading.Event, seconds: float) -> None:
        self.waits.append(seconds)
        self.elapsed += seconds
        wake.clear()
        self.after_wait(self)


def test_a_failing_evaluation_backs_off_doubling_up_to_the_cap_then_recovers(
        proj: Path) -> None:
    """The store becomes unreadable under a running daemon (its sqlite header is
    overwritten), and readable again four failures later: the daemon survives, waits
    backoff_seconds doubling up to max_backoff_seconds, then evaluates every interval."""
    edit_config(proj, triggers={"schedule": {"cron": "0 3 * * 1", "timezone": "UTC"},
                                "backoff_seconds": 60, "max_backoff_seconds": 150})
    db = proj / "mlflow.db"
    header = db.read_bytes()[:100]
    stop = threading.Event()
    ticks: list[TickResult] = []

    def break_store(_url: str | None) -> None:
        with open(db, "r+b") as f:
            f.write(b"\0" * len(header))

    def meanwhile(clock: VirtualClock) -> None:
        if len(clock.waits) == 4:
            with open(db, "r+b") as f:
                f.write(header)
        if ticks:
            stop.set()  # as a SIGTERM would: stop after the first good evaluation

    start = _t("2024-01-01T00:00:00+00:00")
    clock = VirtualClock(start, meanwhile)
    code = run_daemon(load(proj / "retrainer.yaml"), interval=1000, clock=clock, stop=stop,
                      on_ready=break_store, on_tick=ticks.append)
    assert code == 0
    assert clock.waits == [60, 120, 150, 150, 1000]
    [tick] = ticks
    recovered = start + timedelta(seconds=60 + 120 + 150 + 150)
    assert tick.now == recovered and tick.fired == []
    # The one good evaluation ran at the clock's moment: it started the schedule's clock.
    assert watch_state(proj)["schedule"] == {"since": iso(recovered)}


# ----------------------------------------------------------------------------- signals

def test_killing_or_stopping_the_daemon_mid_cycle_leaves_one_champion(proj: Path) -> None:
    (proj / "slow_train.py").write_text(SLOW_TRAIN)
    _schedule(proj, train={"entrypoint": "slow_train.py:train"})
    started, go = proj / "started", proj / "go"
    v1_only = registry_snapshot(proj)
    assert v1_only["aliases"]["champion"] == "1"

    # 1. SIGKILL while training: nothing half-registered, and the cycle is not forgotten.
    daemon = Daemon(proj, "--now", MON_0300, "--interval", "3600", "--json")
    try:
        wait_for(started.exists, "training to start", daemon)
        daemon.proc.kill()
        daemon.wait()
    finally:
        daemon.stop()
    assert registry_snapshot(proj) == v1_only
    [pending] = watch_state(proj)["pending"]
    assert (pending["trigger"], pending["attempt"]) == ("schedule", 1)

    # The restart retries it after the backoff (not at the same moment).
    go.touch()
    same = watch_once(load(proj / "retrainer.yaml"), now=_t(MON_0300))
    assert same.to_json() == {"fired": [], "cycles": []}
    retry = watch_once(load(proj / "retrainer.yaml"), now=_t("2024-01-01T03:01:00+00:00"))
    doc = retry.to_json()
    assert doc["fired"][0]["reason"].startswith("retry 2 of 5: cron '0 3 * * 1'")
    [record] = doc["cycles"]
    assert (record["trigger"], record["decision"]) == ("schedule", "promoted")
    snap = registry_snapshot(proj)
    assert snap["aliases"] == {"champion": "2", "challenger": "2", "previous": "1"}

    # 2. SIGTERM while training: the daemon finishes the cycle, records it, exits 0.
    started.unlink()
    go.unlink()
    daemon = Daemon(proj, "--now", "2024-01-08T03:00:00+00:00", "--interval", "3600",
                    "--json")
    try:
        wait_for(started.exists, "training to start", daemon)
        daemon.signal(signal.SIGTERM)
        wait_for(lambda: "finishing the cycle in progress" in daemon.stderr,
                 "the daemon to acknowledge SIGTERM", daemon)
        go.touch()
        assert daemon.wait() == 0, daemon.stderr
    finally:
        daemon.stop()
    [tick] = daemon.lines()
    [record] = tick["cycles"]
    # Version 3 is trained on the same rows with the same parameters as the champion,
    # version 2: the same model, so it cannot beat it and the gate keeps the champion.
    assert (record["trigger"], record["challenger"]["version"], record["decision"]) == \
        ("schedule", "3", "kept_champion")
    assert record["champion"]["metrics"] == record["challenger"]["metrics"]
    snap = registry_snapshot(proj)
    assert snap["aliases"] == {"champion": "2", "challenger": "3", "previous": "1"}
    assert "retrainer.promotion" not in snap["tags"]  # no half-done promotion journal
    assert watch_state(proj)["pending"] == []

    # 3. A second SIGTERM abandons the cycle: no version, same champion, retried later.
    started.unlink()
    go.unlink()
    daemon = Daemon(proj, "--now", "2024-01-15T03:00:00+00:00", "--interval", "3600")
    try:
        wait_for(started.exists, "training to start", daemon)
        daemon.signal(signal.SIGTERM)
        wait_for(lambda: "finishing the cycle in progress" in daemon.stderr,
                 "the daemon to acknowledge SIGTERM", daemon)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.stderr
    finally:
        daemon.stop()
    assert "abandoned the cycle in progress" in daemon.stderr
    assert registry_snapshot(proj) == snap
    [pending] = watch_state(proj)["pending"]
    assert pending["fired_at"] == "2024-01-15T03:00:00+00:00"
    assert [e["trigger"] for e in events(proj, "cycle_abandoned")] == ["schedule"]


def test_dying_mid_promotion_leaves_one_champion_and_the_next_watch_repairs(proj: Path) -> None:
    _schedule(proj)
    # The process dies after `previous` moved and before `champion` did.
    died = run_cli("watch", "--once", "--json", "--now", MON_0300, cwd=proj,
                   env={"RETRAINER_FAULT_AT": "previous_set"})
    assert died.code == 17, died.stderr
    snap = registry_snapshot(proj)
    assert snap["aliases"]["champion"] == "1"
    assert "retrainer.promotion" in snap["tags"]

    # The next watch finishes the journaled promotion before evaluating anything.
    result = watch_once(load(proj / "retrainer.yaml"), now=_t("2024-01-01T03:00:30+00:00"))
    assert result.to_json() == {"fired": [], "cycles": []}
    snap = registry_snapshot(proj)
    assert (snap["aliases"]["champion"], snap["aliases"]["previous"]) == ("2", "1")
    assert "retrainer.promotion" not in snap["tags"]


# ----------------------------------------------------------------------------- webhooks

def _signed(payload: dict[str, Any], secret: str | None = SECRET,
            sent_at: float | None = None) -> tuple[dict[str, str], bytes]:
    """A delivery as MLflow sends it: headers and raw body (unsigned without a secret)."""
    body = json.dumps(payload)
    stamp = str(int(time.time() if sent_at is None else sent_at))
    did = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", webhooks.DELIVERY_ID_HEADER: did,
               webhooks.TIMESTAMP_HEADER: stamp}
    if secret is not None:
        headers[webhooks.SIGNATURE_HEADER] = webhooks.sign(secret, did, stamp, body)
    return headers, body.encode()


def _send(url: str, delivery: tuple[dict[str, str], bytes]) -> httpx.Response:
    headers, body = delivery
    return httpx.post(url, content=body, headers=headers, timeout=30)


def _post(url: str, payload: dict[str, Any], secret: str | None = SECRET,
          sent_at: float | None = None, headers: dict[str, str] | None = None,
          ) -> httpx.Response:
    sent_headers, body = _signed(payload, secret, sent_at)
    return _send(url, ({**sent_headers, **(headers or {})}, body))


def _created(version: str) -> dict[str, Any]:
    return {"entity": "model_version", "action": "created", "timestamp": "now",
            "data": {"name": "diabetes-ridge", "version": version, "source": "models:/x",
                     "run_id": None, "tags": {}, "description": None}}


def test_webhook_deliveries_are_verified_and_a_replay_after_a_restart_is_refused(
        proj: Path) -> None:
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression

    edit_config(proj, triggers={"new_version": {"poll_seconds": 3600,
                                                "webhook_secret_env": SECRET_ENV}})
    uri = f"sqlite:///{proj / 'mlflow.db'}"
    data, artifacts = proj / "data" / "diabetes.csv", proj / "ds-artifacts"
    assert register_plain(uri, DummyRegressor(), data, artifacts) == "2"
    args = ("--interval", "3600", "--webhook-port", "0", "--json")
    daemon = Daemon(proj, *args, env={SECRET_ENV: SECRET})
    try:
        url = daemon.webhook_url()
        # The first evaluation polls and judges version 2 (registered while nobody
        # watched): a constant predictor cannot beat the champion.
        first = wait_for(daemon.lines, "the first evaluation", daemon)
        assert [(c["challenger"]["version"], c["decision"]) for c in first[0]["cycles"]] == \
            [("2", "kept_champion")]
        assert register_plain(uri, LinearRegression(), data, artifacts) == "3"
        before = (registry_snapshot(proj), watch_state(proj))

        # Rejected: unsigned, bad signature, wrong secret, stale. Nothing changes.
        assert _post(url, _created("3"), secret=None).status_code == 401
        assert _post(url, _created("3"), headers={
            webhooks.SIGNATURE_HEADER: "v1,bm90IGEgc2lnbmF0dXJl"}).status_code == 401
        assert _post(url, _created("3"), secret="guessed").status_code == 401
        stale = _post(url, _created("3"), sent_at=time.time() - 3600)
        assert stale.status_code == 401 and "stale" in stale.json()["error"]
        assert (registry_snapshot(proj), watch_state(proj)) == before
        assert len(daemon.lines()) == 1

        # A valid delivery: version 3 is judged at once (polling would wait an hour).
        delivery = _signed(_created("3"))
        ok = _send(url, delivery)
        assert ok.status_code == 202, ok.text
        lines = wait_for(lambda: daemon.lines()[1:], "the webhook-triggered check", daemon)
        [record] = lines[0]["cycles"]
        assert (record["challenger"]["version"], record["trigger"], record["decision"]) == \
            ("3", "new_version", "promoted")
        assert registry_snapshot(proj)["aliases"]["champion"] == "3"
        # Within one daemon a replay is refused from memory.
        again = _send(url, delivery)
        assert again.status_code == 401 and "replayed" in again.json()["error"], again.text

        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.stderr
    finally:
        daemon.stop()
    delivery_id = delivery[0][webhooks.DELIVERY_ID_HEADER]
    assert [d[0] for d in watch_state(proj)["deliveries"]] == [delivery_id]

    # A new daemon on the same store: the replayed delivery is refused from the state
    # kept in the tracking store, and nothing is judged or written.
    before = (registry_snapshot(proj), watch_state(proj))
    restarted = Daemon(proj, *args, env={SECRET_ENV: SECRET})
    try:
        url = restarted.webhook_url()
        wait_for(restarted.evaluations, "the restarted daemon's first evaluation", restarted)
        replay = _send(url, delivery)
        assert replay.status_code == 401, replay.text
        assert replay.json()["error"] == f"replayed delivery {delivery_id}"
        assert (registry_snapshot(proj), watch_state(proj)) == before
        assert "webhook: version" not in restarted.stderr
        # A fresh delivery of the same event is accepted: only the replay was refused.
        # Version 3 was judged already, so the check it wakes finds nothing to do.
        assert _send(url, _signed(_created("3"))).status_code == 202
        wait_for(lambda: restarted.evaluations() >= 2, "the woken check", restarted)
        restarted.signal(signal.SIGTERM)
        assert restarted.wait() == 0, restarted.stderr
    finally:
        restarted.stop()
    assert restarted.lines() == []
    assert registry_snapshot(proj) == before[0]
    assert len(watch_state(proj)["deliveries"]) == 2


def test_webhook_port_needs_a_secret(proj: Path) -> None:
    edit_config(proj, triggers={"new_version": {"poll_seconds": 60}})
    result = run_cli("watch", "--webhook-port", "0", cwd=proj)
    assert result.code == 2
    assert "webhook_secret_env" in result.stderr and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- real server

@pytest.mark.slow
def test_a_real_mlflow_server_delivers_signed_webhooks_to_the_daemon(
        tmp_path: Path, store_template: Path) -> None:
    """MLflow 3.17's own delivery code (tracking server -> daemon), signed with a secret."""
    import shutil

    from cryptography.fernet import Fernet
    from mlflow import MlflowClient
    from sklearn.linear_model import LinearRegression

    from retrainer.cycle import run_cycle
    from retrainer.project import write_example

    server_dir = tmp_path / "server"
    server_dir.mkdir()
    shutil.copyfile(store_template, server_dir / "mlflow.db")
    server_env = {
        **os.environ,
        # Webhooks to http://127.0.0.1 are refused by default (https only, SSRF guard).
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        # The job executor starts huey consumers (~15 s on two cores); unused here.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    server_env.pop("MLFLOW_TRACKING_URI", None)
    log_path = server_dir / "server.log"
    port = free_port()
    tracking = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        # Its own process group: the server's uvicorn worker is stopped with it.
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{server_dir / 'mlflow.db'}",
             "--artifacts-destination", str(server_dir / "artifacts")],
            cwd=server_dir, env=server_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    daemon = None
    try:
        _wait_healthy(tracking, server, log_path, timeout=DEADLINE)
        proj = tmp_path / "proj"
        write_example(proj, "diabetes")
        edit_config(proj, tracking_uri=tracking,
                    triggers={"new_version": {"poll_seconds": 3600,
                                              "webhook_secret_env": SECRET_ENV}})
        assert run_cycle(load(proj / "retrainer.yaml"))["decision"] == "first_champion"

        daemon = Daemon(proj, "--interval", "3600", "--webhook-port", "0", "--json",
                        env={SECRET_ENV: SECRET})
        hook_url = daemon.webhook_url()
        wait_for(daemon.evaluations, "the daemon's first evaluation", daemon)
        client = MlflowClient(tracking_uri=tracking)
        client.create_webhook(name="retrainer-watch", url=hook_url,
                              events=["model_version.created"], secret=SECRET)
        # Fitted on every row, so it also saw the holdout it is judged on: it beats the
        # champion (Ridge, alpha 1, on the training rows) on every metric.
        version = register_plain(tracking, LinearRegression(), proj / "data" / "diabetes.csv")
        assert version == "2"
        [tick] = wait_for(daemon.lines, "the delivery to be judged", daemon)
        assert "webhook: version 2 of diabetes-ridge registered" in daemon.stderr
        [record] = tick["cycles"]
        assert (record["challenger"]["version"], record["trigger"], record["decision"]) == \
            ("2", "new_version", "promoted")
        assert client.get_model_version("diabetes-ridge", "2").tags.get(
            "retrainer.decision") == "promoted"
        champion = client.get_model_version_by_alias("diabetes-ridge", "champion")
        assert str(champion.version) == "2"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.stderr
    finally:
        if daemon is not None:
            daemon.stop()
        _stop(server)
