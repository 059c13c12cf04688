"""Batch scoring with the champion: the input rows plus ``prediction``, ``model_version``
and ``scored_at`` (one UTC time per run, so a run's rows are selected by equality).

Two engines, the same added columns. ``pandas`` (``local.py``) streams a CSV or Parquet
file (or a folder of Parquet parts) in chunks with flat memory and writes one file.
``spark`` (``spark.py``) reads a table or files with Spark, scores with
``mlflow.pyfunc.spark_udf`` and writes a folder of Parquet parts, for data that outgrows
one process.

The output appears only when complete: it is written beside the target under a dot-name
and renamed at the end, so a failed run leaves no half file behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.batch.common import RowProgress, format_of, required_columns, resolve_source
from retrainer.errors import UserError

if TYPE_CHECKING:
    from retrainer.config import SparkConfig

DEFAULT_CHUNK_ROWS = 100_000


def predict_file(
    tracking_uri: str,
    model_name: str,
    data: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    engine: str = "pandas",
    alias: str = "champion",
    *,
    registry_uri: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: RowProgress | None = None,
    spark: SparkConfig | None = None,
) -> dict[str, Any]:
    """Score `data` (a path; with Spark also a table) with ``model_name@alias``.

    `progress` (pandas engine) is called after each chunk with the rows scored so far
    and the total when the input's footers say it; `spark` (the config's section) says
    which Spark session the Spark engine uses. Returns a summary of the run.
    """
    started = time.perf_counter()
    if engine not in ("pandas", "spark"):
        raise UserError(f"engine must be pandas or spark, not {engine!r}")
    if chunk_rows < 1:
        raise UserError(f"the chunk size must be at least 1 row, not {chunk_rows}")
    source = resolve_source(str(data), engine)
    output = Path(output_path)
    if engine == "spark":
        from retrainer.batch.spark import check_output_folder

        check_output_folder(output)
    else:
        format_of(output, "output")
    if source.path is not None and output.resolve() == source.path.resolve():
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
    scored_at = datetime.now(timezone.utc)
    workdir = tempfile.mkdtemp(prefix="retrainer-batch-")
    try:
        try:
            model = load_version(tracking_uri, registry_uri, model_name, version, workdir, client)
        except Exception as exc:  # noqa: BLE001 - say which version failed, and how
            raise RuntimeError(
                f"version {version} of '{model_name}' could not be loaded and checked: {exc}"
            ) from exc
        timings = {"load_model": time.perf_counter() - started}
        needed = required_columns(model)
        if engine == "pandas":
            from retrainer.batch.local import score_local

            rows, spent = score_local(model, source, output, format_of(output, "output"),
                                      needed, chunk_rows, scored_at, progress)
            timings.update(spent)
        else:
            from retrainer.batch.spark import score_spark

            mark = time.perf_counter()
            rows = score_spark(model, source, output, needed, scored_at, spark)
            timings["spark"] = time.perf_counter() - mark
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {
        "model": model_name,
        "alias": alias,
        "version": version,
        "engine": engine,
        "input": source.text,
        "output": str(output),
        "rows": rows,
        "scored_at": scored_at.isoformat(),
        "scoring_path": model.mode if engine == "pandas" else "spark_udf",
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if engine == "pandas":
        summary["chunk_rows"] = chunk_rows
    return summary
