"""Batch scoring with the champion: a CSV or Parquet file in, the same rows plus
``prediction`` and ``model_version`` out.

Two engines. ``pandas`` streams the input in chunks through pyarrow (memory stays flat
however large the file) and scores each chunk with the same converter and fast path the
REST server uses. ``spark`` reads with a local Spark session and scores with
``mlflow.pyfunc.spark_udf``, for data that outgrows one process.

The output appears only when complete: it is written beside the target under a dot-name
and renamed at the end, so a failed run leaves no half file behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrainer.errors import UserError

if TYPE_CHECKING:
    from retrainer.config import SparkConfig

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
RESERVED = ("prediction", "model_version")


def _format_of(path: Path, role: str) -> str:
    if role == "input" and path.is_dir():
        return "parquet"  # a folder of Parquet parts (e.g. Spark output, the inference log)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{role} {path}: use a .csv or .parquet file")
    return fmt


def predict_file(
    tracking_uri: str,
    model_name: str,
    data_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    engine: str = "pandas",
    alias: str = "champion",
    *,
    registry_uri: str | None = None,
    chunk_rows: int = 100_000,
    spark: SparkConfig | None = None,
) -> dict[str, Any]:
    """Score ``data_path`` with ``model_name@alias``; returns a summary of the run."""
    started = time.perf_counter()
    data, output = Path(data_path), Path(output_path)
    if engine not in ("pandas", "spark"):
        raise UserError(f"engine must be pandas or spark, not {engine!r}")
    if not data.exists():
        raise UserError(f"data file not found: {data}")
    in_fmt, out_fmt = _format_of(data, "input"), _format_of(output, "output")
    if output.resolve() == data.resolve():
        raise UserError("the output would overwrite the input: choose another --output path")
    if not output.parent.is_dir():
        raise UserError(f"output folder does not exist: {output.parent}")

    from mlflow import MlflowClient

    from retrainer.registry import probe
    from retrainer.serving.model import load_version, resolve_version

    probe(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    version = resolve_version(client, model_name, alias)
    if version is None:
        raise UserError(
            f"model '{model_name}' has no '{alias}' alias (nor a version in the legacy stage): "
            "nothing to score with"
        )
    workdir = tempfile.mkdtemp(prefix="retrainer-batch-")
    try:
        try:
            model = load_version(tracking_uri, registry_uri, model_name, version, workdir, client)
        except Exception as exc:  # noqa: BLE001 - say which version failed, and how
            raise RuntimeError(
                f"version {version} of '{model_name}' could not be loaded and checked: {exc}"
            ) from exc
        needed = _required_columns(model)
        if engine == "pandas":
            rows = _score_pandas(model, data, in_fmt, output, out_fmt, needed, chunk_rows)
        else:
            rows = _score_spark(model, data, in_fmt, output, out_fmt, needed, spark)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "model": model_name,
        "alias": alias,
        "version": version,
        "engine": engine,
        "input": str(data),
        "output": str(output),
        "rows": rows,
        "scoring_path": model.mode if engine == "pandas" else "spark_udf",
        "seconds": round(time.perf_counter() - started, 3),
    }


def _required_columns(model: Any) -> list[str]:
    schema = model.input_schema
    if schema is None or not schema.has_input_names():
        return []
    return list(schema.required_input_names())


def _check_columns(present: list[str], needed: list[str], data: Path) -> None:
    missing = [c for c in needed if c not in present]
    if missing:
        raise UserError(f"{data.name} is missing column(s) the model needs: {', '.join(missing)}")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    if "Error: " in text:  # MLflow quotes the whole input before the reason
        text = text.rsplit("Error: ", 1)[1]
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- pandas engine


def _arrow_type(spec_type: Any) -> Any:
    import pyarrow as pa

    name = getattr(spec_type, "name", None)
    return {
        "double": pa.float64(),
        "float": pa.float32(),
        "long": pa.int64(),
        "integer": pa.int32(),
        "boolean": pa.bool_(),
        "string": pa.string(),
    }.get(name)


def _batches(model: Any, data: Path, fmt: str, chunk_rows: int) -> tuple[Any, Iterator[Any]]:
    """The input's Arrow schema and its record batches, streamed."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    try:
        if fmt == "parquet":
            dataset = ds.dataset(str(data), format="parquet")
            return dataset.schema, iter(dataset.to_batches(batch_size=chunk_rows))
        # Pin the signature's columns to the model's types, so every chunk has the same
        # schema as the first (inference from the first block could say int, then meet 1.5).
        types = {}
        schema = model.input_schema
        if schema is not None and schema.has_input_names():
            for spec in schema.inputs:
                t = _arrow_type(spec.type)
                if t is not None:
                    types[spec.name] = t
        reader = pacsv.open_csv(
            str(data),
            read_options=pacsv.ReadOptions(block_size=8 << 20),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
        return reader.schema, _csv_batches(reader, data)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read {data.name}: {_csv_message(exc, data)}") from None


def _csv_batches(reader: Any, data: Path) -> Iterator[Any]:
    import pyarrow as pa

    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise UserError(f"cannot read {data.name}: {_csv_message(exc, data)}") from None
        yield batch


def _csv_message(exc: BaseException, data: Path) -> str:
    """Arrow names a bad CSV column by position; say its name from the header."""
    import csv
    import re

    text = _first_line(exc)
    found = re.search(r"CSV column #(\d+)", text)
    if found:
        try:
            with open(data, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh))
            text = text.replace(found.group(0), f"column '{header[int(found.group(1))]}'")
        except (OSError, StopIteration, IndexError, UnicodeDecodeError):
            pass
    return text


def _predict_chunk(model: Any, batch: Any, first_row: int) -> Any:
    """Predictions for one record batch; a client-side problem is a UserError."""
    from retrainer.serving.protocol import BadInput

    where = f"rows {first_row}-{first_row + batch.num_rows - 1}"
    frame = batch.to_pandas()
    try:
        if model.fast and model.columns is not None:
            return model.predict_array(model.frame_to_array(frame))
        return model.pyfunc.predict(frame)
    except BadInput as exc:
        raise UserError(f"{exc.message} ({where})") from None
    except Exception as exc:  # noqa: BLE001 - the model rejecting the data is the data's fault
        raise UserError(f"the model could not score {where}: {_first_line(exc)}") from None


def _prediction_columns(predictions: Any, rows: int) -> dict[str, Any]:
    import pandas as pd

    if isinstance(predictions, pd.Series):
        predictions = predictions.to_numpy()
    if isinstance(predictions, pd.DataFrame):
        if predictions.shape[1] == 1:
            return {"prediction": predictions.iloc[:, 0].to_numpy()}
        return {f"prediction_{c}": predictions[c].to_numpy() for c in predictions.columns}
    arr = np.asarray(predictions)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        return {f"prediction_{j}": arr[:, j] for j in range(arr.shape[1])}
    if arr.ndim != 1 or len(arr) != rows:
        raise RuntimeError(f"the model returned {arr.shape} predictions for {rows} rows")
    return {"prediction": arr}


def _score_pandas(
    model: Any,
    data: Path,
    in_fmt: str,
    output: Path,
    out_fmt: str,
    needed: list[str],
    chunk_rows: int,
) -> int:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema, batches = _batches(model, data, in_fmt, chunk_rows)
    _check_columns(schema.names, needed, data)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    writer: Any = None
    rows = 0
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            predictions = _predict_chunk(model, batch, rows)
            table = pa.Table.from_batches([batch])
            for name in RESERVED:  # re-scoring a scored file replaces the old columns
                if name in table.column_names:
                    table = table.drop_columns([name])
            extra = _prediction_columns(predictions, batch.num_rows)
            extra["model_version"] = np.full(batch.num_rows, model.version, dtype=object)
            for name, values in extra.items():
                table = table.append_column(name, pa.array(values))
            if writer is None:
                if out_fmt == "parquet":
                    writer = pq.ParquetWriter(str(tmp), table.schema)
                else:
                    writer = pacsv.CSVWriter(str(tmp), table.schema)
            else:
                table = table.cast(writer.schema)
            writer.write_table(table)
            rows += batch.num_rows
        if writer is None:
            raise UserError(f"{data.name} has no rows to score")
        writer.close()
        writer = None
        os.replace(tmp, output)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return rows


# --------------------------------------------------------------------------- spark engine


def _spark_result_type(model: Any) -> str:
    """The Spark type of the prediction column, from the model's output signature."""
    schema = model.pyfunc.metadata.get_output_schema()
    if schema is None or len(schema.inputs) != 1:
        return "double"
    spec_type = schema.inputs[0].type
    kind = getattr(spec_type, "kind", None)  # numpy dtype of a tensor spec
    name = getattr(spec_type, "name", None)
    if kind in ("U", "S", "O") or name == "string":
        return "string"
    if kind == "b" or name == "boolean":
        return "boolean"
    return "double"


def _score_spark(
    model: Any, data: Path, in_fmt: str, output: Path, out_fmt: str, needed: list[str],
    spark_cfg: SparkConfig | None = None,
) -> int:
    import mlflow

    from retrainer.spark import get_spark

    # The config's session (spark:); a one-line UserError without the spark extra.
    spark = get_spark(spark_cfg, "retrainer-predict")
    from pyspark.sql import functions as F
    reader = spark.read
    if in_fmt == "csv":
        df = reader.option("header", True).option("inferSchema", True).csv(str(data))
    else:
        df = reader.parquet(str(data))
    _check_columns(df.columns, needed, data)
    for name in RESERVED:
        if name in df.columns:
            df = df.drop(name)
    udf = mlflow.pyfunc.spark_udf(
        spark,
        model_uri=model.model_path,
        env_manager="local",
        result_type=_spark_result_type(model),
    )
    inputs = needed or list(df.columns)
    scored = df.withColumn("prediction", udf(*[F.col(c) for c in inputs])).withColumn(
        "model_version", F.lit(model.version)
    )
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if out_fmt == "parquet":
            # A folder of parts, as Spark writes at scale; pandas.read_parquet reads it.
            scored.write.mode("overwrite").parquet(str(tmp))
            _replace(tmp, output)
        else:
            # One CSV file, as the pandas engine writes: funnelled through one task.
            scored.coalesce(1).write.mode("overwrite").option("header", True).csv(str(tmp))
            part = next(tmp.glob("part-*.csv"))
            _replace(part, output)
    except Exception as exc:
        from pyspark.errors import PySparkException

        if isinstance(exc, PySparkException):
            raise UserError(f"spark could not score {data.name}: {_first_line(exc)}") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _count_rows(output, out_fmt)


def _count_rows(path: Path, fmt: str) -> int:
    """Rows written, read back without another Spark job (Parquet: from the footers)."""
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    if fmt == "parquet":
        return ds.dataset(str(path), format="parquet").count_rows()
    return pacsv.read_csv(str(path)).num_rows


def _replace(source: Path, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.replace(source, target)
