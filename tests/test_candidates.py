"""Candidates registered outside retrainer, whose training rows are unknown, judged by
`retrainer promote` on a real embedded store; the versions are registered with plain MLflow
in a separate process, as a data scientist would."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd

import cli_runner
from conftest import edit_config, registry_snapshot, run_cli
from registry_helpers import run_cycle_here
from retrainer.config import load
from retrainer.cycle import judge_version

UNKNOWN = "the candidate's training rows are unknown: its score may include rows it trained on"

# A data scientist's own script: fit on a CSV's rows, log with plain MLflow, register.
USER_SCRIPT = textwrap.dedent('''
    import json, sys
    import mlflow, pandas as pd
    from sklearn.metrics import mean_squared_error
    from sklearn.model_selection import train_test_split

    uri, csv, kind, opts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("by-hand")
    df = pd.read_csv(csv)
    if "rows" in opts:
        df = df.iloc[: opts["rows"]]
    X, y = df.drop(columns=["target", *opts.get("drop", [])]), df["target"]
    if kind == "ridge":
        from sklearn.linear_model import Ridge
        make = lambda: Ridge(alpha=1.0, solver="cholesky")
    else:
        from sklearn.ensemble import RandomForestRegressor
        make = lambda: RandomForestRegressor(n_estimators=30, random_state=0)
    with mlflow.start_run():
        if opts.get("log_test_mse"):
            a, b, c, d = train_test_split(X, y, test_size=0.25, random_state=0)
            mlflow.log_metric("mse", mean_squared_error(d, make().fit(a, c).predict(b)))
        if opts.get("log_input"):
            mlflow.log_input(mlflow.data.from_pandas(df, source=csv, targets="target"),
                             context="training")
        model = make().fit(X, y)  # every row of the data
        # Stated requirements: MLflow would otherwise spawn a Python to infer them (~3 s).
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                        pip_requirements=["scikit-learn"])
    mv = mlflow.register_model(info.model_uri, "diabetes-ridge")
    print(json.dumps({"version": str(mv.version), "created": mv.creation_timestamp}))
''')


def register_by_hand(project: Path, csv: Path, kind: str = "ridge", **opts: object) -> dict:
    script = project / "by_hand.py"
    script.write_text(USER_SCRIPT)
    # `python by_hand.py …`, run in a fork with the libraries already imported (cli_runner).
    code, out, err = cli_runner.run_script(script, [f"sqlite:///{project / 'mlflow.db'}",
                                                    str(csv), kind, json.dumps(opts)], project)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_a_version_fitted_on_every_current_row_is_said_to_have_unknown_rows(
        proj: Path) -> None:
    """The issue's scenario: Ridge on all rows of current.csv, registered with plain MLflow,
    then `retrainer promote 3 --data current.csv`."""
    project = proj  # the article's version 1 as champion: a copy of the session's
    assert run_cycle_here(project)["decision"] == "promoted"  # v2, the article's retrain
    current = project / "current.csv"
    pd.read_csv(project / "data" / "diabetes.csv").to_csv(current, index=False)
    assert register_by_hand(project, current)["version"] == "3"

    result = run_cli("promote", "3", "--data", "current.csv", "--json", cwd=project)
    assert result.code == 0, result.stderr
    record = result.json()
    h = record["holdout"]
    assert h["training_rows"] == {"challenger": "unknown", "champion": "fingerprints"}
    assert h["clean_rows"] == 111 and h["excluded"] == {"champion_trained_on": 0}
    assert UNKNOWN in h["notes"]
    assert any("logged no dataset input" in n and "promote 3 --data" in n for n in h["notes"])
    assert h["candidate_inputs"] == []
    # warn (the default): the in-sample score still wins, but the decision says what it is.
    assert record["decision"] == "promoted"
    assert record["decision_notes"][0] == UNKNOWN
    assert record["reason"].startswith(UNKNOWN)
    assert record["challenger"]["metrics"]["mse"] < record["champion"]["metrics"]["mse"]

    human = run_cli("history", "--json", "-n", "1", cwd=project).json()["entries"][0]
    assert human["reason"].startswith(UNKNOWN)


def test_refuse_keeps_the_champion_and_a_logged_test_score_is_a_leakage_sign(
        proj: Path) -> None:
    project = proj  # the article's version 1 as champion: a copy of the session's
    current = project / "current.csv"
    pd.read_csv(project / "data" / "diabetes.csv").to_csv(current, index=False)
    # A flexible model, its test score logged from a split, then refitted on every row.
    assert register_by_hand(project, current, "forest", log_test_mse=True)["version"] == "2"
    edit_config(project, gate={"unknown_training_rows": "refuse"})
    before = registry_snapshot(project)["aliases"]

    record = judge_version(load(project / "retrainer.yaml"), "2", data=str(current))
    assert record["decision"] == "kept_champion"
    refused = next(c for c in record["checks"] if c["name"] == "candidate training rows known")
    assert refused["passed"] is False
    assert refused["detail"] == f"{UNKNOWN} (gate.unknown_training_rows: refuse)"
    sign = next(n for n in record["decision_notes"] if n.startswith("leakage sign"))
    assert "better than the" in sign and "its own run logged" in sign
    assert sign in record["holdout"]["notes"]
    logged = record["challenger"]["metrics_as_logged"]["mse"]
    assert record["challenger"]["metrics"]["mse"] < 0.9 * logged
    assert registry_snapshot(project)["aliases"] == before


def test_a_logged_dataset_input_is_used_to_exclude_the_rows_it_may_have_trained_on(
        proj: Path) -> None:
    project = proj  # the article's version 1 as champion: a copy of the session's
    current = project / "current.csv"
    pd.read_csv(project / "data" / "diabetes.csv").to_csv(current, index=False)
    assert register_by_hand(project, current, log_input=True)["version"] == "2"

    record = judge_version(load(project / "retrainer.yaml"), "2", data=str(current))
    h = record["holdout"]
    assert h["training_rows"]["challenger"] == "logged_dataset_input"
    assert h["excluded"]["candidate_logged_input"] == 111
    assert h["clean_rows"] == 0
    assert h["candidate_inputs"][0]["context"] == "training"
    assert h["candidate_inputs"][0]["source"].endswith("current.csv")
    assert record["decision"] == "kept_champion"
    assert "0 clean rows < min_clean_rows 30" in record["reason"]
    assert UNKNOWN not in record["reason"]


def test_under_a_time_split_only_rows_newer_than_the_registration_are_judged(
        project: Path) -> None:
    frame = pd.read_csv(project / "data" / "diabetes.csv")
    base = pd.Timestamp("2024-01-01", tz="UTC")
    frame["ts"] = [(base + pd.Timedelta(days=i)).isoformat() for i in range(len(frame))]
    frame.to_csv(project / "data" / "diabetes.csv", index=False)
    edit_config(project, split={"method": "time", "test_size": 0.25, "column": "ts"},
                data={"drop": ["ts"]})
    first = run_cycle_here(project)
    assert first["decision"] == "first_champion"
    n_train = first["data"]["train_rows"]  # the oldest rows; the newest are the holdout
    # A candidate fitted by hand on the rows it could see: the same oldest rows.
    created = register_by_hand(project, project / "data" / "diabetes.csv", rows=n_train,
                               drop=["ts"])["created"]

    # The newest rows arrived after the candidate was registered.
    later = frame.copy()
    after = pd.Timestamp(created, unit="ms", tz="UTC")
    later.loc[n_train:, "ts"] = [(after + pd.Timedelta(hours=i + 1)).isoformat()
                                 for i in range(len(frame) - n_train)]
    later.to_csv(project / "later.csv", index=False)
    # Judged on the old rows only: every holdout row predates it, none can be judged.
    old = judge_version(load(project / "retrainer.yaml"), "2")
    assert old["holdout"]["training_rows"]["challenger"] == "newer_than_registration"
    n_hold = len(frame) - n_train
    assert old["holdout"]["excluded"]["before_candidate_registered"] == n_hold
    assert old["decision"] == "kept_champion" and "0 clean rows" in old["reason"]

    newer = judge_version(load(project / "retrainer.yaml"), "2", data=str(project / "later.csv"))
    h = newer["holdout"]
    assert h["training_rows"]["challenger"] == "newer_than_registration"
    assert h["excluded"]["before_candidate_registered"] == 0 and h["clean_rows"] == n_hold
    assert UNKNOWN not in newer["reason"]
