"""history, rollback and promote on the embedded store, through the CLI as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import edit_config
from mlflow_server import free_port
from registry_helpers import (
    WEEK_AGO,
    load_cfg,
    run_all,
    run_cycle_here,
    snapshot,
    week_ago_champion,
)

MODEL = "diabetes-ridge"


def _uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


@pytest.fixture
def promoted(project: Path) -> Path:
    """The article after its second cycle: v2 champion, v1 previous."""
    assert week_ago_champion(project)["decision"] == "first_champion"
    assert run_cycle_here(project)["decision"] == "promoted"
    return project


def test_rollback_twice_returns_to_start_and_history_shows_every_move(promoted: Path,
                                                                      cli) -> None:
    first = cli("rollback", "--reason", "v2 overpredicts for new clinics", "--actor", "alice",
                "--json", cwd=promoted)
    assert first.code == 0, first.stderr
    assert first.json()["champion"] == "1" and first.json()["previous"] == "2"
    second = cli("rollback", "--reason", "false alarm", "--json", cwd=promoted,
                 env={"RETRAINER_ACTOR": "bob"})
    assert second.code == 0, second.stderr
    assert (second.json()["champion"], second.json()["previous"]) == ("2", "1")

    hist = cli("history", "--json", cwd=promoted)
    assert hist.code == 0, hist.stderr
    doc = hist.json()
    assert doc["total"] == 4 and doc["champion"] == "2"
    whats = [e["what"] for e in doc["entries"]]
    assert whats == ["rollback", "rollback", "promoted", "first_champion"]
    newest, older = doc["entries"][0], doc["entries"][1]
    assert (newest["champion_before"], newest["champion_after"], newest["actor"]) == \
        ("1", "2", "bob")
    assert (older["champion_before"], older["champion_after"], older["actor"]) == \
        ("2", "1", "alice")
    assert older["reason"] == "v2 overpredicts for new clinics"
    promoted_entry = doc["entries"][2]
    assert promoted_entry["alias_moved"] and promoted_entry["version"] == "2"
    assert (promoted_entry["champion_before"], promoted_entry["champion_after"]) == ("1", "2")
    assert promoted_entry["trigger"] == "setup" and promoted_entry["reason"]
    assert [e["at_ms"] for e in doc["entries"]] == sorted(
        (e["at_ms"] for e in doc["entries"]), reverse=True)

    from retrainer.history import model_history

    limited = model_history(load_cfg(promoted), limit=1)
    assert limited["total"] == 4 and len(limited["entries"]) == 1

    status = cli("status", "--json", cwd=promoted).json()
    assert status["champion"]["version"] == "2" and status["previous"]["version"] == "1"
    from datetime import datetime

    since = datetime.fromisoformat(status["champion"]["since"])
    assert abs((since - datetime.fromisoformat(newest["at"])).total_seconds()) < 5
    assert status["last_decision"]["decision"] == "rollback"
    human = cli("history", cwd=promoted, env={"COLUMNS": "200"})
    assert human.code == 0 and "rollback" in human.stdout and "alice" in human.stdout


def test_rollback_to_a_named_version(promoted: Path, cli) -> None:
    assert run_cycle_here(promoted)["decision"] == "kept_champion"  # v3, never champion
    result = cli("rollback", "--to", "3", "--reason", "pin the retrained one", "--json",
                 cwd=promoted)
    assert result.code == 0, result.stderr
    snap = snapshot(_uri(promoted), MODEL)
    assert snap["aliases"]["champion"] == "3" and snap["aliases"]["previous"] == "2"


def test_promote_a_registered_version_through_the_gate(project: Path, cli) -> None:
    """The article's third trigger: a version registered by someone, judged, promoted."""
    week_ago_champion(project)
    edit_config(project, gate={"mode": "dry_run"})
    assert run_cycle_here(project)["decision"] == "dry_run_would_promote"  # v2 registered
    edit_config(project, gate={"mode": "enforce"})
    result = cli("promote", "2", "--json", "--actor", "carol", cwd=project)
    assert result.code == 0, result.stderr
    record = result.json()
    assert record["decision"] == "promoted" and record["kind"] == "manual_promotion"
    assert record["move"]["previous"] == "1" and record["champion"]["version"] == "1"
    assert record["actor"] == "carol" and record["holdout"]["clean_rows"] >= 30
    snap = snapshot(_uri(project), MODEL)
    assert snap["aliases"]["champion"] == "2" and snap["aliases"]["previous"] == "1"
    entry = cli("history", "--json", "-n", "1", cwd=project).json()["entries"][0]
    assert (entry["what"], entry["decision"], entry["actor"]) == \
        ("manual_promotion", "promoted", "carol")
    assert (entry["champion_before"], entry["champion_after"]) == ("1", "2")


def test_promote_rejected_by_the_gate_then_forced_with_a_reason(promoted: Path,
                                                                 cli) -> None:
    before = snapshot(_uri(promoted), MODEL)["aliases"]
    human = cli("promote", "1", cwd=promoted, env={"COLUMNS": "200"})
    assert human.code == 0, human.stderr
    assert "Fair: both on the clean holdout" in human.stdout  # the same tables as `run`
    assert "kept_champion" in human.stdout
    assert snapshot(_uri(promoted), MODEL)["aliases"] == before

    forced = cli("promote", "1", "--force", "--reason", "v2 breaks a downstream report",
                 "--json", cwd=promoted)
    assert forced.code == 0, forced.stderr
    record = forced.json()
    assert record["decision"] == "promoted" and record["forced"] is True
    assert "v2 breaks a downstream report" in record["reason"]
    assert "gate said: kept_champion" in record["reason"]
    assert snapshot(_uri(promoted), MODEL)["aliases"] == {"champion": "1", "previous": "2",
                                                           "challenger": "2"}
    whats = [(e["what"], e["decision"]) for e in
             cli("history", "--json", cwd=promoted).json()["entries"][:2]]
    assert whats == [("forced_promotion", "promoted"), ("manual_promotion", "kept_champion")]


def test_bad_input_exits_2_with_one_line_and_leaves_the_registry_alone(
        promoted: Path, tmp_path_factory: pytest.TempPathFactory, fresh_store) -> None:
    """Every refusal: exit 2, one line on stderr, registry byte-for-byte as before."""
    from retrainer.project import write_example

    only_one = tmp_path_factory.mktemp("only-one")  # a champion, no previous
    write_example(only_one, "diabetes")
    fresh_store(only_one)
    week_ago_champion(only_one)
    empty = tmp_path_factory.mktemp("empty")  # no registered model at all
    write_example(empty, "diabetes")
    fresh_store(empty)
    unreachable = tmp_path_factory.mktemp("unreachable")
    write_example(unreachable, "diabetes")
    edit_config(unreachable, tracking_uri=f"http://127.0.0.1:{free_port()}")
    # A version of this registered model, trained by retrainer for another model.
    cfg = load_cfg(promoted)
    from retrainer.registry import connect

    client = connect(cfg)
    other_run = client.create_run(client.get_experiment_by_name(cfg.experiment_name)
                                  .experiment_id, tags={"retrainer.model": "other-model"})
    source = client.get_model_version(MODEL, "1").source
    foreign = str(client.create_model_version(MODEL, source, run_id=other_run.info.run_id)
                  .version)

    cases = {
        "rollback without reason": (("rollback",), promoted, "needs --reason"),
        "rollback blank reason": (("rollback", "--reason", "  "), promoted, "needs --reason"),
        "rollback unknown version": (("rollback", "--to", "99", "--reason", "x"), promoted,
                                     "has no version 99"),
        "rollback not a version": (("rollback", "--to", "latest", "--reason", "x"), promoted,
                                   "not a model version"),
        "rollback to the champion": (("rollback", "--to", "2", "--reason", "x"), promoted,
                                     "already the champion"),
        "rollback no previous": (("rollback", "--reason", "x"), only_one, "no 'previous'"),
        "rollback nothing registered": (("rollback", "--reason", "x"), empty,
                                        "is not registered"),
        "promote unknown version": (("promote", "99"), promoted, "has no version 99"),
        "promote another model's uri": (("promote", "models:/other-model/1"), promoted,
                                        "not of 'diabetes-ridge'"),
        "promote another model's run": (("promote", foreign), promoted,
                                        "trained by retrainer for model 'other-model'"),
        "promote force without reason": (("promote", "1", "--force"), promoted,
                                         "needs --reason"),
        "promote the champion": (("promote", "2"), promoted, "already the champion"),
        "promote nothing registered": (("promote", "1"), empty, "is not registered"),
        "history bad limit": (("history", "--limit", "0"), promoted, "--limit"),
        "history unreachable": (("history",), unreachable, "cannot reach"),
        "rollback unreachable": (("rollback", "--reason", "x"), unreachable, "cannot reach"),
        "promote unreachable": (("promote", "1"), unreachable, "cannot reach"),
    }
    stores = {p: snapshot(_uri(p), MODEL) for p in (promoted, only_one, empty)}
    results, seconds = run_all([(args, cwd, None) for args, cwd, _ in cases.values()])
    problems = []
    for (name, (_, _cwd, expect)), res in zip(cases.items(), results):
        lines = res.stderr.strip().splitlines()
        if res.code != 2 or len(lines) != 1 or expect not in lines[0] or res.stdout.strip():
            problems.append(f"{name}: exit {res.code}, stdout {res.stdout[:200]!r}, "
                            f"stderr {res.stderr[-600:]!r}")
    assert not problems, "\n".join(problems)
    for path, before in stores.items():
        assert snapshot(_uri(path), MODEL) == before, f"registry of {path.name} changed"
    assert (promoted / WEEK_AGO).exists()


def test_history_reads_records_written_before_summary_tags(project: Path) -> None:
    """A cycle run with only the decision tag (an older retrainer) is read from its artifact."""
    from retrainer.history import entries
    from retrainer.registry import connect, experiment_id

    cfg = load_cfg(project)
    client = connect(cfg)
    run = client.create_run(experiment_id(cfg), tags={
        "retrainer.model": MODEL, "retrainer.kind": "cycle", "retrainer.decision": "promoted",
        "retrainer.trigger": "schedule", "retrainer.cycle_id": "old1"})
    client.log_dict(run.info.run_id, {
        "decision": "promoted", "reason": "rmse improved", "actor": "cron",
        "challenger": {"version": "7"}, "champion": {"version": "6"}}, "decision.json")
    client.set_terminated(run.info.run_id)
    [entry] = entries(client, cfg)
    assert (entry["what"], entry["version"], entry["champion_before"], entry["actor"],
            entry["reason"], entry["trigger"]) == \
        ("promoted", "7", "6", "cron", "rmse improved", "schedule")
