"""The entry points: `watch --once` (one strict tick) and the daemon (ticks in a loop).

Both hold the watch lock (one watcher per model). The daemon evaluates every `interval`
seconds, polls new versions every `poll_seconds` and at once when a verified webhook
announces one, backs off when an evaluation fails, and stops on SIGTERM: the first lets
the cycle in progress finish, a second abandons it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import locks, registry
from retrainer.errors import UserError
from retrainer.triggers.clock import DaemonClock, utcnow
from retrainer.triggers.watcher import Abandoned, TickResult, Watcher, backoff_seconds
from retrainer.triggers.webhooks import WebhookReceiver, WebhookServer, webhook_secret

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

log = logging.getLogger("retrainer")


# --------------------------------------------------------------------------- locking

def watch_lock_path(cfg: Config) -> Path:
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
        yield  # signal handlers can only be installed from the main thread
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
        if not watcher.configured() and not watcher.watches_rollout():
            log.warning("the config's `triggers` section is empty: nothing to watch")
        with _graceful_signals(watcher):
            return watcher.tick(now or utcnow(), strict=True)


def run_daemon(cfg: Config, *, interval: float = 60.0, now: datetime | None = None,
               webhook_port: int | None = None, webhook_host: str = "127.0.0.1",
               on_tick: Callable[[TickResult], None] | None = None,
               on_ready: Callable[[str | None], None] | None = None,
               client: MlflowClient | None = None, clock: DaemonClock | None = None,
               stop: threading.Event | None = None) -> int:
    """`retrainer watch`: evaluate the triggers every `interval` seconds until SIGTERM.

    `now` pins every evaluation to one moment (``--now``); `clock` replaces the real
    one; setting `stop` stops the daemon as a first SIGTERM does. Returns the exit code.
    """
    secret = webhook_secret(cfg) if webhook_port is not None else None
    with watch_lock(cfg):
        watcher = Watcher(cfg, client)
        if not watcher.configured() and not watcher.watches_rollout():
            raise UserError("no triggers configured: add a `triggers` section to the config "
                            "(schedule, drift, new_version, performance)")
        if stop is not None:
            watcher.stopping = stop
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
        try:
            if on_ready:
                on_ready(server.url if server else None)
            with _graceful_signals(watcher, wake):
                _loop(cfg, watcher, clock or DaemonClock(), interval, now, wake,
                      webhook_due, on_tick)
        finally:
            if server is not None:
                server.stop()
    return 0


def _loop(cfg: Config, watcher: Watcher, clock: DaemonClock, interval: float,
          now: datetime | None, wake: threading.Event, webhook_due: threading.Event,
          on_tick: Callable[[TickResult], None] | None) -> None:
    """Full evaluations every `interval`, new-version checks every `poll_seconds` or when
    a webhook announced one; a failed evaluation (say the store is down) backs off."""
    poll = cfg.triggers.new_version.poll_seconds if cfg.triggers.new_version else None
    next_full = next_poll = clock.monotonic()
    failures = 0
    while not watcher.stopping.is_set():
        moment = clock.monotonic()
        full = moment >= next_full
        check_versions = webhook_due.is_set() or (poll is not None and moment >= next_poll)
        webhook_due.clear()
        if full or check_versions:
            try:
                result = watcher.tick(now or clock.now(), only=None if full else {"new_version"})
            except Exception:  # noqa: BLE001 - the daemon outlives a failed evaluation
                failures += 1
                pause = backoff_seconds(cfg, failures)
                log.exception("watch evaluation failed; next try in %.0f s", pause)
                next_full = next_poll = clock.monotonic() + pause
                clock.wait(wake, pause)
                continue
            failures = 0
            if on_tick:
                on_tick(result)
            if result.abandoned:
                break
            if full:
                next_full = clock.monotonic() + interval
            if poll is not None:
                next_poll = clock.monotonic() + poll
        deadline = min(next_full, next_poll if poll is not None else next_full)
        clock.wait(wake, max(deadline - clock.monotonic(), 0.0))
