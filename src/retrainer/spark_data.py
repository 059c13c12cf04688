"""`spark:` sources: a table or a path read by Spark, and the bounded way rows leave it.

``spark:catalog.schema.table`` (or ``db.table``) is a table of the session's catalog (Unity
Catalog on Databricks, the Hive metastore elsewhere); anything with a ``/`` or a file
suffix is a path: a Parquet file or folder, a Delta folder (it has ``_delta_log``), CSV
or JSON. Rows come to this process only through `collect`, at most ``data.max_rows`` of
them (or a stated uniform sample of that many with ``data.sample: true``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.config import SparkConfig

PREFIX = "spark:"


@dataclass
class Collected:
    """Rows brought to the driver, and what was left behind."""

    frame: pd.DataFrame
    source_rows: int
    sample_note: str | None = None  # set when a uniform sample stands for the source


def is_path(spec: str) -> bool:
    """A path (a URL, a folder, a file) rather than a catalog table name."""
    return "/" in spec or os.sep in spec or spec.endswith(
        (".parquet", ".pq", ".csv", ".json", ".delta"))


def read_spark(source: str, spark_cfg: SparkConfig | None = None,
               base_dir: Path | None = None) -> Any:
    """The Spark DataFrame of ``spark:<table or path>``; a one-line UserError if unreadable."""
    from retrainer.spark import get_spark

    spec = source.removeprefix(PREFIX).strip()
    if not spec:
        raise UserError("spark source is empty: use spark:<table> or spark:<path>")
    spark = get_spark(spark_cfg)
    try:
        if not is_path(spec):
            return spark.table(spec)
        if "://" not in spec and not spec.startswith("dbfs:") and not os.path.isabs(spec) \
                and base_dir is not None:
            spec = str(base_dir / spec)  # relative to the config file, like every path
        reader = spark.read
        if spec.endswith(".csv"):
            return reader.option("header", True).option("inferSchema", True).csv(spec)
        if spec.endswith(".json"):
            return reader.json(spec)
        if spec.endswith(".delta") or os.path.isdir(os.path.join(spec, "_delta_log")):
            return reader.format("delta").load(spec)
        return reader.parquet(spec)
    except Exception as err:  # noqa: BLE001 - a missing table or path is the user's input
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UserError(f"spark source {spec!r}: {first}") from None


def collect(sdf: Any, source: str, max_rows: int, sample: bool, seed: int) -> Collected:
    """The rows as pandas, at most `max_rows`: all of them, a uniform sample, or an error.

    The count is one Spark job; above the limit nothing is collected unless `sample` says
    a uniform random sample (`uniform_sample`) may stand for the source, and the note
    says so.
    """
    rows = int(sdf.count())
    if rows <= max_rows:
        return Collected(sdf.toPandas(), rows)
    if not sample:
        raise UserError(
            f"{source} has {rows:,} rows, more than data.max_rows ({max_rows:,}) to bring "
            "into one process: raise data.max_rows, set data.sample: true (a uniform "
            "sample), or train in Spark (an entrypoint taking a pyspark.sql.DataFrame)")
    frame = uniform_sample(sdf, max_rows, rows, seed).toPandas()
    note = (f"a uniform random sample of {len(frame):,} of the {rows:,} rows of {source} "
            f"(data.sample, data.max_rows {max_rows:,}, seed {seed})")
    return Collected(frame, rows, note)


def uniform_sample(sdf: Any, n: int, rows: int, seed: int) -> Any:
    """At most `n` of `rows` rows, each kept with the same probability (seeded).

    Bernoulli at a rate four standard deviations under n, so the cut to n (which would
    favour the first partitions) almost never takes a row; all rows when rows <= n.
    """
    if rows <= n:
        return sdf
    fraction = max(n - 4 * n ** 0.5, 1.0) / rows
    return sdf.sample(withReplacement=False, fraction=fraction, seed=seed).limit(n)
