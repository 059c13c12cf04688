"""The ASGI app: MLflow's scoring protocol plus /health, /model, /metrics and /refresh.

A bare ASGI callable (no framework routing or middleware) with orjson: part of why it
answers an order of magnitude more requests than ``mlflow models serve``. Every response
carries ``X-Model-Version``; every POST /invocations is counted by version, role and outcome
and, with an inference log, recorded in the request log (``inference_log.py``). During a
canary rollout a share of /invocations is answered by the ``canary`` alias's version
(``retrainer.rollout.routing``), with role ``canary``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from retrainer.rollout.routing import Router
from retrainer.serving.fast_input import UseGeneralPath
from retrainer.serving.follower import Follower, Served
from retrainer.serving.inference_log import Sidecar
from retrainer.serving.metrics import Metrics
from retrainer.serving.model import LoadedModel, iso
from retrainer.serving.protocol import (
    CT_CSV,
    CT_JSON,
    CT_PARQUET,
    OK,
    SERVER_ERROR,
    BadInput,
    HttpError,
    ModelError,
    Unavailable,
    dump_predictions,
    error_body,
    json_payload,
    parse_content_type,
    read_table,
    rows_of,
    unsupported,
)
from retrainer.serving.records import Answer, Scored

log = logging.getLogger("retrainer.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CHAMPION = "champion"  # the role of the version that answers
CANARY = "canary"  # ...or, during a canary rollout, for its share of requests
_KNOWN_PATHS = frozenset(
    ["/invocations", "/ping", "/health", "/version", "/model", "/metrics", "/refresh"]
)
# What /invocations hands back to the request loop: status, body, content type, rows
# scored, and the scored request for the inference log (None unless a sidecar wants it).
_Scoring = tuple[int, bytes, str, int, Scored | None]


class ServingApp:
    """The ASGI application. Build it with :func:`retrainer.serving.server.create_app`."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        *,
        alias: str = "champion",
        poll_seconds: float = 5.0,
        token: str | None = None,
        inference_log: str | None = None,
        shadow: bool = False,
        max_body_bytes: int = 50 * 2**20,
        registry_uri: str | None = None,
        log_flush_seconds: float = 5.0,
        canary_share: float = 0.0,
        sticky_header: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.token = token.encode() if token else None
        self.max_body = max_body_bytes
        self.metrics = Metrics()
        self.champion = Served(alias)
        self.challenger = Served("challenger") if shadow else None
        # The canary alias is followed (and answers its share) whenever a share is set.
        self.canary = Served(CANARY) if canary_share > 0 else None
        self.router = Router(canary_share, sticky_header) if canary_share > 0 else None
        self._workdir = tempfile.mkdtemp(prefix="retrainer-serve-")
        self.follower = Follower(
            tracking_uri,
            registry_uri,
            model_name,
            poll_seconds,
            [s for s in (self.champion, self.canary, self.challenger) if s is not None],
            self.metrics,
            self._workdir,
        )
        self.sidecar = (
            Sidecar(self.metrics, inference_log, shadow, log_flush_seconds)
            if (inference_log or shadow)
            else None
        )
        self._started = False
        self._start_lock = threading.Lock()
        self._request_seq = 0
        self._pid = os.getpid()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Load the current version (blocking) and start the poller and sidecar threads."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
            self.follower.poll_once()
            _freeze_heap()
            self.follower.start()
            if self.sidecar is not None:
                self.sidecar.start()

    def stop(self) -> None:
        """Stop polling, flush the inference log, remove downloaded artifacts."""
        self.follower.stop()
        if self.sidecar is not None and self.sidecar.is_alive():
            self.sidecar.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def refresh(self) -> None:
        """Check the alias now (e.g. on a registry webhook) instead of at the next poll."""
        self.follower.wake()

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await loop.run_in_executor(None, self.start)
                except Exception as exc:  # noqa: BLE001
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await loop.run_in_executor(None, self.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        model = self.champion.model  # read once: this request's version, whatever swaps
        role = CHAMPION
        path = scope["path"]
        method = scope["method"]
        rows, scored, outcome = 0, None, OK
        if not self._started:
            await asyncio.get_running_loop().run_in_executor(None, self.start)
            model = self.champion.model
        try:
            if path != "/ping" and self.token is not None:
                self._authorize(scope)
            if path == "/refresh" and method == "POST":
                self.refresh()
                status, body, ctype = 202, b'{"refresh": "requested"}', CT_JSON
            elif path == "/invocations":
                if method != "POST":
                    raise BadInput("use POST", 405, "METHOD_NOT_ALLOWED")
                if self.router is not None:
                    canary = self.canary.model  # type: ignore[union-attr]
                    if (
                        canary is not None
                        and model is not None
                        and canary.version != model.version
                        and self.router.to_canary(scope["headers"], canary.version)
                    ):
                        model, role = canary, CANARY
                status, body, ctype, rows, scored = await self._invocations(scope, receive, model)
            elif method not in ("GET", "HEAD"):
                raise BadInput(f"{method} is not allowed on {path}", 405, "METHOD_NOT_ALLOWED")
            elif path == "/ping":
                status = 200 if model is not None else 503
                body, ctype = b"\n", CT_JSON
            elif path == "/health":
                status, body, ctype = self._health(model)
            elif path == "/version":
                from mlflow.version import VERSION

                status, body, ctype = 200, VERSION.encode(), CT_JSON  # as mlflow serves it
            elif path == "/model":
                status, body, ctype = self._model_info(model)
            elif path == "/metrics":
                text = self.metrics.render(
                    self.champion.model,
                    self.challenger.model if self.challenger else None,
                    self.canary.model if self.canary else None,
                    self.router.share if self.router else 0.0,
                )
                status, body, ctype = 200, text.encode(), "text/plain; version=0.0.4"
            else:
                raise BadInput(f"no such endpoint: {path}", 404, "NOT_FOUND")
        except HttpError as exc:
            status, ctype, outcome = exc.status, CT_JSON, exc.outcome
            body = error_body(exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: say so, keep serving
            log.exception("internal error on %s %s", method, path)
            status, ctype, outcome = 500, CT_JSON, SERVER_ERROR
            body = error_body("INTERNAL_ERROR", repr(exc))
        version = model.version if model else None
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-model-version", (version or "none").encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="retrainer"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        if path != "/invocations":
            self.metrics.observe(path if path in _KNOWN_PATHS else "other", status)
            return
        seconds = time.perf_counter() - started
        self.metrics.observe_invocation(status, seconds, rows, version or "none", role, outcome)
        sidecar = self.sidecar
        if sidecar is not None and (scored is not None or sidecar.wants_answers):
            request_id = scored.request_id if scored is not None else self._request_id()
            sidecar.submit(
                Answer(
                    time.time(),
                    request_id,
                    version,
                    role,
                    outcome,
                    status,
                    seconds * 1000.0,
                    rows,
                    scored,
                )
            )

    def _authorize(self, scope: Scope) -> None:
        supplied = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                supplied = value
                break
        scheme, _, token = supplied.partition(b" ")
        assert self.token is not None
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.token):
            raise BadInput("missing or wrong bearer token", 401, "UNAUTHENTICATED")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise BadInput("invalid Content-Length header") from None
                if declared > self.max_body:
                    raise BadInput(
                        f"request body of {declared} bytes is over the limit of "
                        f"{self.max_body} bytes",
                        413,
                        "REQUEST_TOO_LARGE",
                    )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadInput("client disconnected")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    raise BadInput(
                        f"request body is over the limit of {self.max_body} bytes",
                        413,
                        "REQUEST_TOO_LARGE",
                    )
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- scoring ---------------------------------------------------------------------

    async def _invocations(
        self, scope: Scope, receive: Receive, model: LoadedModel | None
    ) -> _Scoring:
        ctype_raw = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype_raw = value
                break
        mime = parse_content_type(ctype_raw.decode("latin-1"))
        body = await self._read_body(scope, receive)
        if model is None:
            raise Unavailable(
                f"no version of model '{self.model_name}' is loaded yet "
                f"(alias '{self.champion.alias}')"
            )
        if not body.strip():
            raise BadInput("empty request body")
        x: np.ndarray | None = None
        if mime == CT_JSON:
            payload, keys = json_payload(body)
            if model.fast and len(keys) == 1 and not ("params" in payload and model.has_params):
                with contextlib.suppress(UseGeneralPath):
                    x = model.convert(keys[0], payload[keys[0]])
            if x is None:
                return await self._general(model, payload, mime)
        elif mime in (CT_CSV, CT_PARQUET):
            fast_table = model.fast and model.columns is not None
            # The fast path reads CSV as is, so a bad cell's column can be named; MLflow's
            # path reads it with the signature's dtypes, as `mlflow models serve` does.
            frame = read_table(body, mime, None if fast_table else model.input_schema)
            if not fast_table:
                return await self._general(model, frame, mime)
            x = model.frame_to_array(frame)
        else:
            raise unsupported(mime)
        try:
            predictions = model.predict_array(x)
        except Exception as exc:  # noqa: BLE001 - valid input, the model refused it (e.g. NaN)
            raise ModelError.of(exc) from None
        out = dump_predictions(predictions)
        return 200, out, CT_JSON, x.shape[0], self._scored(model, x, None, predictions)

    async def _general(self, model: LoadedModel, payload: Any, mime: str) -> _Scoring:
        """MLflow's own parsing and pyfunc.predict, off the event loop as MLflow does."""
        loop = asyncio.get_running_loop()
        data, predictions, out = await loop.run_in_executor(
            None, model.score_general, payload, mime
        )
        return 200, out, CT_JSON, rows_of(data), self._scored(model, None, data, predictions)

    def _scored(
        self, model: LoadedModel, x: np.ndarray | None, frame: Any, predictions: Any
    ) -> Scored | None:
        if self.sidecar is None:
            return None
        challenger = self.challenger.model if self.challenger else None
        return Scored(time.time(), self._request_id(), model, x, frame, predictions, challenger)

    def _request_id(self) -> str:
        self._request_seq += 1
        return f"{self._pid}-{self._request_seq}"

    # -- side endpoints --------------------------------------------------------------

    def _health(self, model: LoadedModel | None) -> tuple[int, bytes, str]:
        s, follower = self.champion, self.follower
        problems = []
        if s.failure is not None:
            problems.append(
                f"version {s.failure.version} failed its check and is not served: {s.failure.error}"
            )
        if follower.last_poll_error:
            problems.append(f"registry poll failed: {follower.last_poll_error}")
        if model is None:
            status = "no_model"
            if s.alias_version is None and not s.failure:
                problems.append(
                    f"model '{self.model_name}' has no alias '{s.alias}' "
                    "(nor a legacy stage version)"
                )
        else:
            if s.alias_version is None and follower.last_poll_error is None:
                problems.append(
                    f"alias '{s.alias}' is no longer set (nor a legacy stage version); "
                    f"still serving version {model.version}"
                )
            status = "degraded" if problems else "ok"
        doc: dict[str, Any] = {
            "status": status,
            "model": self.model_name,
            "alias": s.alias,
            "version": model.version if model else None,
            "alias_version": s.alias_version,
            "loaded_at": iso(model.loaded_at) if model else None,
            "scoring_path": model.mode if model else None,
            "last_poll": iso(follower.last_poll) if follower.last_poll else None,
            "poll_seconds": self.poll_seconds,
            "pid": self._pid,  # each uvicorn worker follows the alias on its own
            "problems": problems,
            "failed_version": (
                {"version": s.failure.version, "error": s.failure.error, "at": iso(s.failure.at)}
                if s.failure
                else None
            ),
        }
        if self.canary is not None and self.router is not None:
            c = self.canary
            if c.failure is not None:
                problems.append(
                    f"canary version {c.failure.version} failed its check and is not "
                    f"served: {c.failure.error}"
                )
                doc["status"] = "degraded" if model is not None else doc["status"]
            doc["canary"] = {
                "alias": c.alias,
                "version": c.model.version if c.model else None,
                "alias_version": c.alias_version,
                "share": self.router.share,
                "sticky_header": self.router.header.decode() if self.router.header else None,
                "failed_version": c.failure.version if c.failure else None,
                "error": c.failure.error if c.failure else None,
            }
        if self.challenger is not None:
            c = self.challenger
            doc["shadow"] = {
                "alias": c.alias,
                "version": c.model.version if c.model else None,
                "alias_version": c.alias_version,
                "failed_version": c.failure.version if c.failure else None,
                "error": c.failure.error if c.failure else None,
            }
        return (200 if model is not None else 503), orjson.dumps(doc), CT_JSON

    def _model_info(self, model: LoadedModel | None) -> tuple[int, bytes, str]:
        if model is None:
            raise Unavailable(f"no version of model '{self.model_name}' is loaded")
        doc = {"alias": self.champion.alias, **model.info()}
        if self.challenger is not None and self.challenger.model is not None:
            doc["challenger"] = self.challenger.model.info()
        if self.canary is not None and self.canary.model is not None:
            doc["canary"] = {**self.canary.model.info(), "share": self.router.share}  # type: ignore[union-attr]
        return 200, orjson.dumps(doc), CT_JSON


def _freeze_heap() -> None:
    """Move what is loaded at startup (MLflow, pandas, the model) out of the collector's sight.

    Requests allocate many short-lived objects (a 1,000-row JSON body is 11,000 of them),
    so full collections come often; each one walked MLflow's and pandas' heap (~360,000
    objects, ~270 ms) and stalled every request in flight: that was the p99. Frozen
    objects are skipped. This runs once, at startup, not at each swap: a collection then
    would be that same stall in the middle of the traffic. Models loaded later are not
    frozen, so the collector reclaims a swapped-out one as usual.
    """
    import gc

    gc.collect()
    gc.freeze()
