"""`retrainer predict` as a user runs it: a project from `init`, a champion in its store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving_helpers import Store, diabetes, ridge

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


@pytest.fixture(scope="module")
def scored_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A `retrainer init` diabetes project with a champion in its own embedded store."""
    from retrainer.project import write_example

    project = tmp_path_factory.mktemp("predict-project")
    write_example(project, "diabetes")
    X, y = diabetes()
    store = Store.create(project)  # project/mlflow.db: the config's sqlite:///mlflow.db
    model = ridge(1.0, X, y)
    store.register("diabetes-ridge", *store.log_sklearn(model, X), alias="champion")
    X.assign(target=y).to_csv(project / "to_score.csv", index=False)
    return project, model


def test_predict_json(scored_project: tuple[Path, object], cli: Callable[..., object]) -> None:
    project, model = scored_project
    res = cli(
        "predict", "--data", "to_score.csv", "--output", "scored.parquet", "--json", cwd=project
    )
    assert res.code == 0, res.stderr
    doc = res.json()  # exactly one JSON document on stdout
    assert doc["rows"] == 442 and doc["version"] == "1" and doc["engine"] == "pandas"
    assert doc["model"] == "diabetes-ridge" and doc["output"] == "scored.parquet"
    scored = pd.read_parquet(project / "scored.parquet")
    X, _ = diabetes()
    np.testing.assert_allclose(scored["prediction"], model.predict(X), rtol=1e-9)
    assert (scored["model_version"] == "1").all()
    assert "━" not in res.stderr  # no progress bar when piped


def test_predict_human_output(
    scored_project: tuple[Path, object], cli: Callable[..., object]
) -> None:
    project, _ = scored_project
    res = cli("predict", "--data", "to_score.csv", "--output", "scored.csv", cwd=project)
    assert res.code == 0, res.stderr
    assert "scored 442 rows with diabetes-ridge version 1" in res.stdout
    assert len(pd.read_csv(project / "scored.csv")) == 442


def test_predict_user_mistakes_exit_2(
    scored_project: tuple[Path, object], cli: Callable[..., object]
) -> None:
    project, _ = scored_project
    pd.read_csv(project / "to_score.csv").drop(columns="bmi").to_csv(
        project / "no_bmi.csv", index=False
    )
    cases = [
        (("--data", "absent.csv", "--output", "o.parquet"), "data file not found"),
        (
            ("--data", "no_bmi.csv", "--output", "o.parquet"),
            "missing column(s) the model needs: bmi",
        ),
        (("--data", "to_score.csv", "--output", "o.txt"), "use a .csv or .parquet"),
        (("--data", "to_score.csv", "--output", "o.parquet", "--engine", "dask"), "engine must be"),
        # Checked before Spark starts: no JVM for a mistake.
        (("--data", "to_score.csv", "--output", ".", "--engine", "spark"), "already exists"),
    ]
    for args, message in cases:
        res = cli("predict", *args, "--json", cwd=project)
        assert res.code == 2, (args, res.stderr)
        assert res.stdout == ""
        lines = [x for x in res.stderr.splitlines() if x.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], res.stderr
    assert not (project / "o.parquet").exists()
