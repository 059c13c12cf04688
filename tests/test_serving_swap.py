"""Hot swap: the served version follows the alias, under load, without a failed request.

A client hammers the server while the alias moves ten times; a broken new version (a
predict that raises, an artifact deleted) never replaces a working one; POST /refresh
loads a moved alias at once; with several uvicorn workers every worker follows the alias.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import numpy as np
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import Ridge

from retrainer.serving.server import create_app
from serving_helpers import (
    ProcessServer,
    Store,
    ThreadServer,
    diabetes,
    free_port,
    ridge,
    split_payload,
    wait_for,
)

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store.create(tmp_path_factory.mktemp("swap-store"))


def test_alias_moves_ten_times_under_load_without_a_failed_request(store: Store) -> None:
    X, y = diabetes()
    sources = [store.log_sklearn(ridge(alpha, X, y), X) for alpha in (0.3, 1.0, 4.0)]
    # v1 .. v11 cycle over three different models, so each version's predictions are known.
    versions = [store.register("swap", *sources[i % 3]) for i in range(11)]
    store.set_alias("swap", "champion", versions[0])
    one, many = X.iloc[:1], X.iloc[100:120]
    expect = {
        v: {
            1: store.models[sources[i % 3][0]].predict(one),
            20: store.models[sources[i % 3][0]].predict(many),
        }
        for i, v in enumerate(versions)
    }
    bodies = {1: json.dumps(split_payload(one)), 20: json.dumps(split_payload(many))}
    results: list[list[tuple[int, str, int, list[float]]]] = [[], []]
    stop = threading.Event()

    def hammer(out: list[tuple[int, str, int, list[float]]], url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            deadline = time.monotonic() + 180  # bounded even if the test body fails
            i = 0
            while not stop.is_set() and time.monotonic() < deadline:
                n = 1 if i % 2 else 20
                r = http.post(
                    "/invocations", content=bodies[n], headers={"Content-Type": "application/json"}
                )
                preds = r.json().get("predictions") if r.status_code == 200 else None
                out.append((r.status_code, r.headers.get("x-model-version", ""), n, preds))
                i += 1

    champions = {versions[0]}

    def served(version: str) -> int:
        return sum(1 for out in results for r in out[-200:] if r[1] == version)

    app = create_app(store.uri, "swap", poll_seconds=0.1)
    with ThreadServer(app) as srv:
        threads = [threading.Thread(target=hammer, args=(out, srv.url)) for out in results]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: served(versions[0]) >= 10, timeout=60)
            for version in versions[1:]:
                store.set_alias("swap", "champion", version)
                champions.add(version)
                # The next move only once this version answered a few requests: none is
                # skipped, and every swap happens with requests in flight.
                wait_for(lambda v=version: served(v) >= 10, timeout=60)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        metrics = httpx.get(srv.url + "/metrics").text
    seen = [r for out in results for r in out]
    assert len(seen) >= 110
    assert [r for r in seen if r[0] != 200] == []
    assert {r[1] for r in seen} <= champions
    assert {r[1] for r in seen} == set(versions)  # every champion served
    for _status, version, n, preds in seen:  # each answer came from the version it names
        np.testing.assert_allclose(preds, expect[version][n], rtol=1e-9)
    for out in results:  # a sequential client never goes back to an older version
        order = [versions.index(r[1]) for r in out]
        assert order == sorted(order)
    assert "retrainer_serving_model_swaps_total 10" in metrics


def test_a_broken_new_version_keeps_the_old_one_serving(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = diabetes()
    good = store.log_sklearn(ridge(1.0, X, y), X)
    # A model whose predict raises: an estimator that was never fitted.
    broken = store.log_sklearn(Ridge(), X, example=X[:3], signature=infer_signature(X, y))
    gone = store.log_sklearn(ridge(2.0, X, y), X)
    v1 = store.register("fragile", *good, alias="champion")
    v2 = store.register("fragile", *broken)
    v3 = store.register("fragile", *gone)
    v4 = store.register("fragile", *good)
    location = store.client.get_model_version_download_uri("fragile", v3)
    shutil.rmtree(url2pathname(urlparse(location).path))  # its artifacts deleted
    payload = split_payload(X.iloc[:5])
    want = store.models[good[0]].predict(X.iloc[:5])

    # What each broken version's check reports: the exception and its real cause.
    reasons = {
        v2: ["NotFittedError: ", "is not fitted yet"],
        # MLflow names the model's folder (the download URI's parent) and then the cause.
        v3: ["MlflowException: ", "downloading", location.rsplit("/", 1)[0], "No such artifact"],
    }
    app = create_app(store.uri, "fragile", poll_seconds=0.1)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        for bad in (v2, v3):
            store.set_alias("fragile", "champion", bad)
            health = wait_for(
                lambda b=bad: (
                    (h := http.get("/health").json())["failed_version"]
                    and h["failed_version"]["version"] == b
                    and h
                ),
                timeout=60,
            )
            assert health["status"] == "degraded" and health["version"] == v1
            assert health["alias_version"] == bad
            assert f"version {bad} failed its check" in health["problems"][0]
            error = health["failed_version"]["error"]
            assert error.startswith(reasons[bad][0]), error
            for part in reasons[bad][1:]:
                assert part in error, (part, error)
            assert error in health["problems"][0]
            r = http.post("/invocations", json=payload)
            assert r.status_code == 200 and r.headers["x-model-version"] == v1
            np.testing.assert_allclose(r.json()["predictions"], want, rtol=1e-9)
        assert "swap_failures_total 2" in http.get("/metrics").text
        store.set_alias("fragile", "champion", v4)
        wait_for(lambda: http.get("/health").json()["version"] == v4, timeout=60)
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["failed_version"] is None
    assert f"version {v2} failed its check, keeping version {v1}" in caplog.text


def test_refresh_loads_the_moved_alias_without_waiting_for_a_poll(store: Store) -> None:
    X, y = diabetes()
    first = store.log_sklearn(ridge(1.0, X, y), X)
    second = store.log_sklearn(ridge(5.0, X, y), X)
    v1 = store.register("refreshed", *first, alias="champion")
    v2 = store.register("refreshed", *second)
    part = X.iloc[:4]
    # An hour between polls: only POST /refresh can make the server look at the alias.
    app = create_app(store.uri, "refreshed", poll_seconds=3600)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        assert http.get("/health").json()["version"] == v1
        store.set_alias("refreshed", "champion", v2)
        time.sleep(1.0)
        health = http.get("/health").json()
        assert health["version"] == v1 and health["alias_version"] == v1  # nobody looked yet
        r = http.post("/refresh")
        assert r.status_code == 202 and r.json() == {"refresh": "requested"}
        # Loading takes seconds on a busy machine; the next poll would come in an hour.
        wait_for(lambda: http.get("/health").json()["version"] == v2, timeout=60)
        health = http.get("/health").json()
        assert health["alias_version"] == v2 and health["status"] == "ok"
        r = http.post("/invocations", json=split_payload(part))
        assert r.headers["x-model-version"] == v2
        np.testing.assert_allclose(
            r.json()["predictions"], store.models[second[0]].predict(part), rtol=1e-9
        )
        assert "retrainer_serving_model_swaps_total 1" in http.get("/metrics").text


def test_every_worker_follows_the_alias(store: Store, tmp_path: Path) -> None:
    X, y = diabetes()
    first = store.log_sklearn(ridge(1.0, X, y), X)
    second = store.log_sklearn(ridge(3.0, X, y), X)
    v1 = store.register("workers", *first, alias="champion")
    v2 = store.register("workers", *second)
    port = free_port()
    script = tmp_path / "serve_two_workers.py"
    script.write_text(
        "from retrainer.serving.server import serve\n"
        "if __name__ == '__main__':  # the spawned workers import this file too\n"
        f"    serve({store.uri!r}, 'workers', port={port}, workers=2, poll_seconds=0.2)\n"
    )
    with ProcessServer.script(script, port, timeout=180) as srv:

        def versions_by_worker() -> dict[int, str]:
            seen: dict[int, str] = {}
            deadline = time.monotonic() + 60
            while len(seen) < 2 and time.monotonic() < deadline:
                # A new connection each time, so the kernel spreads them over the workers.
                health = httpx.get(srv.url + "/health", timeout=10).json()
                seen[health["pid"]] = health["version"]
            return seen

        before = versions_by_worker()
        assert len(before) == 2 and set(before.values()) == {v1}
        store.set_alias("workers", "champion", v2)

        def all_moved() -> Any:
            now = versions_by_worker()
            return len(now) == 2 and set(now.values()) == {v2} and now

        after = wait_for(all_moved, timeout=60, interval=0.2)
        assert set(after) == set(before)  # the same two workers, each swapped by itself
        r = httpx.post(srv.url + "/invocations", json=split_payload(X.iloc[:3]))
        assert r.headers["x-model-version"] == v2
        np.testing.assert_allclose(
            r.json()["predictions"], store.models[second[0]].predict(X.iloc[:3]), rtol=1e-9
        )
