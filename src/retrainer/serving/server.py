"""Entry points: build the app from options, and run it under uvicorn (one or N workers)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from retrainer.errors import UserError
from retrainer.serving.app import ServingApp

log = logging.getLogger("retrainer.serving")

_ENV_CONFIG = "RETRAINER_SERVE_CONFIG"


def create_app(
    tracking_uri: str,
    model_name: str,
    *,
    alias: str = "champion",
    poll_seconds: float = 5.0,
    token_env: str | None = None,
    inference_log: str | None = None,
    shadow: bool = False,
    max_body_bytes: int = 50 * 2**20,
    registry_uri: str | None = None,
    log_flush_seconds: float = 5.0,
    canary_share: float = 0.0,
    sticky_header: str | None = None,
) -> ServingApp:
    """The ASGI app serving ``model_name@alias``; the model loads at lifespan startup.

    With ``canary_share`` it also follows the ``canary`` alias and answers that share of
    /invocations with it (by a hash of ``sticky_header`` when the request has one).
    """
    token = None
    if token_env:
        token = os.environ.get(token_env, "")
        if not token:
            raise UserError(
                f"serve: token_env is {token_env} but that environment variable is empty or unset"
            )
    if poll_seconds <= 0:
        raise UserError("serve: poll_seconds must be positive")
    if not 0.0 <= canary_share < 1.0:
        raise UserError(f"serve: canary_share must be in [0, 1), got {canary_share}")
    return ServingApp(
        tracking_uri,
        model_name,
        alias=alias,
        poll_seconds=poll_seconds,
        token=token,
        inference_log=inference_log,
        shadow=shadow,
        max_body_bytes=max_body_bytes,
        registry_uri=registry_uri,
        log_flush_seconds=log_flush_seconds,
        canary_share=canary_share,
        sticky_header=sticky_header,
    )


def app_from_env() -> ServingApp:
    """uvicorn factory for ``--workers N``: each worker builds its own app and poller."""
    _logs_to_stderr()
    options = json.loads(os.environ[_ENV_CONFIG])
    return create_app(options.pop("tracking_uri"), options.pop("model_name"), **options)


def _logs_to_stderr() -> None:
    # A server's stdout carries nothing; MLflow's prints and our logs both go to stderr.
    sys.stdout = sys.stderr
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def serve(
    tracking_uri: str,
    model_name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "warning",
    access_log: bool = False,
    **options: Any,
) -> None:
    """Run uvicorn; with ``workers > 1`` every worker follows the alias on its own."""
    import uvicorn

    _logs_to_stderr()
    if workers < 1:
        raise UserError("serve: workers must be at least 1")
    # Fail fast on bad options before uvicorn forks workers.
    create_app(tracking_uri, model_name, **options).stop()
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        uvicorn.run(create_app(tracking_uri, model_name, **options), **common)
        return
    os.environ[_ENV_CONFIG] = json.dumps(
        {"tracking_uri": tracking_uri, "model_name": model_name, **options}
    )
    uvicorn.run("retrainer.serving.server:app_from_env", factory=True, workers=workers, **common)
