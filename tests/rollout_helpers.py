"""Helpers for the rollout tests: projects with a canary, a model that raises on unseen
inputs, servers on the project's store, traffic, and the request log."""

from __future__ import annotations

import collections
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient

from conftest import edit_config
from watch_helpers import FEATURES, MODEL

#: What the canary tests' config says (each test may change it on its copy).
ROLLOUT = {"mode": "canary", "canary_share": 0.3, "bake_minutes": 60, "min_requests": 50}


def load_cfg(project: Path) -> Any:
    from retrainer.config import load

    return load(project / "retrainer.yaml")


def uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


def client(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=uri(project), registry_uri=uri(project))


def canary_config(project: Path, **rollout: Any) -> None:
    edit_config(project, serve={"inference_log": "logs", "poll_seconds": 0.2},
                rollout={**ROLLOUT, **rollout})


def aliases(project: Path) -> dict[str, str]:
    rm = client(project).get_registered_model(MODEL)
    return {a: str(v) for a, v in rm.aliases.items()}


def running_canary(project: Path) -> dict[str, Any] | None:
    from retrainer.registry import read_canary

    return read_canary(client(project), MODEL)


def version_tag(project: Path, version: str, key: str) -> str | None:
    return client(project).get_model_version(MODEL, version).tags.get(f"retrainer.{key}")


def at(iso: str, minutes: float = 0.0) -> datetime:
    from datetime import timedelta

    moment = datetime.fromisoformat(iso)
    return (moment + timedelta(minutes=minutes)).astimezone(timezone.utc)


class RangeChecked(mlflow.pyfunc.PythonModel):
    """A better Ridge that raises on a row outside the ranges it was trained on: it passes
    the gate (the holdout is inside them) and fails on live inputs the holdout never had."""

    def __init__(self, model: Any, low: dict[str, float], high: dict[str, float]) -> None:
        self.model, self.low, self.high = model, low, high

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        for col in FEATURES:
            values = model_input[col]
            if (values < self.low[col]).any() or (values > self.high[col]).any():
                raise ValueError(f"{col} outside the training range "
                                 f"[{self.low[col]:.3g}, {self.high[col]:.3g}]")
        return self.model.predict(model_input[FEATURES])


def register_range_checked(project: Path) -> str:
    """Fit on every row, log as a pyfunc with plain MLflow, register: a new version."""
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    frame = pd.read_csv(project / "data" / "diabetes.csv")
    X, y = frame[FEATURES], frame["target"]
    wrapped = RangeChecked(Ridge(alpha=1.0, solver="cholesky").fit(X, y),
                           X.min().to_dict(), X.max().to_dict())
    mlflow.set_tracking_uri(uri(project))
    c = client(project)
    name = "data-science-experiments"
    if c.get_experiment_by_name(name) is None:
        c.create_experiment(name, artifact_location=(project / "ds-artifacts").as_uri())
    mlflow.set_experiment(name)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=wrapped,
                                       signature=infer_signature(X, y), input_example=X[:3],
                                       pip_requirements=["scikit-learn", "pandas"])
    return str(mlflow.register_model(info.model_uri, MODEL).version)


def serving_app(project: Path, **overrides: Any) -> Any:
    """The ASGI app `retrainer serve` builds from the project's config, flushing its log
    fast and polling the aliases often (so tests do not wait)."""
    from retrainer.serving.server import create_app

    cfg = load_cfg(project)
    options = {"poll_seconds": 0.2, "log_flush_seconds": 0.2,
               "inference_log": cfg.resolve_path(cfg.serve.inference_log)
               if cfg.serve.inference_log else None,
               "canary_share": cfg.rollout.canary_share,
               "sticky_header": cfg.rollout.sticky_header, **overrides}
    return create_app(cfg.tracking_uri, cfg.model, **options)


def rows(project: Path) -> pd.DataFrame:
    return pd.read_csv(project / "data" / "diabetes.csv")[FEATURES]


def body(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                           "data": frame.to_numpy().tolist()}}).encode()


def send(url: str, bodies: list[bytes], headers: list[dict[str, str]] | None = None,
         clients: int = 4) -> list[tuple[int, str]]:
    """POST each body to /invocations (from a few clients at once, as traffic comes);
    (status, X-Model-Version) of each answer, in the order of `bodies`."""
    from concurrent.futures import ThreadPoolExecutor

    def part(k: int) -> list[tuple[int, tuple[int, str]]]:
        out = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(k, len(bodies), clients):
                extra = headers[i] if headers else {}
                r = http.post("/invocations", content=bodies[i],
                              headers={"Content-Type": "application/json", **extra})
                out.append((i, (r.status_code, r.headers.get("x-model-version", ""))))
        return out

    with ThreadPoolExecutor(clients) as pool:
        done = [x for chunk in pool.map(part, range(clients)) for x in chunk]
    return [answer for _, answer in sorted(done)]


def count(answers: list[tuple[int, str]]) -> collections.Counter[tuple[int, str]]:
    return collections.Counter(answers)


def logged_requests(project: Path) -> pd.DataFrame:
    folder = project / "logs" / "_requests"
    if not folder.exists() or not any(folder.glob("part-*.parquet")):
        return pd.DataFrame(columns=["request_id", "model_version", "role", "outcome"])
    return pd.read_parquet(folder)


def wait_logged(project: Path, n: int, timeout: float = 60) -> pd.DataFrame:
    """The request log once it holds at least `n` answers (servers flush in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = logged_requests(project)
        if len(frame) >= n:
            return frame
        if time.monotonic() > deadline:
            raise AssertionError(f"the request log holds {len(frame)} answers, not {n}")
        time.sleep(0.2)


def write_request_log(project: Path, answers: list[tuple[str, str, str, float]],
                      start: datetime, pid: int = 4242) -> None:
    """Parts of the request log as a server writes them (its own writer), for tests whose
    subject is not the traffic: (model_version, role, outcome, latency_ms) per answer."""
    import pyarrow.parquet as pq

    from retrainer.serving.inference_log import REQUESTS_DIR, _answers_table
    from retrainer.serving.records import Answer

    folder = project / "logs" / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    t0 = start.timestamp()
    items = [Answer(t0 + 1 + i * 0.01, f"{pid}-{i}", v, role, outcome,
                    200 if outcome == "ok" else 400, latency, 1 if outcome == "ok" else 0)
             for i, (v, role, outcome, latency) in enumerate(answers)]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    pq.write_table(_answers_table(items), folder / f"part-{stamp}-{pid}-000001.parquet")
