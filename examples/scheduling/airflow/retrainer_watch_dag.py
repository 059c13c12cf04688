"""Airflow DAG: evaluate retrainer's triggers every 15 minutes and run what fired.

Copy this file into your DAGs folder and set the two Airflow Variables (or edit the
defaults below):
  retrainer_config  path of retrainer.yaml on the workers
  retrainer_bin     the retrainer executable (e.g. a venv's bin/retrainer)

`retrainer watch --once` does the deciding (schedule, drift, new registered version,
performance decay); Airflow only decides how often to look. Trigger state lives in the
MLflow tracking store, so a retried or overlapping task neither fires twice nor forgets.
Exit codes: 0 done (also when nothing fired or the gate kept the champion); 1 a cycle
failed (recorded in MLflow and retried with backoff, so Airflow's retry picks it up);
2 invalid config or data, or another watcher of this model is running.

The task's XCom is the `watch --once --json` document, {"fired": [...], "cycles": [...]},
for downstream tasks (e.g. notify when a cycle promoted a new champion).
Works with Airflow 3 (airflow.sdk, standard provider) and Airflow 2.7+.
"""

from __future__ import annotations

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator


# Jinja, so the Variables are read when the task runs, not at every DAG parse.
CONFIG = "{{ var.value.get('retrainer_config', '/srv/models/diabetes/retrainer.yaml') }}"
RETRAINER = "{{ var.value.get('retrainer_bin', 'retrainer') }}"

# --json prints one indented document; the last stdout line becomes the XCom, so squeeze
# it onto one line (pipefail keeps retrainer's exit code).
WATCH = (
    "set -o pipefail; "
    f'"{RETRAINER}" watch --once --json -c "{CONFIG}" '
    "| python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))'"
)

with DAG(
    dag_id="retrainer_watch",
    description="retrainer: retrain, judge and promote when a trigger fires",
    schedule=timedelta(minutes=15),
    start_date=datetime(2024, 1, 1),
    catchup=False,          # retrainer's own schedule trigger fires missed slots once
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["mlflow", "retrainer"],
) as dag:
    BashOperator(
        task_id="watch_once",
        bash_command=WATCH,
        # cwd: relative paths in the config resolve against its own folder anyway.
        env={"PYTHONUNBUFFERED": "1"},
        append_env=True,
        do_xcom_push=True,
    )
