"""Batch scoring with the champion, on a real MLflow store: pandas (chunked) and Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrainer.batch import predict_file
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
    scored = pd.read_parquet(out)
    assert list(scored.columns) == [*data.columns, "prediction", "model_version"]
    assert (scored["model_version"] == "1").all()
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


def test_rescoring_a_scored_file_replaces_its_prediction(
    store: Store, data: pd.DataFrame, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    data.to_parquet(tmp_path / "in.parquet")
    predict_file(store.uri, MODEL, tmp_path / "in.parquet", first)
    predict_file(store.uri, MODEL, first, second)
    again = pd.read_parquet(second)
    assert list(again.columns) == [*data.columns, "prediction", "model_version"]


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


@pytest.mark.spark
def test_spark_engine_matches_the_model(store: Store, data: pd.DataFrame, tmp_path: Path,
                                        spark: object) -> None:
    src = tmp_path / "scoring.csv"
    data.to_csv(src, index=False)
    want = store.models["champion"].predict(features(data))

    summary = predict_file(store.uri, MODEL, src, tmp_path / "scored.parquet", engine="spark")
    assert summary["rows"] == 442 and summary["engine"] == "spark"
    scored = pd.read_parquet(tmp_path / "scored.parquet").sort_values("customer_id")
    assert list(scored.columns) == [*data.columns, "prediction", "model_version"]
    np.testing.assert_allclose(scored["prediction"], want, rtol=1e-9)
    assert (scored["model_version"] == "1").all()

    summary = predict_file(store.uri, MODEL, src, tmp_path / "scored.csv", engine="spark")
    scored = pd.read_csv(tmp_path / "scored.csv").sort_values("customer_id")
    assert summary["rows"] == 442 and len(scored) == 442
    np.testing.assert_allclose(scored["prediction"], want, rtol=1e-9)

    wrong = tmp_path / "wrong.csv"
    data.drop(columns="bmi").to_csv(wrong, index=False)
    with pytest.raises(UserError, match="missing column"):
        predict_file(store.uri, MODEL, wrong, tmp_path / "x.parquet", engine="spark")
    assert not list(tmp_path.glob(".*"))
