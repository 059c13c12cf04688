"""A promotion killed at any step leaves one champion; the next command repairs and records.

The fault is real: `RETRAINER_FAULT_AT=<step>` makes registry.py call `os._exit` at that
step of a real `retrainer run` that promotes (the article's second cycle), so nothing is
flushed or cleaned up, as with a kill -9 or a lost machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import copy_project, edit_config, registry_snapshot
from registry_helpers import champion_state, history_here, run_all, week_ago_champion

MODEL = "diabetes-ridge"
STEPS = ("journaled", "previous_set", "champion_set", "archived", "stages", "cleared")


@pytest.mark.slow
def test_a_crash_at_every_step_leaves_one_champion_and_is_repaired(
        tmp_path_factory: pytest.TempPathFactory, fresh_store, cli) -> None:
    from retrainer.project import write_example

    # Stages on, so that the `stages` step exists; version 1 is the champion. Trained
    # once, then a private copy (store and artifacts) per step.
    first = tmp_path_factory.mktemp("crash-champion")
    write_example(first, "diabetes")
    fresh_store(first)
    edit_config(first, promote={"legacy_stages": True})
    week_ago_champion(first)
    projects = {step: copy_project(first, tmp_path_factory.mktemp(f"crash-{step}") / "proj")
                for step in STEPS}

    # The six promotions run at once (each is its own project and store) to save time.
    crashed, _ = run_all([(("run", "--json"), projects[s], {"RETRAINER_FAULT_AT": s})
                          for s in STEPS])
    problems = []
    for step, res in zip(STEPS, crashed):
        uri = f"sqlite:///{projects[step] / 'mlflow.db'}"
        state = champion_state(uri, MODEL)
        if res.code != 17 or res.stdout.strip():
            problems.append(f"{step}: expected a hard exit 17 with nothing printed, got "
                            f"{res.code}: {res.stderr[-400:]}")
        # Exactly one champion, the old or the new, by alias and by stage alike.
        if state["champion"] not in ("1", "2") or len(state["production"]) != 1:
            problems.append(f"{step}: not exactly one champion: {state}")
        if (state["journal"] is None) != (step == "cleared"):
            problems.append(f"{step}: journal {state['journal']!r}")
    assert not problems, "\n".join(problems)

    from registry_helpers import load_cfg
    from retrainer.status import model_status

    for step in STEPS:
        uri = f"sqlite:///{projects[step] / 'mlflow.db'}"
        if step == STEPS[0]:  # once through the CLI as a user runs it, then in-process
            res = cli("status", "--json", cwd=projects[step])
            assert res.code == 0, f"{step}: {res.stderr}"
            doc = res.json()
        else:
            doc = model_status(load_cfg(projects[step]))
        assert doc["repaired"] is (step != "cleared"), step
        assert doc["champion"]["version"] == "2" and doc["previous"]["version"] == "1", step
        assert champion_state(uri, MODEL) == {"champion": "2", "previous": "1",
                                              "production": ["2"], "journal": None}, step
        entries = history_here(projects[step])
        whats = [e["what"] for e in entries]
        if step == "cleared":
            # The move was recorded before the journal cleared: history has it, on the
            # line of the cycle that died before writing its decision.
            move = entries[0]
            assert (move["what"], move["champion_before"], move["champion_after"]) == \
                ("promoted", "1", "2")
            assert "decision record is missing" in move["note"]
        else:
            # The crashed cycle never wrote its decision: listed, not lost, and the repair
            # that finished its promotion is recorded.
            assert whats[:2] == ["repair", "unfinished"], (step, whats)
            repair, cycle = entries[0], entries[1]
            assert (repair["champion_before"], repair["champion_after"]) == ("1", "2"), step
            assert "half-done promoted" in repair["reason"], repair["reason"]
            assert "the repair at" in cycle["note"]
            assert doc["last_decision"]["decision"] == "repair"
        assert whats[-1] == "first_champion"


HOLDER = """
import sys, time
from retrainer.config import load
from retrainer.registry import promotion_lock
with promotion_lock(load(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def _hold_lock(project: Path) -> subprocess.Popen[str]:
    """A process that takes the promotion lock and keeps it until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(project / "retrainer.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "locked", proc.stderr.read() if proc.stderr else ""
    return proc


def _check_lock_freed_on_death(project: Path, cli) -> str:
    week_ago_champion(project)
    from registry_helpers import run_cycle_here

    assert run_cycle_here(project)["decision"] == "promoted"
    holder = _hold_lock(project)
    try:
        before = registry_snapshot(project)
        start = time.perf_counter()
        blocked = cli("rollback", "--reason", "while another promotion runs", cwd=project)
        assert blocked.code == 2, blocked.stderr
        assert "locked by another live process" in blocked.stderr \
            or "holds the advisory lock" in blocked.stderr, blocked.stderr
        assert len(blocked.stderr.strip().splitlines()) == 1
        assert f"pid {holder.pid}" in blocked.stderr or "advisory" in blocked.stderr
        assert time.perf_counter() - start < 30
        assert registry_snapshot(project) == before
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock: no cleanup runs
        holder.wait()
    freed = cli("rollback", "--reason", "the holder died", "--json", cwd=project)
    assert freed.code == 0, freed.stderr
    assert freed.json()["champion"] == "1"
    return freed.stderr


def test_a_file_lock_held_by_a_dead_process_is_free(project: Path, cli) -> None:
    """flock locks belong to the open file: the OS drops them when the holder dies."""
    edit_config(project, promote={"lock_timeout": 3})
    stderr = _check_lock_freed_on_death(project, cli)
    assert (project / ".retrainer-diabetes-ridge.lock").exists()  # the file stays, unlocked
    assert "died holding" in stderr  # the dead holder is detected and named


@pytest.mark.postgres
def test_an_advisory_lock_held_by_a_dead_process_is_free(project: Path, cli,
                                                          pg_database: str) -> None:
    """Session advisory locks end with their connection: a killed holder's connection closes."""
    edit_config(project, promote={"lock": pg_database, "lock_timeout": 3})
    _check_lock_freed_on_death(project, cli)
