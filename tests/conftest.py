"""Shared fixtures: a diabetes project on a fresh embedded store, and a CLI runner.

Everything is real: a sqlite MLflow store and a local artifact folder in a temp dir.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Tests run two at a time on two cores (pytest-xdist), each spawning CLI subprocesses:
# math libraries' own thread pools would oversubscribe the cores and spin-wait. Set before
# numpy loads; subprocesses inherit it.
for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_pool, "1")

import pytest  # noqa: E402

# Shared fixtures: the PostgreSQL-backed `mlflow server` and fresh databases, the watch
# tests' champion project, the rollout servers (their modules say more).
pytest_plugins = ["mlflow_server", "watch_fixtures", "rollout_fixtures"]


def strict_ci() -> bool:
    """Under CI every real part must be there: a skip would let CI pass without it."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI, fail at once (one clear line) when a real part the suite needs is missing."""
    if not strict_ci():
        return
    from mlflow_server import postgres_available

    missing = []
    if not postgres_available():
        missing.append("PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth)")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing.append("pyspark (the spark extra)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing.append("Java (for Spark local mode)")
    if missing:
        pytest.exit("CI is set but these real parts are missing: " + "; ".join(missing),
                    returncode=1)


def _fail_skip_under_ci(report: Any) -> None:
    if strict_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every real part must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one local Spark session of this test process (~10 s to start), from retrainer's
    own builder: every Spark test shares it, and the code under test finds it running."""
    pytest.importorskip("pyspark")
    from retrainer.config import SparkConfig
    from retrainer.spark import get_spark

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    # The tests' data is tiny: one core (one Python worker to start), no whole-stage code
    # generation, and a JVM that compiles with C1 only and a serial GC spend half the CPU
    # (63 -> 32 CPU-s for the Spark tests) on a machine where the suite is CPU-bound.
    session = get_spark(SparkConfig(master="local[1]", app_name="retrainer-tests", conf={
        "spark.sql.shuffle.partitions": 2,
        "spark.default.parallelism": 2,
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.sql.codegen.wholeStage": "false",
        "spark.driver.extraJavaOptions":
            f"-Djava.io.tmpdir={warehouse} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    }))
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep expensive shared fixtures from being built once per test process
    (`--dist loadgroup`): tests on the Spark session run in one process (one JVM), tests on
    the PostgreSQL-backed MLflow server in one, and so do the tests of a module with a
    module-scoped fixture (a trained project, a server)."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "spark" in names:
            group = "spark"
        elif "mlflow_server" in names:  # one PostgreSQL-backed server, not one per process
            group = "mlflow-server"
        elif _uses_module_fixture(item):
            group = item.module.__name__
        else:
            continue
        # xdist's own hook, which turns xdist_group marks into this suffix, has run before
        # a conftest's: name the group the way it does.
        if "@" not in item.nodeid.rpartition("]")[2]:
            item._nodeid = f"{item.nodeid}@{group}"


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope == "module" and defs[-1].baseid.endswith(".py")
               for name, defs in info.name2fixturedefs.items()
               if name in getattr(item, "fixturenames", ()))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str, cwd: Path | str, env: dict[str, str] | None = None,
            timeout: float = 300, fresh: bool = False) -> Result:
    """Run `retrainer ARGS` in a process of its own, as a user would.

    The process is forked from a server that has the libraries imported (cli_runner says
    why); `fresh=True` starts a new interpreter, for tests about the process itself.
    """
    import cli_runner

    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return Result(*cli_runner.run(list(args), cwd, full_env, timeout, fresh=fresh))


@pytest.fixture
def cli() -> Callable[..., Result]:
    return run_cli


@pytest.fixture(scope="session", autouse=True)
def _session_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Temp files of the code under test (lock files, MLflow's init locks, subprocesses'
    TMPDIR) go in pytest's own temp tree instead of being left in /tmp."""
    folder = str(tmp_path_factory.mktemp("tmpdir"))
    before_env, before = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    # `retrainer drift` keeps the champion it checked against (drift/champion_cache.py)
    # in the user's cache folder: here, in this run's temp tree.
    os.environ["RETRAINER_CACHE_DIR"] = str(tmp_path_factory.mktemp("retrainer-cache"))
    yield
    tempfile.tempdir = before
    if before_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before_env


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own temp folder: a default ./mlflow.db or ./mlruns lands there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


_EMPTY_STORE: list[Path] = []


def empty_store_template() -> Path:
    """An empty, fully migrated sqlite MLflow store, made once per test process: copy it,
    never write to it.

    Creating a store runs MLflow's migrations (~2-5 CPU-s); tests copy this file instead.
    The copy is a real store, the same one MLflow would have created. One per process for
    every fixture and helper (the serving helpers' `Store` too), not one each.
    """
    if not _EMPTY_STORE:
        from mlflow import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="retrainer-mlflow-template-"))
        atexit.register(shutil.rmtree, folder, True)
        db = folder / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
        _EMPTY_STORE.append(db)
    return _EMPTY_STORE[0]


@pytest.fixture(scope="session")
def store_template() -> Path:
    """`empty_store_template()` as a fixture."""
    return empty_store_template()


@pytest.fixture
def fresh_store(store_template: Path) -> Callable[[Path], str]:
    """Copy an empty migrated store into a folder; returns its tracking URI."""
    def make(folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store_template, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return make


@pytest.fixture
def project(tmp_path: Path, fresh_store: Callable[[Path], str]) -> Path:
    """A `retrainer init --example diabetes` project in a temp folder, with its store."""
    from retrainer.project import write_example

    write_example(tmp_path, "diabetes")
    fresh_store(tmp_path)
    return tmp_path


def edit_config(project: Path, replace: tuple[str, ...] = (), **changes: Any) -> None:
    """Change top-level keys of retrainer.yaml (dicts merge one level unless in `replace`)."""
    import yaml

    path = project / "retrainer.yaml"
    raw = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict) and key not in replace:
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def snapshot(uri: str, model: str) -> dict[str, Any]:
    """Versions (with tags and stages), aliases and model tags: for 'registry unchanged'."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        rm = client.get_registered_model(model)
    except Exception:  # noqa: BLE001 - no model yet
        return {}
    versions = client.search_model_versions(f"name='{model}'")
    return {"aliases": {a: str(v) for a, v in rm.aliases.items()}, "tags": dict(rm.tags),
            "versions": sorted((str(v.version), tuple(sorted(v.tags.items())), v.current_stage)
                               for v in versions)}


def registry_snapshot(project: Path, model: str = "diabetes-ridge") -> dict[str, Any]:
    """`snapshot` of a project's embedded store (empty when there is no store yet)."""
    db = project / "mlflow.db"
    return snapshot(f"sqlite:///{db}", model) if db.exists() else {}


def copy_project(source: Path, target: Path) -> Path:
    """A private copy of a project and its store (absolute artifact paths rewritten)."""
    import contextlib
    import sqlite3

    shutil.copytree(source, target)
    with sqlite3.connect(target / "mlflow.db") as conn:
        for table, col in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                           ("model_versions", "source"), ("model_versions", "storage_location"),
                           ("logged_models", "artifact_location")):
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute(f"UPDATE {table} SET {col} = REPLACE({col}, ?, ?)",
                             (str(source), str(target)))
    return target
