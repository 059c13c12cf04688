"""Hot swap: follow a registered model's aliases and swap in each new version.

A background thread polls the alias (or is woken by POST /refresh); a new version is
downloaded, loaded and made to predict its own input example before one reference
assignment swaps it in. Each request reads that reference once, so requests in flight
finish on the version they started with. A version that fails its check is not served:
the old one keeps serving, /health says why, and the same version is retried only after a
back-off.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from retrainer.serving.metrics import Metrics
from retrainer.serving.model import LoadedModel, load_version, resolve_version

log = logging.getLogger("retrainer.serving")


@dataclass
class Failure:
    """A version that failed to load or to predict, and when to try it again."""

    version: str
    error: str
    at: float
    retry_after: float


@dataclass
class Served:
    """What one alias currently serves, and what went wrong following it."""

    alias: str
    model: LoadedModel | None = None  # swapped by one assignment; requests read it once
    alias_version: str | None = None
    failure: Failure | None = None
    dirs: list[str] = field(default_factory=list)


class Follower:
    """Polls the registry for the served aliases in one thread; loads and swaps versions."""

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None,
        model_name: str,
        poll_seconds: float,
        served: list[Served],
        metrics: Metrics,
        workdir: str,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.served = served
        self.champion = served[0]  # swaps and swap failures are counted for the first only
        self.metrics = metrics
        self.workdir = workdir
        self.last_poll: float | None = None
        self.last_poll_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    def start(self) -> None:
        """Follow the aliases in a thread (``poll_once`` first loads what they point to now)."""
        self._thread = threading.Thread(target=self._loop, name="retrainer-poller", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Check the aliases now (e.g. on a registry webhook) instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.poll_once()

    def poll_once(self) -> None:
        from mlflow import MlflowClient

        try:
            # One client for the poller's life: building one opens (and for sqlite, checks
            # the schema of) the store, which would steal the GIL from requests every poll.
            if self._client is None:
                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
                )
            for served in self.served:
                self._follow(self._client, served)
            self.last_poll_error = None
        except Exception as exc:  # noqa: BLE001 - a registry hiccup must not stop serving
            self.last_poll_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "registry poll failed (still serving %s): %s",
                version_of(self.champion.model),
                self.last_poll_error,
            )
        self.last_poll = time.time()

    def _follow(self, client: Any, s: Served) -> None:
        version = resolve_version(client, self.model_name, s.alias)
        s.alias_version = version
        current = s.model
        is_champion = s is self.champion
        if version is None:
            if not is_champion:
                s.model = None  # a shadow alias removed: stop shadowing
            return
        if current is not None and current.version == version:
            s.failure = None
            return
        now = time.time()
        if s.failure and s.failure.version == version and now < s.failure.retry_after:
            return
        try:
            new = load_version(
                self.tracking_uri, self.registry_uri, self.model_name, version, self.workdir, client
            )
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old version serving
            error = describe(exc)
            first = not (s.failure and s.failure.version == version)
            s.failure = Failure(version, error, now, now + max(30.0, 6 * self.poll_seconds))
            if is_champion:
                self.metrics.swap_failures += first
            if first:
                log.error(
                    "%s: version %s failed its check, keeping version %s: %s",
                    s.alias,
                    version,
                    version_of(current),
                    error,
                )
            return
        s.model = new  # the swap: one reference assignment; requests read it once
        s.failure = None
        s.dirs.append(new.local_dir)
        while len(s.dirs) > 2:  # keep the previous version's files for in-flight stragglers
            shutil.rmtree(s.dirs.pop(0), ignore_errors=True)
        if is_champion and current is not None:
            self.metrics.swaps += 1
        log.info(
            "%s: now serving version %s (was %s; %s, %s)",
            s.alias,
            version,
            version_of(current),
            new.mode,
            new.check,
        )


def describe(exc: BaseException, limit: int = 500) -> str:
    """The exception's type and message on one line, without MLflow's ``#####`` banners.

    MLflow's download errors put the cause (e.g. "No such artifact") after a first line
    that only says a download failed, so the first line alone would hide it.
    """
    lines = [line.strip() for line in str(exc).splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith("#####"))
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def version_of(model: LoadedModel | None) -> str:
    return model.version if model is not None else "none"
