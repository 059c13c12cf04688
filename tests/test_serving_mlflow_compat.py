"""Same model, same payloads: retrainer serve answers as `mlflow models serve` does.

Both servers run for real, side by side, each in its own process on a loopback port:
MLflow's scoring server (`--env-manager local`) and ours through `retrainer serve`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from serving_helpers import ProcessServer, Store, diabetes, free_port, ridge, split_payload

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:X does not have valid")]


def _payloads(X: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    records = X.to_dict(orient="records")
    js = "application/json"
    return {
        "dataframe_split": (json.dumps(split_payload(X)).encode(), js),
        "split_reordered_with_extra_column": (
            json.dumps(split_payload(X[list(reversed(X.columns))].assign(extra=1.5))).encode(),
            js,
        ),
        "dataframe_records": (json.dumps({"dataframe_records": records}).encode(), js),
        "instances_records": (json.dumps({"instances": records}).encode(), js),
        "inputs_columns": (
            json.dumps({"inputs": {c: X[c].tolist() for c in X.columns}}).encode(),
            js,
        ),
        "inputs_records": (json.dumps({"inputs": records}).encode(), js),
        "inputs_one_row_scalars": (json.dumps({"inputs": records[0]}).encode(), js),
        "numbers_as_strings": (
            json.dumps(
                {
                    "dataframe_split": {
                        "columns": list(X.columns),
                        "data": X.astype(str).to_numpy().tolist(),
                    }
                }
            ).encode(),
            js,
        ),
        "params_ignored": (json.dumps({**split_payload(X), "params": {"a": 1}}).encode(), js),
        "csv": (X.to_csv(index=False).encode(), "text/csv"),
        "csv_charset": (X.to_csv(index=False).encode(), "text/csv; charset=utf-8"),
    }


def _rejected(X: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    js = "application/json"
    row = X.iloc[0].tolist()
    return {
        "missing_column": (json.dumps(split_payload(X.drop(columns="bmi"))).encode(), js),
        "positional_split": (json.dumps({"dataframe_split": {"data": [row]}}).encode(), js),
        "instances_lists": (json.dumps({"instances": [row]}).encode(), js),
        "null_value": (
            json.dumps(
                {"dataframe_split": {"columns": list(X.columns), "data": [[None, *row[1:]]]}}
            ).encode(),
            js,
        ),
        "not_a_number": (
            json.dumps(
                {"dataframe_split": {"columns": list(X.columns), "data": [["x", *row[1:]]]}}
            ).encode(),
            js,
        ),
        "malformed_json": (b'{"dataframe_split": {', js),
        "empty_body": (b"", js),
        "no_rows": (
            json.dumps({"dataframe_split": {"columns": list(X.columns), "data": []}}).encode(),
            js,
        ),
        "unknown_key": (b'{"rows": [[1]]}', js),
        "unsupported_type": (b"age=1", "application/x-www-form-urlencoded"),
        "format_parameter": (
            json.dumps(split_payload(X)).encode(),
            "application/json; format=pandas-split",
        ),
    }


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    X, y = diabetes()
    store = Store.create(tmp_path_factory.mktemp("compat-store"))
    store.register("compat", *store.log_sklearn(ridge(1.0, X, y), X), alias="champion")
    # mlflow models serve execs `uvicorn` from PATH: the venv's bin, even if not activated.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {"MLFLOW_TRACKING_URI": store.uri, "PATH": path}
    p_mlflow, p_ours = free_port(), free_port()
    theirs = ProcessServer(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/compat@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(p_mlflow),
            "-w",
            "1",
        ],
        p_mlflow,
        env=env,
        timeout=180,
    )
    # Ours as a user starts it: `retrainer serve` with a config naming the model and store.
    config = store.root / "retrainer.yaml"
    config.write_text(
        f"model: compat\ntracking_uri: {store.uri}\ndata: {{source: unused.csv}}\n"
        "train: {estimator: sklearn.linear_model.Ridge}\n"
    )
    ours = ProcessServer.retrainer(
        ["serve", "-c", str(config), "--port", str(p_ours)],
        p_ours,
        env=env,
        timeout=180,
    )
    theirs.start()
    ours.start()
    try:
        theirs.wait()
        ours.wait()
        yield theirs.url, ours.url
    finally:
        ours.__exit__()
        theirs.__exit__()


def _post(url: str, body: bytes, ctype: str) -> httpx.Response:
    return httpx.post(
        url + "/invocations", content=body, headers={"Content-Type": ctype}, timeout=60
    )


def test_same_predictions_as_mlflow_models_serve(servers: tuple[str, str]) -> None:
    theirs, ours = servers
    X, _ = diabetes()
    for frame in (X.iloc[:1], X.iloc[10:17], pd.concat([X, X, X]).iloc[:1000]):
        for name, (body, ctype) in _payloads(frame).items():
            if name == "inputs_one_row_scalars" and len(frame) > 1:
                continue
            a, b = _post(theirs, body, ctype), _post(ours, body, ctype)
            assert a.status_code == b.status_code == 200, (name, a.text, b.text)
            assert b.headers["x-model-version"] == "1"
            pa, pb = a.json()["predictions"], b.json()["predictions"]
            assert len(pa) == len(pb) == (1 if name == "inputs_one_row_scalars" else len(frame))
            np.testing.assert_allclose(pb, pa, rtol=1e-12, err_msg=name)


def test_rejects_what_mlflow_rejects_with_a_4xx(servers: tuple[str, str]) -> None:
    theirs, ours = servers
    X, _ = diabetes()
    for name, (body, ctype) in _rejected(X.iloc[:2]).items():
        a, b = _post(theirs, body, ctype), _post(ours, body, ctype)
        assert 400 <= a.status_code < 500, (name, a.status_code, a.text)
        assert b.status_code == a.status_code, (name, a.text, b.text)
        assert b.json()["message"], name


def test_side_endpoints_match(servers: tuple[str, str]) -> None:
    theirs, ours = servers
    for path in ("/ping", "/health", "/version"):
        a, b = httpx.get(theirs + path), httpx.get(ours + path)
        assert a.status_code == b.status_code == 200, path
    assert httpx.get(theirs + "/version").text == httpx.get(ours + "/version").text
