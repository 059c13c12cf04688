"""MLflow registry webhooks: verify a signed delivery, and the small server that receives it.

Verification follows MLflow's delivery code (mlflow/webhooks/delivery.py, the Standard
Webhooks scheme). A verified ``model_version.created`` for this model only wakes the
new-version check: what is judged is always read from the registry.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError

if TYPE_CHECKING:
    from retrainer.config import Config

log = logging.getLogger("retrainer")

# MLflow's delivery headers (mlflow/webhooks/constants.py) and Standard Webhooks' default
# tolerance for the timestamp.
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
WEBHOOK_TOLERANCE_SECONDS = 300
WEBHOOK_PATH = "/webhooks/mlflow"
MAX_WEBHOOK_BODY = 1_000_000


def sign(secret: str, delivery_id: str, timestamp: str, payload: str) -> str:
    """The signature header value MLflow sends: ``v1,`` + base64 HMAC-SHA256 of
    ``{delivery_id}.{timestamp}.{payload}`` (mlflow/webhooks/delivery.py)."""
    digest = hmac.new(secret.encode("utf-8"), f"{delivery_id}.{timestamp}.{payload}"
                      .encode(), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def webhook_secret(cfg: Config) -> str:
    """The secret deliveries are signed with, from the environment; a secret is mandatory."""
    spec = cfg.triggers.new_version
    if spec is None or not spec.webhook_secret_env:
        raise UserError("--webhook-port needs triggers.new_version.webhook_secret_env: the "
                        "name of the environment variable holding the webhook's secret "
                        "(unsigned deliveries are always rejected)")
    secret = os.environ.get(spec.webhook_secret_env)
    if not secret:
        raise UserError(f"environment variable {spec.webhook_secret_env} (the webhook "
                        "secret) is not set")
    return secret


@dataclass
class Verdict:
    """A delivery's answer: the HTTP status, why, and the payload when it was accepted."""

    status: int
    message: str
    payload: dict[str, Any] | None = None


class WebhookReceiver:
    """Verifies MLflow webhook deliveries; rejection changes nothing.

    Rejected with 401: no signature headers, a signature that does not match, a
    timestamp more than `tolerance` seconds from now (stale or replayed later), a
    delivery id already accepted (replayed).
    """

    def __init__(self, model: str, secret: str,
                 on_version: Callable[[dict[str, Any]], None],
                 on_accept: Callable[[str, int], None] | None = None,
                 seen: list[list[Any]] | None = None,
                 tolerance: float = WEBHOOK_TOLERANCE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.model, self._secret, self.tolerance, self.clock = model, secret, tolerance, clock
        self.on_version, self.on_accept = on_version, on_accept
        self._seen: dict[str, int] = {str(d[0]): int(d[1]) for d in (seen or [])}
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], body: bytes) -> Verdict:
        lower = {k.lower(): v for k, v in headers.items()}
        signature = lower.get(SIGNATURE_HEADER.lower())
        stamp = lower.get(TIMESTAMP_HEADER.lower())
        delivery = lower.get(DELIVERY_ID_HEADER.lower())
        if not signature or not stamp or not delivery:
            return Verdict(401, "unsigned delivery: the X-MLflow-Signature, X-MLflow-Timestamp "
                                "and X-MLflow-Delivery-Id headers are required")
        try:
            text = body.decode("utf-8")
            sent_at = int(stamp)
        except (UnicodeDecodeError, ValueError):
            return Verdict(401, "malformed delivery: bad timestamp or body encoding")
        expected = sign(self._secret, delivery, stamp, text)
        # Standard Webhooks allows several space-separated signatures (secret rotation).
        if not any(hmac.compare_digest(expected, s) for s in signature.split()):
            return Verdict(401, "bad signature")
        now = self.clock()
        if abs(now - sent_at) > self.tolerance:
            return Verdict(401, f"stale delivery: timestamp {sent_at} is more than "
                                f"{self.tolerance:.0f} s from now")
        with self._lock:
            horizon = now - 2 * self.tolerance
            self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
            if delivery in self._seen:
                return Verdict(401, f"replayed delivery {delivery}")
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                return Verdict(400, "the body is not JSON")
            self._seen[delivery] = sent_at
        if self.on_accept:
            self.on_accept(delivery, sent_at)
        return Verdict(200, "ok", payload if isinstance(payload, dict) else {})

    def handle(self, headers: Mapping[str, str], body: bytes) -> Verdict:
        """Verify, then act on ``model_version.created`` for this model only."""
        verdict = self.verify(headers, body)
        if verdict.status != 200 or verdict.payload is None:
            return verdict
        payload = verdict.payload
        data = payload.get("data") or {}
        if (payload.get("entity"), payload.get("action")) != ("model_version", "created") \
                or data.get("name") != self.model:
            return Verdict(200, "ignored: not a new version of " + self.model)
        log.info("webhook: version %s of %s registered", data.get("version"), self.model)
        self.on_version(payload)
        return Verdict(202, "accepted: checking new versions", payload)


class WebhookServer:
    """A small Starlette app on uvicorn in a background thread."""

    def __init__(self, receiver: WebhookReceiver, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        import socket

        self.receiver = receiver
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as err:
            self._sock.close()
            raise UserError(f"cannot listen for webhooks on {host}:{port}: {err.strerror}") \
                from None
        self._sock.listen(64)
        self.host, self.port = host, self._sock.getsockname()[1]
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{WEBHOOK_PATH}"

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        receiver = self.receiver

        async def deliver(request: Request) -> JSONResponse:
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > MAX_WEBHOOK_BODY:
                return JSONResponse({"error": "body too large"}, status_code=413)
            body = await request.body()
            if len(body) > MAX_WEBHOOK_BODY:
                return JSONResponse({"error": "body too large"}, status_code=413)
            verdict = receiver.handle(request.headers, body)
            if verdict.status >= 400:
                log.warning("webhook rejected (%d): %s", verdict.status, verdict.message)
                return JSONResponse({"error": verdict.message}, status_code=verdict.status)
            return JSONResponse({"status": verdict.message}, status_code=verdict.status)

        async def health(_request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok", "model": receiver.model})

        return Starlette(routes=[Route(WEBHOOK_PATH, deliver, methods=["POST"]),
                                 Route("/health", health, methods=["GET"])])

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.app(), log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]},
                                        name="retrainer-webhooks", daemon=True)
        self._thread.start()
        log.info("listening for MLflow webhooks on %s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self._sock.close()
