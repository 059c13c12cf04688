"""Helpers for the serving and batch tests: real MLflow stores, real models, real servers.

An empty MLflow sqlite database costs seconds of migrations, so one migrated template is
made per test process and copied for every store. Models are logged with explicit pip
requirements (no requirement inference) and registered versions of an already logged
model are created with ``create_model_version`` (milliseconds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

import cli_runner

PIP = ["scikit-learn", "skops"]


def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True)
    return data.data, data.target


@contextlib.contextmanager
def tracking(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``uri`` for the block, then restore it."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def _template() -> Path:
    from conftest import empty_store_template

    return empty_store_template()


@dataclass
class Store:
    """A fresh sqlite tracking/registry store with its artifacts in ``root``."""

    root: Path
    uri: str
    experiment_id: str
    models: dict[str, Any] = field(default_factory=dict)  # model_uri -> fitted estimator
    runs: dict[str, str] = field(default_factory=dict)  # model_uri -> run_id

    @classmethod
    def create(cls, root: Path) -> Store:
        from mlflow import MlflowClient

        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(_template(), root / "mlflow.db")
        uri = f"sqlite:///{root / 'mlflow.db'}"
        exp = MlflowClient(tracking_uri=uri).create_experiment(
            "tests", artifact_location=(root / "artifacts").as_uri()
        )
        return cls(root, uri, exp)

    @property
    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def log_sklearn(
        self, model: Any, X: Any, example: Any = None, signature: Any = None
    ) -> tuple[str, str]:
        """Log a fitted (or deliberately broken) estimator; returns (model_uri, run_id)."""
        import mlflow
        from mlflow.models import infer_signature

        if signature is None:
            signature = infer_signature(X, model.predict(X))
        example = X[:5] if example is None else example
        with tracking(self.uri), mlflow.start_run(experiment_id=self.experiment_id) as run:
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                pip_requirements=PIP,
            )
        self.models[info.model_uri] = model
        self.runs[info.model_uri] = run.info.run_id
        return info.model_uri, run.info.run_id

    def log_pyfunc(self, python_model: Any, X: pd.DataFrame, y: Any) -> tuple[str, str]:
        """Log a custom ``PythonModel`` (MLflow's general path); returns (model_uri, run_id)."""
        import mlflow
        from mlflow.models import infer_signature

        with tracking(self.uri), mlflow.start_run(experiment_id=self.experiment_id) as run:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model,
                signature=infer_signature(X, y),
                input_example=X[:3],
                pip_requirements=["pandas"],
            )
        self.models[info.model_uri] = python_model
        self.runs[info.model_uri] = run.info.run_id
        return info.model_uri, run.info.run_id

    def register(self, name: str, model_uri: str, run_id: str, alias: str | None = None) -> str:
        """A new registered version of a logged model; returns the version as str."""
        from mlflow.exceptions import MlflowException

        client = self.client
        with contextlib.suppress(MlflowException):
            client.create_registered_model(name)
        # MLflow resolves a models:/m-... source through the global tracking URI.
        with tracking(self.uri):
            mv = client.create_model_version(name, model_uri, run_id=run_id)
        version = str(mv.version)
        if alias:
            client.set_registered_model_alias(name, alias, version)
        return version

    def set_alias(self, name: str, alias: str, version: str) -> None:
        # sqlite may be busy while a server polls it: retry briefly.
        for attempt in range(20):
            try:
                self.client.set_registered_model_alias(name, alias, version)
                return
            except Exception:  # noqa: BLE001
                if attempt == 19:
                    raise
                time.sleep(0.1)


def ridge(alpha: float, X: pd.DataFrame, y: pd.Series) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, solver="cholesky").fit(X, y)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """uvicorn serving an ASGI app on a free loopback port, in a thread of this process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()


class ProcessServer:
    """A server command in its own process group on a free port; stopped with its group.

    `ProcessServer(argv, ...)` starts a fresh interpreter (for servers that are not ours:
    `mlflow models serve`). `ProcessServer.retrainer(args, ...)` and
    `ProcessServer.script(path, ...)` fork the process from the CLI fork server instead
    (cli_runner: MLflow, scikit-learn and pandas already imported, ~4 CPU-s less per
    server); the fork still leads a process group of its own, and the workers a
    multi-worker uvicorn starts are fresh interpreters either way.
    """

    def __init__(
        self,
        argv: list[str],
        port: int,
        env: dict[str, str] | None = None,
        ready_path: str = "/ping",
        timeout: float = 120,
    ) -> None:
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **(env or {})}
        self.ready_path = ready_path
        self.timeout = timeout
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self.proc: subprocess.Popen[bytes] | cli_runner.ForkedCli | None = None
        self._forked: tuple[list[str], str | None] | None = None

    @classmethod
    def retrainer(cls, args: list[str], port: int, env: dict[str, str] | None = None,
                  ready_path: str = "/ping", timeout: float = 120) -> ProcessServer:
        """`retrainer ARGS` (e.g. `serve -c CONFIG --port PORT`), forked."""
        server = cls(["retrainer", *args], port, env, ready_path, timeout)
        server._forked = (list(args), None)
        return server

    @classmethod
    def script(cls, path: Path, port: int, env: dict[str, str] | None = None,
               ready_path: str = "/ping", timeout: float = 120) -> ProcessServer:
        """`python PATH`, forked (guard its work with `if __name__ == "__main__":`, as
        multiprocessing's spawned workers import the script)."""
        server = cls(["python", str(path)], port, env, ready_path, timeout)
        server._forked = ([], str(path))
        return server

    def __enter__(self) -> ProcessServer:
        self.start()
        return self.wait()

    def start(self) -> ProcessServer:
        """Launch without waiting (start several, then ``wait`` for each)."""
        if self._forked is not None:
            args, script = self._forked
            env = {k: v for k, v in self.env.items() if k != "PYTEST_CURRENT_TEST"}
            self.proc = cli_runner.start(args, os.getcwd(), env, script=script,
                                         new_session=True)
            return self
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait(self) -> ProcessServer:
        """Block until the ready path answers 200; stop the server and fail otherwise."""
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"server not ready in {self.timeout}s:\n{self.output()}")

    def output(self) -> str:
        if isinstance(self.proc, cli_runner.ForkedCli):
            return "".join(self.proc.output())
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # a new session: the group id is the server's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Workers of a multi-process server share the group: make sure none outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.log.close()


def split_payload(X: pd.DataFrame) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(X.columns), "data": X.to_numpy().tolist()}}


def predictions(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["predictions"], dtype=float)


def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        time.sleep(interval)


def python_server_argv(code: str) -> list[str]:
    return [sys.executable, "-c", code]
