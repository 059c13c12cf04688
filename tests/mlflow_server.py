"""A real team setup for tests: `mlflow server` on a fresh PostgreSQL database.

Session-scoped: one server for the whole run (starting it costs ~12 s). Each test that
uses it registers its own model name, so tests never see each other's versions. On
teardown the server's process group is stopped and the database dropped.

PostgreSQL runs on 127.0.0.1:5432 with trust auth (user postgres) on these machines; when
it is not reachable the tests that need it are skipped, not failed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@dataclass
class MlflowServer:
    url: str  # tracking URI for retrainer.yaml
    db_url: str  # the backend database; also where advisory locks are taken
    artifacts: Path
    log: Path
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin(sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT",
                                      poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(sql))
    finally:
        engine.dispose()


def postgres_available() -> bool:
    try:
        _admin("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - no server, no driver: skip
        return False


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f} s:\n"
                       f"{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # The server runs uvicorn workers as children: stop the whole process group.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """`mlflow server --backend-store-uri postgresql+psycopg2://…` on a free loopback port."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    db = f"retrainer_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{db}"')
    db_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts, log = root / "artifacts", root / "server.log"
    artifacts.mkdir()
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    env = {**os.environ,
           # The job executor starts seven huey consumers (~15 s on two cores); unused here.
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(mlflow_bin), "server", "--backend-store-uri", db_url,
             "--artifacts-destination", str(artifacts), "--serve-artifacts",
             # One uvicorn worker: it serves the suite's few concurrent clients from its
             # thread pool, and each more worker is a fresh interpreter importing the
             # whole MLflow server (~5 CPU-s) on a CPU-bound two-core machine.
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log, timeout=120)
        yield MlflowServer(url=url, db_url=db_url, artifacts=artifacts, log=log, pid=proc.pid)
    finally:
        _stop(proc)
        _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards); its URL."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    db = f"retrainer_lock_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{db}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
