"""Data sources, validation at the boundary, and the three split methods."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrainer.config import DataConfig, SplitConfig, parse
from retrainer.data import Dataset, fingerprints, read_source, split, validate
from retrainer.errors import UserError


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": np.arange(200), "x1": rng.normal(size=200),
                         "x2": rng.normal(size=200), "ts": pd.date_range("2024-01-01",
                                                                           periods=200),
                         "target": rng.normal(size=200)})


def test_csv_parquet_glob_and_folder(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.iloc[:100].to_csv(tmp_path / "a.csv", index=False)
    frame.iloc[100:].to_csv(tmp_path / "b.csv", index=False)
    frame.to_parquet(tmp_path / "all.parquet")
    assert len(read_source("a.csv", tmp_path)) == 100
    assert len(read_source("*.csv", tmp_path)) == 200
    assert len(read_source("all.parquet", tmp_path)) == 200
    parts = tmp_path / "parts"
    parts.mkdir()
    frame.iloc[:50].to_parquet(parts / "p0.parquet")
    frame.iloc[50:].to_parquet(parts / "p1.parquet")
    assert len(read_source("parts", tmp_path)) == 200


def test_python_and_sklearn_sources(tmp_path: Path) -> None:
    (tmp_path / "loader.py").write_text(
        "import pandas as pd\n\ndef rows():\n"
        "    return pd.DataFrame({'a': [1, 2], 'target': [3, 4]})\n"
        "\ndef broken():\n    raise RuntimeError('warehouse is down')\n")
    assert list(read_source("python:loader.py:rows", tmp_path).columns) == ["a", "target"]
    assert list(read_source("python:loader:rows", tmp_path).columns) == ["a", "target"]
    with pytest.raises(UserError, match="warehouse is down"):
        read_source("python:loader.py:broken", tmp_path)
    assert len(read_source("sklearn:diabetes", tmp_path)) == 442
    with pytest.raises(UserError, match="unknown sklearn dataset"):
        read_source("sklearn:nope", tmp_path)


def test_sql_source_on_sqlite(tmp_path: Path, frame: pd.DataFrame) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    frame.drop(columns=["ts"]).to_sql("rows", engine, index=False)
    engine.dispose()
    got = read_source("sqlite:///w.db", tmp_path, "SELECT * FROM rows WHERE id < 10")
    assert len(got) == 10
    with pytest.raises(UserError, match="data.query"):
        read_source("sqlite:///w.db", tmp_path)
    with pytest.raises(UserError, match="SQL data source failed"):
        read_source("sqlite:///w.db", tmp_path, "SELECT * FROM missing_table")


def _pg_available() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"],
                          capture_output=True).returncode == 0


@pytest.mark.postgres
@pytest.mark.skipif(not _pg_available(), reason="PostgreSQL is not running on 127.0.0.1:5432")
def test_sql_source_on_postgresql(frame: pd.DataFrame) -> None:
    import sqlalchemy

    admin = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                                     isolation_level="AUTOCOMMIT")
    name = f"rt_data_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    try:
        engine = sqlalchemy.create_engine(url)
        frame.to_sql("rows", engine, index=False)
        engine.dispose()
        got = read_source(url, Path("."), "SELECT x1, x2, target FROM rows ORDER BY id")
        assert got.shape == (200, 3)
        np.testing.assert_allclose(got["x1"], frame["x1"])
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data file not found"):
        read_source("nope.csv", tmp_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="empty"):
        read_source("empty.csv", tmp_path)
    with pytest.raises(UserError, match="no file matches"):
        read_source("*.parquet", tmp_path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserError, match="unsupported format"):
        read_source("x.json", tmp_path)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda f: f.drop(columns=["target"]), "target column 'target' not found"),
    (lambda f: f.assign(target=[None] * 3 + list(f["target"][3:])), "3 missing values"),
    (lambda f: f.iloc[:0], "has no rows"),
    (lambda f: f.iloc[:3], "the split needs at least"),
    (lambda f: f[["target"]], "no feature columns"),
])
def test_validation_errors_name_the_problem(frame: pd.DataFrame, mutate, expected: str) -> None:
    with pytest.raises(UserError, match=expected):
        validate(mutate(frame.drop(columns=["ts"])), DataConfig(source="s"), "s", min_rows=9)


def test_declared_feature_must_exist(frame: pd.DataFrame) -> None:
    with pytest.raises(UserError, match="feature column 'x9' not found"):
        validate(frame, DataConfig(source="s", features=["x1", "x9"]), "s")


def _ds(frame: pd.DataFrame) -> Dataset:
    return validate(frame, DataConfig(source="s", drop=["ts", "id"]), "s")


def test_random_split_matches_scikit_learn(frame: pd.DataFrame) -> None:
    from sklearn.model_selection import train_test_split

    train, hold = split(_ds(frame), SplitConfig(method="random", test_size=0.25, seed=42))
    _, expected_hold = train_test_split(frame, test_size=0.25, random_state=42)
    assert list(hold.frame["id"]) == list(expected_hold["id"])
    assert len(train) == 150 and len(hold) == 50


def test_time_split_holds_out_the_newest_rows(frame: pd.DataFrame) -> None:
    shuffled = frame.sample(frac=1.0, random_state=1)
    ds = validate(shuffled, DataConfig(source="s", drop=["id"]), "s")
    train, hold = split(ds, SplitConfig(method="time", column="ts", test_size=0.2))
    assert hold.frame["ts"].min() > train.frame["ts"].max()
    assert len(hold) == 40


def test_hash_split_is_stable_as_data_grows(frame: pd.DataFrame) -> None:
    cfg = SplitConfig(method="hash", column="id", test_size=0.25, seed=3)
    _, small_hold = split(_ds(frame.iloc[:120]), cfg)
    _, big_hold = split(_ds(frame), cfg)
    small_ids = set(small_hold.frame["id"])
    big_ids = set(big_hold.frame["id"])
    assert small_ids == {i for i in big_ids if i < 120}
    assert 0.1 < len(big_ids) / 200 < 0.4
    # Without an id column, the whole row is hashed: the same rows, the same sides.
    whole = SplitConfig(method="hash", test_size=0.25, seed=3)
    _, a = split(_ds(frame.iloc[:120]), whole)
    _, b = split(_ds(frame), whole)
    assert set(a.frame.index) <= set(b.frame.index)


def test_fingerprints_identify_rows_not_positions(frame: pd.DataFrame) -> None:
    ds = _ds(frame)
    shuffled = _ds(frame.sample(frac=1.0, random_state=0))
    assert set(fingerprints(ds)) == set(fingerprints(shuffled))
    changed = frame.copy()
    changed.loc[0, "x1"] += 1e-9
    assert len(set(fingerprints(ds)) - set(fingerprints(_ds(changed)))) == 1


def test_config_relative_data_path(tmp_path: Path, frame: pd.DataFrame) -> None:
    from retrainer.data import load

    (tmp_path / "d").mkdir()
    frame.to_csv(tmp_path / "d" / "rows.csv", index=False)
    cfg = parse({"model": "m", "data": {"source": "d/rows.csv", "drop": ["ts", "id"]},
                 "train": {"estimator": "sklearn.linear_model.Ridge"}}, tmp_path)
    ds = load(cfg)
    assert ds.features == ["x1", "x2"] and len(ds) == 200
