"""Batch scoring with the champion, on a real MLflow store: pandas (chunked) and Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from retrainer.batch import predict_file
from retrainer.batch.common import ADDED, resolve_source
from retrainer.errors import UserError
from serving_helpers import Store, diabetes, ridge

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")
MODEL = "batch-diab"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    X, y = diabetes()
    s = Store.create(tmp_path_factory.mktemp("batch-store"))
    champion = s.log_sklearn(ridge(1.0, X, y), X)
    challenger = s.log_sklearn(ridge(5.0, X, y), X)
    s.register(MODEL, *champion, alias="champion")
    s.register(MODEL, *challenger, alias="challenger")
    s.models["champion"], s.models["challenger"] = s.models[champion[0]], s.models[challenger[0]]
    return s


@pytest.fixture
def data() -> pd.DataFrame:
    """The diabetes features with an id and the target, as a team's scoring file has them."""
    X, y = diabetes()
    return X.assign(customer_id=np.arange(len(X)), target=y)


def features(frame: pd.DataFrame) -> pd.DataFrame:
    X, _ = diabetes()
    return frame[list(X.columns)]


def test_csv_in_chunks_to_parquet(store: Store, data: pd.DataFrame, tmp_path: Path) -> None:
    src, out = tmp_path / "scoring.csv", tmp_path / "scored.parquet"
    data.to_csv(src, index=False)
    summary = predict_file(store.uri, MODEL, src, out, chunk_rows=100)
    assert summary["rows"] == len(data) == 442
    assert summary["version"] == "1" and summary["engine"] == "pandas"
    assert summary["output"] == str(out) and summary["seconds"] >= 0
    assert summary["chunk_rows"] == 100
    assert set(summary["timings"]) == {"load_model", "read", "score", "write"}
    scored = pd.read_parquet(out)
    assert list(scored.columns) == [*data.columns, *ADDED]
    assert (scored["model_version"] == "1").all()
    # One UTC time for the whole run, across chunks: a run's rows are selected by equality.
    assert str(scored["scored_at"].dt.tz) == "UTC"
    assert (scored["scored_at"] == pd.Timestamp(summary["scored_at"])).all()
    # Chunks of 100 rows are row groups of 100 (read back with flat memory too); floats
    # are not dictionary-encoded (slow to write, and larger), strings are.
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == 5 and meta.row_group(0).num_rows == 100
    names = meta.schema.names
    encodings = {n: meta.row_group(0).column(names.index(n)).encodings for n in names}
    assert not any("DICTIONARY" in e for e in encodings["prediction"])
    assert any("DICTIONARY" in e for e in encodings["model_version"])
    assert scored["customer_id"].tolist() == data["customer_id"].tolist()  # order kept
    np.testing.assert_allclose(
        scored["prediction"], store.models["champion"].predict(features(data)), rtol=1e-9
    )
    assert not list(tmp_path.glob(".*"))


def test_parquet_to_csv_with_another_alias(
    store: Store, data: pd.DataFrame, tmp_path: Path
) -> None:
    src, out = tmp_path / "scoring.parquet", tmp_path / "scored.csv"
    data.to_parquet(src)
    summary = predict_file(store.uri, MODEL, src, out, alias="challenger")
    assert summary["version"] == "2" and summary["rows"] == 442
    scored = pd.read_csv(out)
    np.testing.assert_allclose(
        scored["prediction"], store.models["challenger"].predict(features(data)), rtol=1e-9
    )
    assert (scored["model_version"] == 2).all()
    assert pd.to_datetime(scored["scored_at"]).nunique() == 1


def test_rescoring_a_scored_file_replaces_its_prediction(
    store: Store, data: pd.DataFrame, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    data.to_parquet(tmp_path / "in.parquet")
    predict_file(store.uri, MODEL, tmp_path / "in.parquet", first)
    predict_file(store.uri, MODEL, first, second)
    again = pd.read_parquet(second)
    assert list(again.columns) == [*data.columns, *ADDED]
    assert again["scored_at"].iloc[0] > pd.read_parquet(first)["scored_at"].iloc[0]


def test_user_mistakes_are_one_line_user_errors(
    store: Store, data: pd.DataFrame, tmp_path: Path
) -> None:
    csv = tmp_path / "in.csv"
    data.to_csv(csv, index=False)
    out = tmp_path / "out.parquet"
    cases = [
        ((tmp_path / "absent.csv", out), {}, "data file not found"),
        ((csv, tmp_path / "out.json"), {}, "use a .csv or .parquet"),
        ((csv, tmp_path / "no-such-dir" / "out.csv"), {}, "output folder does not exist"),
        ((csv, csv), {}, "overwrite the input"),
        ((csv, out), {"engine": "dask"}, "engine must be"),
        ((csv, out), {"alias": "nobody"}, "no 'nobody' alias"),
        ((csv, out), {"chunk_rows": 0}, "at least 1 row"),
        (("spark:events", out), {}, "Spark tables are scored with --engine spark"),
    ]
    wrong_cols = tmp_path / "wrong.csv"
    data.drop(columns=["bmi", "s3"]).to_csv(wrong_cols, index=False)
    cases.append(((wrong_cols, out), {}, "missing column(s) the model needs: bmi, s3"))
    bad_value = tmp_path / "bad.csv"
    data.astype({"age": object}).assign(age=["old"] + data["age"].tolist()[1:]).to_csv(
        bad_value, index=False
    )
    cases.append(((bad_value, out), {}, "age"))
    nan_value = tmp_path / "nan.parquet"
    data.assign(bmi=[np.nan] + data["bmi"].tolist()[1:]).to_parquet(nan_value)
    cases.append(((nan_value, out), {}, "could not score rows 0-"))
    for (src, dst), kwargs, message in cases:
        with pytest.raises(UserError) as err:
            predict_file(store.uri, MODEL, src, dst, **kwargs)
        assert message in str(err.value), (src, str(err.value))
        assert "\n" not in str(err.value)
        assert not out.exists()  # nothing half-written
    assert not list(tmp_path.glob(".*"))


def test_progress_bar_on_a_terminal(store: Store, data: pd.DataFrame, tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from retrainer.cli.serve_predict import _progress

    src = tmp_path / "in.parquet"
    data.to_parquet(src)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with _progress(console, live=True, spark=False) as progress:
        predict_file(store.uri, MODEL, src, tmp_path / "out.parquet", chunk_rows=100,
                     progress=progress)
    assert "442/442" in screen.getvalue()  # the total from the Parquet footer
    with _progress(console, live=False, spark=False) as progress:  # piped or --json
        assert progress is None


@pytest.mark.spark
def test_spark_engine_writes_parts_like_the_pandas_engine(
    spark: object, store: Store, data: pd.DataFrame, tmp_path: Path
) -> None:
    import pyarrow.dataset as ds

    src = tmp_path / "scoring.csv"
    data.to_csv(src, index=False)
    want = store.models["champion"].predict(features(data))
    out = tmp_path / "scored"
    summary = predict_file(store.uri, MODEL, src, out, engine="spark")
    assert summary["rows"] == 442 and summary["engine"] == "spark"
    assert out.is_dir() and list(out.glob("part-*.parquet"))  # a folder of Parquet parts
    scored = pd.read_parquet(out).sort_values("customer_id")
    assert list(scored.columns) == [*data.columns, *ADDED]
    np.testing.assert_allclose(scored["prediction"], want, rtol=1e-9)
    assert (scored["model_version"] == "1").all()
    assert (scored["scored_at"] == pd.Timestamp(summary["scored_at"])).all()

    # The same added columns, with the same types, as the pandas engine writes.
    predict_file(store.uri, MODEL, src, tmp_path / "local.parquet")
    local, parts = ds.dataset(tmp_path / "local.parquet").schema, ds.dataset(out).schema
    assert [parts.field(c).type for c in ADDED] == [local.field(c).type for c in ADDED]
    assert str(local.field("scored_at").type) == "timestamp[us, tz=UTC]"
    assert not list(tmp_path.glob(".*"))


@pytest.mark.spark
def test_spark_engine_reads_tables(
    spark: object, store: Store, data: pd.DataFrame, tmp_path: Path
) -> None:
    want = store.models["champion"].predict(features(data))
    spark.createDataFrame(data).write.saveAsTable("to_score")  # type: ignore[attr-defined]
    try:
        out = tmp_path / "from-table"
        summary = predict_file(store.uri, MODEL, "spark:to_score", out, engine="spark")
        assert summary["rows"] == 442 and summary["input"] == "spark:to_score"
        scored = pd.read_parquet(out).sort_values("customer_id")
        np.testing.assert_allclose(scored["prediction"], want, rtol=1e-9)
    finally:
        spark.sql("DROP TABLE IF EXISTS to_score")  # type: ignore[attr-defined]


def test_what_data_names(tmp_path: Path) -> None:
    """--data: a file wins over a table of the same name; tables only with Spark."""
    assert resolve_source("sales.customers", "spark").table == "sales.customers"
    assert resolve_source("spark:main.sales.customers", "spark").table == "main.sales.customers"
    (tmp_path / "scores").mkdir()  # a folder of parts named like a table
    found = resolve_source("scores", "spark")
    assert found.table is None and found.path == Path("scores") and found.fmt == "parquet"
    assert resolve_source("spark:scores", "spark").path == Path("scores")
    for text, engine, message in [
        ("sales.customers", "pandas", "data file not found"),
        ("absent.parquet", "spark", "data file not found"),  # a file name, not a table
        ("spark:t", "pandas", "scored with --engine spark"),
        ("spark:", "spark", "needs a table name"),
    ]:
        with pytest.raises(UserError, match=message):
            resolve_source(text, engine)


@pytest.mark.spark
def test_spark_engine_user_mistakes(
    spark: object, store: Store, data: pd.DataFrame, tmp_path: Path
) -> None:
    src = tmp_path / "in.parquet"
    data.to_parquet(src)
    wrong = tmp_path / "wrong.parquet"
    data.drop(columns="bmi").to_parquet(wrong)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "old.parquet").write_bytes(b"keep me")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        ("no_such_table", tmp_path / "o1", "table not found: no_such_table"),
        ("spark:db.absent", tmp_path / "o2", "table not found: db.absent"),
        (str(src), taken, "already exists and is not empty"),
        (str(src), a_file, "is a file, not a folder"),
        (str(src), tmp_path / "o.csv", "not a CSV file"),
        (str(wrong), tmp_path / "o3", "missing column(s) the model needs: bmi"),
    ]
    for data_arg, out, message in cases:
        with pytest.raises(UserError) as err:
            predict_file(store.uri, MODEL, data_arg, out, engine="spark")
        assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert (taken / "old.parquet").read_bytes() == b"keep me" and a_file.read_text() == "x"
    assert not any(p.exists() for p in (tmp_path / "o1", tmp_path / "o2", tmp_path / "o3"))
    assert not list(tmp_path.glob(".*"))
