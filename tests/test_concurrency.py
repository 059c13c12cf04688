"""Eight cycles at once on one model: one champion, no stale promotion, no lost record.

Each process runs `retrainer run --data <sample>` on a differently sampled copy of the
data, all started together. Promotion is under a lock (a file lock beside the sqlite
store; a PostgreSQL advisory lock with the server) and re-judged against the champion of
that moment, so every alias move must chain: each promotion displaced exactly the
champion its record says it beat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Result, edit_config
from registry_helpers import run_all, sampled_csvs, server_project

N = 8
#: The subject is the lock and the alias chain, not the explanations: no SHAP in these
#: sixteen cycles (permutation importance still runs; SHAP has tests of its own).
QUIET = {"shap": "off"}


def _check(project: Path, results: list[Result], cli) -> dict[str, Any]:
    failed = [f"exit {r.code}: {r.stderr[-800:]}" for r in results if r.code != 0]
    assert not failed, "\n".join(failed)
    records = [r.json() for r in results]  # each stdout is exactly one JSON document
    movers = [r for r in records if r["decision"] in ("first_champion", "promoted")]
    assert sum(r["decision"] == "first_champion" for r in records) == 1
    for rec in records:
        beaten = rec["champion"]["version"] if rec["champion"] else None
        if rec in movers:
            # The champion it was judged against is the one its alias move displaced.
            assert rec["move"]["previous"] == beaten, rec
            assert rec["move"]["champion"] == rec["challenger"]["version"]
        else:
            assert rec["move"] is None and rec["decision"] == "kept_champion", rec

    # The moves form one chain: none -> first -> ... -> the champion now.
    next_of = {m["move"]["previous"]: m["move"]["champion"] for m in movers}
    assert len(next_of) == len(movers), "two promotions displaced the same champion"
    chain, at = [], None
    while at in next_of:
        at = next_of[at]
        chain.append(at)
    assert len(chain) == len(movers)

    status = cli("status", "--json", cwd=project)
    assert status.code == 0, status.stderr
    doc = status.json()
    assert doc["champion"]["version"] == chain[-1] and doc["champion"]["known_by"] == "alias"
    if len(chain) > 1:
        assert doc["previous"]["version"] == chain[-2]

    history = cli("history", "--json", cwd=project)
    assert history.code == 0, history.stderr
    entries = history.json()["entries"]
    cycles = {e["version"]: e for e in entries if e["source"] == "cycle"}
    assert len(cycles) == N and len(entries) == N  # every decision, no stray record
    for rec in records:
        entry = cycles[rec["challenger"]["version"]]
        assert entry["what"] == rec["decision"], (entry, rec["decision"])
        assert entry["alias_moved"] == (rec in movers)
        if rec in movers:
            assert entry["champion_before"] == rec["move"]["previous"]
            assert entry["champion_after"] == rec["move"]["champion"]
    return {"decisions": sorted(r["decision"] for r in records), "chain": chain}


@pytest.mark.slow
def test_eight_cycles_at_once_on_sqlite(project: Path, cli) -> None:
    # Start from no store at all: the eight processes also race to create its schema.
    (project / "mlflow.db").unlink()
    edit_config(project, split={"method": "hash"}, explain=QUIET)
    samples = sampled_csvs(project, N)
    results, seconds = run_all([(("run", "--data", s, "--json"), project, None)
                                for s in samples])
    outcome = _check(project, results, cli)
    print(f"sqlite: {N} cycles in {seconds:.1f} s: {outcome}")


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_cycles_at_once_on_a_postgresql_backed_server(project: Path, cli,
                                                            mlflow_server) -> None:
    server_project(project, mlflow_server.url, "concurrent-ridge",
                   promote={"lock": mlflow_server.db_url})
    edit_config(project, promote={"lock_timeout": 120}, split={"method": "hash"},
                explain=QUIET)
    samples = sampled_csvs(project, N)
    results, seconds = run_all([(("run", "--data", s, "--json"), project, None)
                                for s in samples])
    outcome = _check(project, results, cli)
    print(f"server: {N} cycles in {seconds:.1f} s: {outcome}")
