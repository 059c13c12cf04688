"""Config: strict keys with did-you-mean, env expansion, paths and tracking URI precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrainer.config import load
from retrainer.errors import UserError

MINIMAL = "model: m\ndata: {source: data.csv}\ntrain: {estimator: sklearn.linear_model.Ridge}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "retrainer.yaml"
    path.write_text(text)
    return path


def test_defaults_fill_every_section(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, MINIMAL))
    assert cfg.experiment_name == "m"
    assert cfg.metrics == ["mse", "rmse", "r2"] and cfg.primary_metric == "mse"
    assert cfg.split.method == "random" and cfg.split.test_size == 0.25 and cfg.split.seed == 42
    assert cfg.gate.mode == "enforce" and cfg.gate.min_clean_rows == 30
    assert cfg.gate.confidence is None and cfg.gate.all_metrics_improve
    assert cfg.promote.alias == "champion" and not cfg.promote.legacy_stages
    assert cfg.drift.share == 0.5
    assert cfg.spark.master == "local[*]" and cfg.spark.conf == {}
    assert cfg.data.engine == "pandas" and cfg.data.max_rows == 5_000_000
    assert not cfg.data.sample


@pytest.mark.parametrize(("text", "expected"), [
    (MINIMAL + "gate: {thresholds: {rmse: {min_absolut_change: 0}}}\n",
     "unknown key 'gate.thresholds.rmse.min_absolut_change' (did you mean 'min_absolute_change'?)"),
    (MINIMAL + "spilt: {method: random}\n", "unknown key 'spilt' (did you mean 'split'?)"),
    (MINIMAL + "gate: {mod: enforce}\n", "unknown key 'gate.mod' (did you mean 'mode'?)"),
    (MINIMAL + "metrics: [rmse, rsme]\n", "unknown metric 'rsme' (did you mean 'rmse'?)"),
    (MINIMAL + "gate: {thresholds: {accuracyy: {threshold: 1}}}\n", "unknown metric 'accuracyy'"),
    (MINIMAL + "gate: {mode: sometimes}\n", "gate.mode"),
    (MINIMAL + "split: {method: time}\n", "needs split.column"),
    (MINIMAL + "split: {test_size: 1.5}\n", "split.test_size"),
    ("model: m\ndata: {source: x.csv}\ntrain: {}\n", "exactly one of train.estimator"),
    ("data: {source: x.csv}\ntrain: {estimator: a.B}\n", "missing required key 'model'"),
    (MINIMAL + "triggers: {schedule: {cron: 'every monday'}}\n", "not a valid cron"),
    (MINIMAL + "spark: {master: localhost}\n", "spark.master: 'localhost': expected local[*]"),
    (MINIMAL + "spark: {conf: {executor.memory: 2g}}\n",
     "spark.conf: key 'executor.memory': Spark settings start with 'spark.'"),
    (MINIMAL + "spark: {mastr: yarn}\n", "unknown key 'spark.mastr' (did you mean 'master'?)"),
    ("model: m\ndata: {source: d.csv, engine: spark}\ntrain: {estimator: a.B}\n",
     "data.engine 'spark' needs a spark: source"),
    ("model: m\ndata: {source: 'spark:t', max_rows: 0}\ntrain: {estimator: a.B}\n",
     "data.max_rows"),
])
def test_invalid_config_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(UserError) as err:
        load(write(tmp_path, text))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="cannot parse YAML"):
        load(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(UserError, match="mapping"):
        load(write(tmp_path, "- a\n- b\n"))


def test_env_expansion_and_missing_variable(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_SECRET_URI", "postgresql+psycopg2://u:s3cret@db/x")
    text = MINIMAL.replace("source: data.csv", "source: '${RT_SECRET_URI}', query: select 1")
    cfg = load(write(tmp_path, text))
    assert cfg.data.source == "postgresql+psycopg2://u:s3cret@db/x"
    monkeypatch.delenv("RT_SECRET_URI")
    with pytest.raises(UserError, match=r"\$\{RT_SECRET_URI\} is not set"):
        load(write(tmp_path, text))
    cfg = load(write(tmp_path, MINIMAL + "experiment: ${RT_UNSET:-fallback}\n"))
    assert cfg.experiment == "fallback"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "proj"
    sub.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load(write(sub, MINIMAL))
    assert cfg.tracking_uri == f"sqlite:///{sub / 'mlflow.db'}"
    assert cfg.resolve_path("data.csv") == str(sub / "data.csv")


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert load(write(tmp_path, MINIMAL)).tracking_uri == "http://127.0.0.1:1"
    with_key = MINIMAL + "tracking_uri: sqlite:///store.db\n"
    assert load(write(tmp_path, with_key)).tracking_uri == f"sqlite:///{tmp_path / 'store.db'}"
    flag = load(write(tmp_path, with_key), tracking_uri="http://127.0.0.1:2")
    assert flag.tracking_uri == "http://127.0.0.1:2"
