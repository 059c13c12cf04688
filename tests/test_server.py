"""Every registry command against a team's `mlflow server` backed by PostgreSQL.

The server (tests/mlflow_server.py) runs for the whole session on a fresh database; each
test registers its own model. With an http:// store MLflow prints "View run …" lines on
stdout: `--json` output must still be exactly one JSON document.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import edit_config
from mlflow_server import free_port
from registry_helpers import load_cfg, server_project, snapshot, week_ago_champion

pytestmark = pytest.mark.postgres


def _one_json(stdout: str) -> dict:
    doc = json.loads(stdout)  # fails on any stray line before or after the document
    assert isinstance(doc, dict)
    return doc


def test_run_status_history_rollback_promote_on_the_server(project: Path, cli,
                                                             mlflow_server) -> None:
    model = "server-ridge"
    server_project(project, mlflow_server.url, model)
    week_ago_champion(project)  # version 1, in-process against the same server

    run = cli("run", "--json", cwd=project)
    assert run.code == 0, run.stderr
    record = _one_json(run.stdout)
    assert record["decision"] == "promoted"
    # Versions come back from a server as strings; retrainer's records agree.
    assert record["challenger"]["version"] == "2" and record["champion"]["version"] == "1"
    assert record["move"] == {**record["move"], "champion": "2", "previous": "1"}
    assert record["holdout"]["excluded"]["champion_trained_on"] == 44  # the article's 44

    back = cli("rollback", "--reason", "server rollback drill", "--json", cwd=project)
    assert back.code == 0, back.stderr
    assert _one_json(back.stdout)["champion"] == "1"

    again = cli("promote", "2", "--json", "--actor", "dana", cwd=project)
    assert again.code == 0, again.stderr
    promoted = _one_json(again.stdout)
    assert promoted["decision"] == "promoted" and promoted["kind"] == "manual_promotion"
    assert snapshot(mlflow_server.url, model)["aliases"] == {
        "champion": "2", "previous": "1", "challenger": "2"}

    history = cli("history", "--json", cwd=project)
    assert history.code == 0, history.stderr
    doc = _one_json(history.stdout)
    assert [(e["what"], e["champion_before"], e["champion_after"]) for e in doc["entries"]] \
        == [("manual_promotion", "1", "2"), ("rollback", "2", "1"), ("promoted", "1", "2"),
            ("first_champion", None, "1")]
    assert doc["entries"][0]["actor"] == "dana"

    final = cli("status", cwd=project, env={"COLUMNS": "200"})
    assert final.code == 0, final.stderr
    assert "View run" not in final.stdout  # MLflow's chatter went to stderr
    assert "last decision: promoted" in final.stdout and "manual_promotion" in final.stdout


def test_an_unreachable_server_fails_fast_with_exit_2(project: Path, cli) -> None:
    edit_config(project, tracking_uri=f"http://127.0.0.1:{free_port()}")
    for args in (("status", "--json"), ("run", "--json"), ("history",)):
        start = time.perf_counter()
        result = cli(*args, cwd=project)
        assert result.code == 2, result.stderr
        assert result.stderr.strip().startswith("error: cannot reach the MLflow tracking server")
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
        # MLflow alone retries an unreachable server for minutes; retrainer probes first.
        assert time.perf_counter() - start < 60


def test_the_drift_cache_reads_the_champion_over_rest_as_mlflow_does(project: Path,
                                                                     mlflow_server) -> None:
    """`retrainer drift`'s cache (drift/champion_cache.py) asks a server who the champion
    is with one REST call instead of importing MLflow: it must read what MLflow reads."""
    from mlflow import MlflowClient

    from retrainer import reference, registry
    from retrainer.drift import champion_cache

    model = "server-cache"
    server_project(project, mlflow_server.url, model)
    week_ago_champion(project)
    cfg = load_cfg(project)
    key = champion_cache.peek(cfg)
    mv = MlflowClient(tracking_uri=mlflow_server.url).get_model_version_by_alias(model,
                                                                                 "champion")
    assert key is not None
    assert (key.version, key.created_ms) == (str(mv.version), mv.creation_timestamp)
    assert champion_cache.PROFILE_TAG == registry.PREFIX + reference.PROFILE_TAG
    assert key.profile_tag == (mv.tags or {}).get(champion_cache.PROFILE_TAG, "")
    assert champion_cache.peek(cfg.model_copy(update={"model": "no-such-model"})) is None
