"""The Spark engine: a table or files read by Spark, scored by ``mlflow.pyfunc.spark_udf``,
written as a folder of Parquet parts (one per task, as Spark writes at scale).

Nothing is collected to the driver: the rows go from the reader through the UDF to the
writer in Spark's tasks. The folder appears only when complete: Spark writes beside it
under a dot-name, which is renamed at the end.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.batch.common import ADDED, Source, check_columns, first_line
from retrainer.errors import UserError

if TYPE_CHECKING:
    from retrainer.config import SparkConfig


def check_output_folder(output: Path) -> None:
    """The Spark engine writes a new folder: never over a file or a folder with data."""
    if output.suffix.lower() == ".csv":
        raise UserError(f"--output {output}: the spark engine writes a folder of Parquet parts, "
                        "not a CSV file (use --engine pandas for one file)")
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file, not a folder: the spark engine writes "
                        "a folder of Parquet parts")
    if output.is_dir() and any(output.iterdir()):
        raise UserError(f"--output {output} already exists and is not empty: choose a new "
                        "folder (nothing is overwritten)")


def score_spark(
    model: Any, source: Source, output: Path, needed: list[str], scored_at: datetime,
    spark_cfg: SparkConfig | None = None,
) -> int:
    """Score `source` into the folder `output`; returns the rows written."""
    import mlflow

    from retrainer.spark import get_spark

    # The config's session (spark:); a one-line UserError without the spark extra.
    spark = get_spark(spark_cfg, "retrainer-predict")
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    df = _read(spark, source)
    check_columns(df.columns, needed, source)
    present = [name for name in ADDED if name in df.columns]
    if present:  # re-scoring a scored table replaces the old columns
        df = df.drop(*present)
    udf = mlflow.pyfunc.spark_udf(
        spark,
        model_uri=model.model_path,
        env_manager="local",
        result_type=_result_type(model),
    )
    inputs = needed or list(df.columns)
    scored = (df.withColumn("prediction", udf(*[F.col(c) for c in inputs]))
              .withColumn("model_version", F.lit(str(model.version)))
              .withColumn("scored_at", F.lit(scored_at)))
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _utc_micros(spark):
            scored.write.mode("errorifexists").parquet(str(tmp))
        if output.is_dir():
            output.rmdir()  # empty (checked): the finished folder takes its place
        os.replace(tmp, output)
    except PySparkException as exc:
        raise UserError(f"spark could not score {source.name}: {first_line(exc)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    import pyarrow.dataset as ds

    # Rows written, from the parts' footers: no second Spark job over the data.
    return ds.dataset(str(output), format="parquet").count_rows()


def _read(spark: Any, source: Source) -> Any:
    from pyspark.errors import AnalysisException

    try:
        if source.table is not None:
            return spark.table(source.table)
        assert source.path is not None
        if source.fmt == "csv":
            return (spark.read.option("header", True).option("inferSchema", True)
                    .csv(str(source.path)))
        return spark.read.parquet(str(source.path))
    except AnalysisException as exc:
        text = first_line(exc)
        if source.table is not None and "TABLE_OR_VIEW_NOT_FOUND" in text:
            raise UserError(f"table not found: {source.table} (nor a file of that name)") \
                from None
        raise UserError(f"spark cannot read {source.text}: {text}") from None


class _utc_micros:
    """Write timestamps as Parquet TIMESTAMP_MICROS (UTC), as the pandas engine does.

    Spark's default is the legacy INT96, which readers see without a time zone. The
    setting is the session's, so it is put back afterwards.
    """

    KEY = "spark.sql.parquet.outputTimestampType"

    def __init__(self, spark: Any) -> None:
        self.conf = spark.conf
        self.before: str | None = None

    def __enter__(self) -> None:
        self.before = self.conf.get(self.KEY, None)
        self.conf.set(self.KEY, "TIMESTAMP_MICROS")

    def __exit__(self, *exc: object) -> None:
        if self.before is None:
            self.conf.unset(self.KEY)
        else:
            self.conf.set(self.KEY, self.before)


def _result_type(model: Any) -> str:
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
