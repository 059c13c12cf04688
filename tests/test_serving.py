"""The REST server on a real MLflow store, over real HTTP on loopback.

Covers the scoring protocol (every body format gives the model's own predictions), the
side endpoints, input validation (400/413/415 with a message, never a 5xx), client errors
told apart from model errors (/metrics, the request log), token auth, the inference log,
shadow mode, a model that takes MLflow's general path, a tensor signature, a registry
without the alias, and fuzzed request bodies (valid ones must be scored right).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrainer.errors import UserError
from retrainer.serving.server import create_app
from serving_helpers import (
    Store,
    ThreadServer,
    diabetes,
    predictions,
    ridge,
    split_payload,
    wait_for,
)

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")
MODEL = "diab"
COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
MODEL_ERRORS = "retrainer_serving_model_errors_total"
REQUEST_LOG_COLUMNS = [
    "ts",
    "request_id",
    "model_version",
    "role",
    "outcome",
    "status",
    "latency_ms",
    "rows",
]


def invocations(outcome: str, version: str = "1") -> str:
    return (
        f'retrainer_serving_invocations_total{{version="{version}",role="champion",'
        f'outcome="{outcome}"}}'
    )


def series(http: httpx.Client, name: str) -> float:
    """One sample of /metrics; a labelled series not created yet counts 0."""
    for line in http.get("/metrics").text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return 0.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """diab v1 = Ridge(alpha=1) (champion), v2 = Ridge(alpha=10) (challenger)."""
    X, y = diabetes()
    s = Store.create(tmp_path_factory.mktemp("serving-store"))
    uri1, run1 = s.log_sklearn(ridge(1.0, X, y), X)
    uri2, run2 = s.log_sklearn(ridge(10.0, X, y), X)
    s.register(MODEL, uri1, run1, alias="champion")
    s.register(MODEL, uri2, run2, alias="challenger")
    s.models["v1"], s.models["v2"] = s.models[uri1], s.models[uri2]
    return s


@pytest.fixture(scope="module")
def server(store: Store) -> Any:
    with ThreadServer(create_app(store.uri, MODEL, poll_seconds=0.5)) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: ThreadServer) -> Any:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def expected(store: Store, X: pd.DataFrame, version: str = "v1") -> np.ndarray:
    return store.models[version].predict(X)


def rows(n: int = 7, start: int = 0) -> pd.DataFrame:
    X, _ = diabetes()
    return X.iloc[start : start + n].reset_index(drop=True)


# --------------------------------------------------------------------------- protocol


def _bodies(X: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    records = X.to_dict(orient="records")
    buf = io.BytesIO()
    X.to_parquet(buf)
    shuffled = X[list(reversed(X.columns))].assign(extra="ignored")
    return {
        "dataframe_split": (json.dumps(split_payload(X)).encode(), "application/json"),
        "split_reordered_extra": (
            json.dumps(split_payload(shuffled)).encode(),
            "application/json; charset=utf-8",
        ),
        "dataframe_records": (
            json.dumps({"dataframe_records": records}).encode(),
            "application/json",
        ),
        "instances": (json.dumps({"instances": records}).encode(), "application/json"),
        "inputs_columns": (
            json.dumps({"inputs": {c: X[c].tolist() for c in X.columns}}).encode(),
            "application/json",
        ),
        "inputs_records": (json.dumps({"inputs": records}).encode(), "application/json"),
        "string_numbers": (
            json.dumps(
                {
                    "dataframe_split": {
                        "columns": list(X.columns),
                        "data": X.astype(str).to_numpy().tolist(),
                    }
                }
            ).encode(),
            "application/json",
        ),
        "csv": (X.to_csv(index=False).encode(), "text/csv"),
        "parquet": (buf.getvalue(), "application/vnd.apache.parquet"),
    }


@pytest.mark.parametrize("fmt", list(_bodies(rows(1))))
def test_every_format_scores_like_the_model(http: httpx.Client, store: Store, fmt: str) -> None:
    X = rows(7, start=30)
    body, ctype = _bodies(X)[fmt]
    r = http.post("/invocations", content=body, headers={"Content-Type": ctype})
    assert r.headers["x-model-version"] == "1"
    np.testing.assert_allclose(predictions(r), expected(store, X), rtol=1e-9)


def test_one_row_and_a_thousand(http: httpx.Client, store: Store) -> None:
    X, _ = diabetes()
    big = pd.concat([X, X, X]).iloc[:1000]
    for frame in (X.iloc[:1], big):
        r = http.post("/invocations", json=split_payload(frame))
        np.testing.assert_allclose(predictions(r), expected(store, frame), rtol=1e-9)


def test_side_endpoints(http: httpx.Client, store: Store) -> None:
    import mlflow

    ping = http.get("/ping")
    assert ping.status_code == 200 and ping.headers["x-model-version"] == "1"
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["version"] == "1"
    assert health["alias"] == "champion" and health["problems"] == []
    assert http.get("/version").text == mlflow.__version__
    model = http.get("/model").json()
    run_id = store.client.get_model_version(MODEL, "1").run_id
    assert model["name"] == MODEL and model["version"] == "1" and model["run_id"] == run_id
    assert model["loaded_at"] and model["scoring_path"] == "sklearn-numpy"
    http.post("/invocations", json=split_payload(rows(3)))
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for series in (
        'retrainer_serving_requests_total{path="/invocations",code="200"}',
        "retrainer_serving_errors_total",
        'retrainer_serving_request_duration_seconds_bucket{le="+Inf"}',
        "retrainer_serving_rows_scored_total",
        'retrainer_serving_model_version{model="diab",version="1"',
        "retrainer_serving_model_swaps_total 0",
        "retrainer_serving_model_errors_total",
        invocations("ok"),
        'retrainer_serving_invocation_duration_seconds_bucket{version="1",role="champion",'
        'outcome="ok",le="+Inf"}',
    ):
        assert series in text, series
    missing = http.get("/nope")
    assert missing.status_code == 404 and missing.headers["x-model-version"] == "1"
    assert http.get("/invocations").status_code == 405
    assert http.post("/refresh").status_code == 202


# --------------------------------------------------------------------------- bad input

ONE = [0.01 * i for i in range(10)]
BAD_INPUTS = [
    ("malformed JSON", b'{"dataframe_split": ', "application/json", 400, "malformed JSON"),
    ("empty body", b"", "application/json", 400, "empty"),
    ("a list", b"[1, 2]", "application/json", 400, "JSON object"),
    ("no format key", b'{"data": [[1]]}', "application/json", 400, "dataframe_split"),
    (
        "two format keys",
        json.dumps({"dataframe_records": [], "instances": []}).encode(),
        "application/json",
        400,
        "exactly one",
    ),
    (
        "missing column",
        json.dumps({"dataframe_split": {"columns": COLUMNS[1:], "data": [ONE[1:]]}}).encode(),
        "application/json",
        400,
        "missing column(s): age",
    ),
    (
        "wrong type",
        json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [["old"] + ONE[1:]]}}).encode(),
        "application/json",
        400,
        "column 'age' expects double; row 0 has 'old'",
    ),
    (
        "wrong type in records",
        json.dumps(
            {"dataframe_records": [dict(zip(COLUMNS, [*ONE[:2], {"a": 1}, *ONE[3:]], strict=True))]}
        ).encode(),
        "application/json",
        400,
        "column 'bmi'",
    ),
    (
        "ragged rows",
        json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ONE, ONE[:4]]}}).encode(),
        "application/json",
        400,
        "row 1 has 4 values",
    ),
    (
        "no rows",
        json.dumps({"dataframe_split": {"columns": COLUMNS, "data": []}}).encode(),
        "application/json",
        400,
        "no rows",
    ),
    (
        "records missing a column everywhere",
        json.dumps({"dataframe_records": [{c: 0.1 for c in COLUMNS[:-1]}]}).encode(),
        "application/json",
        400,
        "missing column(s): s6",
    ),
    (
        "split with unknown keys",
        json.dumps({"dataframe_split": {"columns": COLUMNS, "rows": [ONE]}}).encode(),
        "application/json",
        400,
        "'data' field",
    ),
    ("csv missing column", b"age,sex\n1,2\n", "text/csv", 400, "missing column(s): bmi"),
    (
        "csv not numbers",
        ("\n".join([",".join(COLUMNS), ",".join(["x"] * 10)]) + "\n").encode(),
        "text/csv",
        400,
        "age",
    ),
    ("csv not utf-8", b"\xff\xfe\x00", "text/csv", 400, "UTF-8"),
    ("bad parquet", b"PAR1 nope", "application/vnd.apache.parquet", 400, "parquet"),
    ("form content type", b"a=1", "application/x-www-form-urlencoded", 415, "content type"),
    ("no content type", b"{}", "", 415, "content type"),
    ("latin-1 charset", b"{}", "application/json; charset=latin-1", 415, "UTF-8"),
    (
        "positional split",
        json.dumps({"dataframe_split": {"data": [ONE]}}).encode(),
        "application/json",
        400,
        "missing inputs",
    ),
]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "message"),
    [case[1:] for case in BAD_INPUTS],
    ids=[c[0] for c in BAD_INPUTS],
)
def test_bad_input_is_a_4xx_naming_the_problem(
    http: httpx.Client, body: bytes, ctype: str, status: int, message: str
) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    model_errors = series(http, MODEL_ERRORS)
    client_errors = series(http, invocations("client_error"))
    r = http.post("/invocations", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["x-model-version"] == "1"
    doc = r.json()
    assert message.lower() in doc["message"].lower(), doc
    assert doc["error_code"]
    # The client's mistake, not the model's.
    assert series(http, invocations("client_error")) == client_errors + 1
    assert series(http, MODEL_ERRORS) == model_errors


def test_a_null_the_signature_allows_is_the_models_error(http: httpx.Client) -> None:
    """The signature takes a null in a double column; Ridge cannot: a 400, as MLflow answers,
    counted as a model error (the fast path calls the estimator itself)."""
    model_errors, ok = series(http, MODEL_ERRORS), series(http, invocations("ok"))
    body = {"dataframe_split": {"columns": COLUMNS, "data": [[None] + ONE[1:]]}}
    r = http.post("/invocations", json=body)
    assert r.status_code == 400 and r.headers["x-model-version"] == "1"
    assert r.json()["error_code"] == "BAD_REQUEST"
    assert "could not score this input: ValueError" in r.json()["message"]
    assert "NaN" in r.json()["message"]
    assert series(http, MODEL_ERRORS) == model_errors + 1
    assert series(http, invocations("model_error")) >= 1
    assert series(http, invocations("ok")) == ok


def test_too_large_is_413(store: Store) -> None:
    X = rows(50)
    app = create_app(store.uri, MODEL, max_body_bytes=2000)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url) as http:
        small = http.post("/invocations", json=split_payload(X.iloc[:2]))
        assert small.status_code == 200
        big = http.post("/invocations", json=split_payload(X))
        assert big.status_code == 413 and "2000 bytes" in big.json()["message"]

        def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(20):
                yield b" " * 500

        streamed = http.post(
            "/invocations", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413


# --------------------------------------------------------------------------- auth


def test_bearer_token_on_everything_but_ping(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRAINER_TEST_TOKEN", "s3cret-token")
    app = create_app(store.uri, MODEL, token_env="RETRAINER_TEST_TOKEN")
    good = {"Authorization": "Bearer s3cret-token"}
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url) as http:
        assert http.get("/ping").status_code == 200
        for path in ("/health", "/model", "/metrics", "/version"):
            assert http.get(path).status_code == 401, path
            assert http.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
            assert http.get(path, headers=good).status_code == 200
        denied = http.post("/invocations", json=split_payload(rows(2)))
        assert denied.status_code == 401 and "www-authenticate" in denied.headers
        assert (
            http.post(
                "/invocations",
                json=split_payload(rows(2)),
                headers={"Authorization": "Basic s3cret-token"},
            ).status_code
            == 401
        )
        assert (
            http.post("/invocations", json=split_payload(rows(2)), headers=good).status_code == 200
        )


def test_token_env_must_be_set(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETRAINER_TEST_NO_TOKEN", raising=False)
    with pytest.raises(UserError, match="RETRAINER_TEST_NO_TOKEN"):
        create_app(store.uri, MODEL, token_env="RETRAINER_TEST_NO_TOKEN")


# --------------------------------------------------------------------------- log, shadow


def test_inference_log_is_readable_parquet(store: Store, tmp_path: Path) -> None:
    log_dir = tmp_path / "inference"
    app = create_app(store.uri, MODEL, inference_log=str(log_dir), log_flush_seconds=0.2)
    X = rows(40)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url) as http:
        for i in range(10):  # 10 requests of 4 rows: JSON fast path
            part = X.iloc[4 * i : 4 * i + 4]
            assert http.post("/invocations", json=split_payload(part)).status_code == 200
        csv = http.post(
            "/invocations",
            content=X.iloc[:3].to_csv(index=False),
            headers={"Content-Type": "text/csv"},
        )
        assert csv.status_code == 200
        # Parts appear while serving, not only at shutdown.
        wait_for(lambda: list(log_dir.glob("part-*.parquet")), timeout=30)
    logged = pd.read_parquet(log_dir)
    assert len(logged) == 43
    assert set(COLUMNS) <= set(logged.columns)
    assert {"ts", "request_id", "model_version", "prediction"} <= set(logged.columns)
    assert (logged["model_version"] == "1").all()
    assert logged["request_id"].nunique() == 11
    logged = logged.sort_values(["ts", "request_id"], kind="stable")
    np.testing.assert_allclose(
        logged["prediction"].to_numpy(),
        expected(store, logged[COLUMNS]),
        rtol=1e-9,
    )
    assert not list(log_dir.glob(".*"))  # no half-written parts left


def test_shadow_scores_the_challenger_and_answers_with_the_champion(
    store: Store, tmp_path: Path
) -> None:
    log_dir = tmp_path / "shadow"
    app = create_app(
        store.uri, MODEL, shadow=True, inference_log=str(log_dir), log_flush_seconds=0.2
    )
    X = rows(12)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url) as http:
        for i in range(3):
            part = X.iloc[4 * i : 4 * i + 4]
            r = http.post("/invocations", json=split_payload(part))
            assert r.headers["x-model-version"] == "1"
            np.testing.assert_allclose(predictions(r), expected(store, part), rtol=1e-9)
        health = http.get("/health").json()
        assert health["shadow"]["version"] == "2"
        assert http.get("/model").json()["challenger"]["version"] == "2"
        wait_for(
            lambda: "retrainer_serving_shadow_rows_total 12" in http.get("/metrics").text,
            timeout=30,
        )
    logged = pd.read_parquet(log_dir)
    assert len(logged) == 12
    assert (logged["model_version"] == "1").all() and (logged["challenger_version"] == "2").all()
    np.testing.assert_allclose(logged["prediction"], expected(store, logged[COLUMNS]), rtol=1e-9)
    np.testing.assert_allclose(
        logged["challenger_prediction"], expected(store, logged[COLUMNS], "v2"), rtol=1e-9
    )


# --------------------------------------------------------------------------- whose fault


def _refuser() -> Any:
    """A pyfunc model that sums each row but raises on any age over 0.05: a model bug that
    valid input reaches (defined here so MLflow pickles it by value)."""
    import mlflow

    class Refuser(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            if (model_input["age"] > 0.05).any():
                raise ValueError("age over 0.05: this model cannot score it")
            return model_input.sum(axis=1).to_numpy()

    return Refuser()


def test_client_and_model_errors_are_counted_and_logged_apart(store: Store, tmp_path: Path) -> None:
    """The same 400 as mlflow models serve, but /metrics and the request log say whose fault."""
    X, _ = diabetes()
    fine, refused = X[X["age"] <= 0.05].iloc[:6], X[X["age"] > 0.05].iloc[:2]
    uri, run = store.log_pyfunc(_refuser(), fine, fine.sum(axis=1).to_numpy())
    store.register("refuser", uri, run, alias="champion")
    log_dir = tmp_path / "log"
    app = create_app(store.uri, "refuser", inference_log=str(log_dir), log_flush_seconds=0.2)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        assert http.get("/model").json()["scoring_path"] == "pyfunc"  # MLflow's general path
        ok = http.post("/invocations", json=split_payload(fine.iloc[:3]))
        np.testing.assert_allclose(predictions(ok), fine.iloc[:3].sum(axis=1), rtol=1e-12)
        # Rejected by the signature (MLflow's schema enforcement inside pyfunc.predict).
        missing = http.post("/invocations", json=split_payload(fine.drop(columns="bmi")))
        assert missing.status_code == 400 and "bmi" in missing.json()["message"]
        # Valid input, and the model raises on it.
        failed = http.post("/invocations", json=split_payload(refused))
        assert failed.status_code == 400 and failed.headers["x-model-version"] == "1"
        assert failed.json()["error_code"] == "BAD_REQUEST"
        assert "ValueError: age over 0.05" in failed.json()["message"]
        malformed = http.post(
            "/invocations", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400
        text = http.get("/metrics").text
        assert f"{MODEL_ERRORS} 1\n" in text
        for outcome, n in (("ok", 1), ("client_error", 2), ("model_error", 1)):
            assert f"{invocations(outcome)} {n}\n" in text, outcome
        assert (
            'retrainer_serving_invocation_duration_seconds_count{version="1",role="champion",'
            'outcome="model_error"} 1\n'
        ) in text
        assert 'retrainer_serving_requests_total{path="/invocations",code="400"} 3\n' in text
    # Stopping the server flushed both logs.
    requests = pd.read_parquet(log_dir / "_requests")
    assert list(requests.columns) == REQUEST_LOG_COLUMNS
    requests = requests.sort_values("ts", kind="stable").reset_index(drop=True)
    assert requests["outcome"].tolist() == ["ok", "client_error", "model_error", "client_error"]
    assert requests["status"].tolist() == [200, 400, 400, 400]
    assert requests["rows"].tolist() == [3, 0, 0, 0]
    assert (requests["model_version"] == "1").all() and (requests["role"] == "champion").all()
    assert (requests["latency_ms"] > 0).all() and requests["request_id"].is_unique
    assert str(requests["ts"].dtype) == "datetime64[us, UTC]"
    assert str(requests["status"].dtype) == "int64" and str(requests["rows"].dtype) == "int64"
    # The row-level log (what drift reads) holds the scored rows only, and joins on request_id.
    logged = pd.read_parquet(log_dir)
    assert len(logged) == 3 and set(logged["request_id"]) == {requests["request_id"][0]}
    np.testing.assert_allclose(logged["prediction"], fine.iloc[:3].sum(axis=1), rtol=1e-12)


# --------------------------------------------------------------------------- other models


def test_string_column_model_takes_mlflows_path(store: Store) -> None:
    """A pipeline with a categorical column: MLflow's parser and pyfunc.predict serve it."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = diabetes()
    Xc = X.assign(group=np.where(X["sex"] > 0, "a", "b")).drop(columns="sex")
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["group"]), remainder="passthrough"),
        Ridge(alpha=1.0),
    ).fit(Xc, y)
    uri, run = store.log_sklearn(pipe, Xc)
    store.register("cat", uri, run, alias="champion")
    part = Xc.iloc[:6]
    with ThreadServer(create_app(store.uri, "cat")) as srv, httpx.Client(base_url=srv.url) as h:
        assert h.get("/model").json()["scoring_path"] == "pyfunc"
        for body in (split_payload(part), {"dataframe_records": part.to_dict("records")}):
            r = h.post("/invocations", json=body)
            np.testing.assert_allclose(predictions(r), pipe.predict(part), rtol=1e-9)
        csv = h.post(
            "/invocations", content=part.to_csv(index=False), headers={"Content-Type": "text/csv"}
        )
        np.testing.assert_allclose(predictions(csv), pipe.predict(part), rtol=1e-9)
        bad = h.post("/invocations", json=split_payload(part.drop(columns="group")))
        assert bad.status_code == 400 and "group" in bad.json()["message"]


def test_tensor_signature_model_scores_positionally(store: Store) -> None:
    """Trained on a numpy array (the article's autolog): no column names, one tensor."""
    from mlflow.models import infer_signature

    X, y = diabetes()
    arr = X.to_numpy()
    model = ridge(1.0, arr, y.to_numpy())
    uri, run = store.log_sklearn(
        model, arr, example=arr[:3], signature=infer_signature(arr, model.predict(arr))
    )
    store.register("tensor", uri, run, alias="champion")
    part = arr[:5]
    with ThreadServer(create_app(store.uri, "tensor")) as srv, httpx.Client(base_url=srv.url) as h:
        assert h.get("/model").json()["scoring_path"] == "sklearn-numpy"
        for key in ("instances", "inputs"):
            r = h.post("/invocations", json={key: part.tolist()})
            np.testing.assert_allclose(predictions(r), model.predict(part), rtol=1e-9)
        r = h.post("/invocations", json={"dataframe_split": {"data": part.tolist()}})
        np.testing.assert_allclose(predictions(r), model.predict(part), rtol=1e-9)
        bad = h.post("/invocations", json={"instances": [[1.0, 2.0]]})
        assert bad.status_code == 400 and "10 values" in bad.json()["message"]


def test_no_champion_yet_then_alias_set(store: Store, tmp_path: Path) -> None:
    uri, run = next(iter(store.runs.items()))
    store.client.create_registered_model("later")
    log_dir = tmp_path / "log"
    app = create_app(store.uri, "later", poll_seconds=0.1, inference_log=str(log_dir))
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url) as http:
        assert http.get("/ping").status_code == 503
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "no_model"
        assert "no alias 'champion'" in health.json()["problems"][0]
        r = http.post("/invocations", json=split_payload(rows(2)))
        assert r.status_code == 503 and r.headers["x-model-version"] == "none"
        store.register("later", uri, run, alias="champion")
        wait_for(lambda: http.get("/ping").status_code == 200, timeout=30)
        assert http.post("/invocations", json=split_payload(rows(2))).status_code == 200
        # The alias removed: keep answering with what is loaded, and say so.
        store.client.delete_registered_model_alias("later", "champion")
        health = wait_for(
            lambda: (h := http.get("/health").json())["status"] == "degraded" and h, timeout=30
        )
        assert "no longer set" in health["problems"][0] and health["version"] == "1"
        assert http.post("/invocations", json=split_payload(rows(2))).status_code == 200
        assert series(http, invocations("server_error", "none")) == 1
    # Nothing loaded is neither the client's fault nor a model's.
    requests = pd.read_parquet(log_dir / "_requests").sort_values("ts", kind="stable")
    assert requests["outcome"].tolist() == ["server_error", "ok", "ok"]
    assert requests["status"].tolist() == [503, 200, 200]
    assert requests["model_version"].isna().tolist() == [True, False, False]  # null: none loaded
    assert requests["model_version"].tolist()[1:] == ["1", "1"]


def test_legacy_production_stage_is_served(store: Store) -> None:
    uri, run = next(iter(store.runs.items()))
    store.register("legacy", uri, run)
    v2 = store.register("legacy", uri, run)
    store.client.transition_model_version_stage("legacy", v2, "Production")
    with (
        ThreadServer(create_app(store.uri, "legacy")) as srv,
        httpx.Client(base_url=srv.url) as http,
    ):
        assert http.get("/model").json()["version"] == v2 == "2"


# --------------------------------------------------------------------------- fuzzing

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
_names = st.sampled_from([*COLUMNS, "x", "", "0"])
_cell_rows = st.lists(st.lists(_scalars | st.floats(-1, 1), max_size=11), max_size=4)
_payloads = st.one_of(
    st.builds(
        lambda c, d: {"dataframe_split": {"columns": c, "data": d}},
        st.lists(_names, max_size=11) | st.just(COLUMNS),
        _cell_rows,
    ),
    st.builds(
        lambda r: {"dataframe_records": r},
        st.lists(st.dictionaries(_names, _scalars | st.floats(-1, 1)), max_size=4),
    ),
    st.builds(
        lambda k, v: {k: v},
        st.sampled_from(["instances", "inputs"]),
        st.lists(st.dictionaries(_names, _scalars), max_size=3)
        | st.dictionaries(_names, st.lists(st.floats(-1, 1), max_size=3) | _scalars)
        | _cell_rows,
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "dataframe_split",
                "dataframe_records",
                "instances",
                "inputs",
                "params",
                "columns",
                "data",
            ]
        ),
        _values,
        max_size=3,
    ),
    _values,
)
_bodies_strategy = st.one_of(
    _payloads.map(lambda p: (json.dumps(p).encode(), "application/json")),
    st.tuples(
        st.binary(max_size=300),
        st.sampled_from(
            [
                "application/json",
                "text/csv",
                "application/vnd.apache.parquet",
                "text/plain",
                "application/json; format=pandas-split",
            ]
        ),
    ),
    st.lists(st.lists(_scalars.map(str), min_size=1, max_size=11), max_size=4).map(
        lambda rs: (
            ("\n".join([",".join(COLUMNS)] + [",".join(r) for r in rs])).encode(),
            "text/csv",
        )
    ),
)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=_bodies_strategy)
def test_fuzzed_bodies_never_get_a_5xx(http: httpx.Client, case: tuple[bytes, str]) -> None:
    body, ctype = case
    r = http.post("/invocations", content=body, headers={"Content-Type": ctype})
    assert r.status_code < 500, (r.status_code, r.text, body[:300])
    if r.status_code >= 400:
        assert r.json()["message"] and r.json()["error_code"]
    else:
        assert isinstance(r.json()["predictions"], list)
    assert r.headers["x-model-version"] == "1"


_cells = st.floats(-0.3, 0.3, allow_nan=False) | st.integers(-3, 3)
_valid_tables = st.integers(1, 6).flatmap(
    lambda n: st.lists(st.lists(_cells, min_size=10, max_size=10), min_size=n, max_size=n)
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(table=_valid_tables, fmt=st.sampled_from(list(_bodies(rows(1)))))
def test_fuzzed_valid_bodies_get_the_models_predictions(
    http: httpx.Client, store: Store, table: list[list[float]], fmt: str
) -> None:
    """Any valid body in any format: a 200 with the model's own predictions, row by row."""
    X = pd.DataFrame(table, columns=COLUMNS)
    body, ctype = _bodies(X)[fmt]
    r = http.post("/invocations", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200, (fmt, r.text, body[:300])
    np.testing.assert_allclose(
        predictions(r), expected(store, X.astype(float)), rtol=1e-9, atol=1e-9
    )
