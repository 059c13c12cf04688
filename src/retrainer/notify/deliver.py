"""Delivering notifications off the critical path: a thread per receiver, retries, records.

`send` returns at once: the caller's cycle, promotion or rollback has already been
recorded and is not delayed by a slow receiver. Each receiver gets `attempts` tries of at
most `timeout_seconds` each (5xx, 408, 429 and network errors are retried with a short
backoff; other 4xx are final); a delivery that never succeeds is recorded in the history
as `notify_failed`. Before the process exits it waits for deliveries in flight, bounded
by the same budget, so a CLI command never loses a notification it started.

Receiver URLs can hold credentials (a Slack webhook's path is its secret) and the
signing secret comes from the environment: neither appears in a log, a record or an
error; a receiver is named by its position and its scheme://host only.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from retrainer import stamp
from retrainer.events import NOTIFY_FAILED, TEST
from retrainer.notify.message import body as build_body
from retrainer.notify.message import one_line, run_url, version_of
from retrainer.notify.signing import DELIVERY_HEADER, EVENT_HEADER, signed_headers

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config, NotifyConfig

log = logging.getLogger("retrainer")

USER_AGENT = "retrainer-notify/1"
RECORD_BUDGET = 15.0  # seconds allowed, after the last attempt, to record a failure


@dataclass
class Result:
    """How one delivery to one receiver went."""

    receiver: str  # "#1 https://hooks.slack.com/…": never the full URL
    event: str
    ok: bool
    status: int | None
    attempts: int
    error: str | None
    seconds: float
    delivery_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def redact(url: str) -> str:
    """scheme://host[:port], plus '/…' when the URL had a path or query (never shown)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    hidden = "/…" if (parts.path.strip("/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def receiver_name(index: int, target: NotifyConfig) -> str:
    return f"#{index + 1} {redact(target.url)}"


# --------------------------------------------------------------------------- one POST

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: report the 3xx instead of re-posting."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text.splitlines()[0][:300] if text else text


def deliver(index: int, target: NotifyConfig, event: str, body: bytes, delivery_id: str,
            attempts: int | None = None) -> Result:
    """POST `body` to one receiver, retrying; never raises."""
    name = receiver_name(index, target)
    started = time.monotonic()
    secret = None
    if target.secret_env:
        secret = os.environ.get(target.secret_env)
        if not secret:
            return Result(name, event, False, None, 0,
                          f"environment variable {target.secret_env} (secret_env) is not set: "
                          "not sent unsigned", 0.0, delivery_id)
    limit = attempts or target.attempts
    status: int | None = None
    error: str | None = None
    attempt = 0
    for attempt in range(1, limit + 1):
        headers = {EVENT_HEADER: event, DELIVERY_HEADER: delivery_id}
        if secret:
            headers.update(signed_headers(secret, body))
        try:
            status = _post(target.url, body, headers, target.timeout_seconds)
        except (TimeoutError, OSError, urllib.error.URLError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            error = _scrub(f"{type(err).__name__}: {reason}", target.url, secret)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                error = f"no answer within {target.timeout_seconds:g} s"
            status = None
        else:
            if 200 <= status < 300:
                return Result(name, event, True, status, attempt, None,
                              round(time.monotonic() - started, 3), delivery_id)
            error = f"HTTP {status}"
            if not _retryable(status):
                break
        if attempt < limit:
            time.sleep(0.5 * 2 ** (attempt - 1))
    return Result(name, event, False, status, attempt, error,
                  round(time.monotonic() - started, 3), delivery_id)


def budget(target: NotifyConfig) -> float:
    """The longest a delivery to `target` can take (attempts, timeouts, backoff)."""
    backoff = sum(0.5 * 2 ** (i - 1) for i in range(1, target.attempts))
    # A read can time out after the connect did: two timeouts per attempt at worst.
    return target.attempts * 2 * target.timeout_seconds + backoff


# --------------------------------------------------------------------------- dispatch

@dataclass
class _InFlight:
    thread: threading.Thread
    deadline: float
    receiver: str


_inflight: list[_InFlight] = []
_inflight_lock = threading.Lock()
_atexit_registered = False


class Dispatch:
    """The deliveries one `send` started; `wait()` is for tests and `notify test`."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.threads: list[threading.Thread] = []

    def wait(self, timeout: float | None = None) -> list[Result]:
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            thread.join(None if end is None else max(end - time.monotonic(), 0.0))
        return list(self.results)


def send(cfg: Config, event: str, payload: dict[str, Any], *,
         client: MlflowClient | None = None) -> Dispatch | None:
    """Notify every receiver subscribed to `event`; returns at once, never raises.

    Call it after the event is recorded. `payload` is the decision record for a
    judgement, else a dict with at least `version` and `reason` (see docs/registry.md).
    """
    targets = [(i, t) for i, t in enumerate(cfg.notify) if event in t.events]
    if not targets:
        return None
    try:
        text = one_line(cfg.model, event, payload)
        at = stamp.now_iso()
    except Exception:  # noqa: BLE001 - a notification must never fail what it reports
        log.exception("could not build the %s notification", event)
        return None
    dispatch = Dispatch()
    for index, target in targets:
        thread = threading.Thread(
            target=_deliver_and_record, name=f"retrainer-notify-{index + 1}", daemon=True,
            args=(cfg, index, target, event, payload, text, at, client, dispatch))
        dispatch.threads.append(thread)
        _track(thread, budget(target) + RECORD_BUDGET + 5.0, receiver_name(index, target))
        thread.start()
    return dispatch


def _deliver_and_record(cfg: Config, index: int, target: NotifyConfig, event: str,
                        payload: dict[str, Any], text: str, at: str,
                        client: MlflowClient | None, dispatch: Dispatch) -> None:
    try:
        link = _link(cfg, payload, client)
        delivery_id = uuid.uuid4().hex
        data = build_body(target.format, event, cfg.model, payload, text, link, at,
                            delivery_id)
        result = deliver(index, target, event, data, delivery_id)
        dispatch.results.append(result)
        if result.ok:
            log.info("notified %s of %s", result.receiver, event)
            return
        log.warning("notification %s to %s failed after %d attempt(s): %s", event,
                    result.receiver, result.attempts, result.error)
        _record_failure(cfg, result, payload, client)
    except Exception:  # noqa: BLE001 - a daemon thread: log, never propagate
        log.exception("notification %s to %s failed", event, receiver_name(index, target))


def _link(cfg: Config, payload: dict[str, Any], client: MlflowClient | None) -> str | None:
    """The run's page in the MLflow UI, when the tracking server has an http(s) URL."""
    uri = cfg.tracking_uri or ""
    challenger = payload.get("challenger")
    run_id = challenger.get("run_id") if isinstance(challenger, dict) else None
    run_id = run_id or payload.get("run_id")
    if not run_id or not uri.startswith(("http://", "https://")):
        return None
    try:
        from mlflow import MlflowClient

        experiment = (client or MlflowClient(tracking_uri=uri)).get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - no link is better than no message
        return None
    return run_url(uri, experiment, run_id)


def _record_failure(cfg: Config, result: Result, payload: dict[str, Any],
                    client: MlflowClient | None) -> None:
    """`notify_failed` in the history (the receiver by scheme://host only)."""
    from retrainer import registry

    reason = (f"could not deliver {result.event} to {result.receiver} after "
              f"{result.attempts} attempt(s): {result.error}")
    for attempt in range(3):  # the store may be busy with the cycle that triggered this
        try:
            registry.record_event(client or registry.connect(cfg), cfg, NOTIFY_FAILED, {
                "decision": NOTIFY_FAILED, "reason": reason, "notified_event": result.event,
                "receiver": result.receiver, "attempts": result.attempts,
                "status": result.status, "error": result.error,
                "delivery_id": result.delivery_id,
                # Not the summary's decision_id: history joins alias moves by that id.
                "about_decision": payload.get("cycle_id") or payload.get("decision_id")},
                version=version_of(payload))
            return
        except Exception:  # noqa: BLE001
            if attempt == 2:
                log.exception("could not record the failed notification")
            time.sleep(0.5 * (attempt + 1))


def _track(thread: threading.Thread, seconds: float, receiver: str) -> None:
    global _atexit_registered
    with _inflight_lock:
        _inflight[:] = [f for f in _inflight if f.thread.is_alive()]
        _inflight.append(_InFlight(thread, time.monotonic() + seconds, receiver))
        if not _atexit_registered:
            atexit.register(drain)
            _atexit_registered = True


def drain() -> None:
    """Wait for deliveries in flight, each up to its own budget (runs at exit)."""
    with _inflight_lock:
        pending = list(_inflight)
        _inflight.clear()
    for flight in pending:
        flight.thread.join(max(flight.deadline - time.monotonic(), 0.0))
        if flight.thread.is_alive():
            log.warning("a notification to %s was still in flight at exit", flight.receiver)


# --------------------------------------------------------------------------- notify test

def send_test(cfg: Config) -> list[Result]:
    """`retrainer notify test`: one test message to every receiver, one attempt each."""
    at = stamp.now_iso()
    results: list[Result | None] = [None] * len(cfg.notify)

    def one(index: int, target: NotifyConfig) -> None:
        payload = {"model": cfg.model, "actor": stamp.actor(), "events": target.events,
                   "decision": TEST}
        text = one_line(cfg.model, TEST, payload)
        delivery_id = uuid.uuid4().hex
        data = build_body(target.format, TEST, cfg.model, payload, text, None, at,
                            delivery_id)
        results[index] = deliver(index, target, TEST, data, delivery_id, attempts=1)

    threads = [threading.Thread(target=one, args=(i, t), daemon=True)
               for i, t in enumerate(cfg.notify)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]
