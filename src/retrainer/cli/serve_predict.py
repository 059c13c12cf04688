"""`serve` and `predict`: the champion over REST (hot swap) and in batch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from retrainer.cli.app import (
    ConfigOpt,
    JsonOpt,
    TrackingOpt,
    app,
    emit_json,
    load_config,
    quiet_stdout,
    terminal,
)


@app.command()
def serve(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    host: Annotated[str, typer.Option(
        "--host", help="Interface to bind; loopback unless you mean to expose it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="uvicorn worker processes; each follows the alias itself.")
    ] = 1,
    poll_seconds: Annotated[float | None, typer.Option(
        "--poll-seconds", help="How often to check the alias (default: serve.poll_seconds).",
        show_default=False)] = None,
) -> None:
    """REST server for the champion (MLflow scoring protocol); swaps when the alias moves.

    While a canary rollout runs, the `canary` version answers `rollout.canary_share` of
    the requests (see docs/rollout.md).
    """
    from retrainer.redact import redact
    from retrainer.registry import probe
    from retrainer.serving.server import serve as run_server

    cfg = load_config(config, tracking_uri)
    probe(cfg.tracking_uri)
    opts = cfg.serve
    alias = cfg.promote.alias
    rollout = cfg.rollout
    # Canary mode: also follow the `canary` alias and answer its share of requests.
    share = rollout.canary_share if rollout.mode == "canary" else 0.0
    canary = (f", and @canary for {share:.0%} of requests while one runs"
              + (f" (sticky by {rollout.sticky_header})" if rollout.sticky_header else "")
              if share else "")
    terminal(stderr=True).print(
        f"serving {cfg.model}@{alias}{canary} from {redact(cfg.tracking_uri)} on "
        f"http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''})")
    run_server(
        cfg.tracking_uri, cfg.model, host=host, port=port, workers=workers, alias=alias,
        poll_seconds=poll_seconds if poll_seconds is not None else opts.poll_seconds,
        token_env=opts.token_env,
        inference_log=cfg.resolve_path(opts.inference_log) if opts.inference_log else None,
        shadow=opts.shadow,
        max_body_bytes=int(opts.max_body_mb * 2**20),
        # config.load resolved it: never left to an inherited MLFLOW_REGISTRY_URI.
        registry_uri=cfg.registry_uri,
        canary_share=share, sticky_header=rollout.sticky_header,
    )


@app.command()
def predict(
    data: Annotated[str, typer.Option(
        "--data", help="CSV or Parquet file, or a folder of Parquet parts; with --engine spark "
        "also a table (spark:<table> or a bare table name).")],
    output: Annotated[Path, typer.Option(
        "--output", help="Where to write the rows plus prediction, model_version and "
        "scored_at: a .csv or .parquet file (pandas), a new folder of Parquet parts (spark).")],
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="pandas (streams in chunks, flat memory) or spark (spark_udf).")
    ] = "pandas",
    chunk_rows: Annotated[int, typer.Option(
        "--chunk-rows", min=1, help="Rows per chunk (pandas): memory grows with it.")
    ] = 100_000,
    as_json: JsonOpt = False,
) -> None:
    """Batch scoring with the champion: the input rows plus prediction, model_version and
    scored_at."""
    # Between chunks the main thread reads and writes; OpenMP threads left spinning after
    # each predict would take the CPU from it (measured in bench/batch.py). Set before
    # the math libraries load; an explicit setting wins.
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from retrainer.batch import predict_file

    cfg = load_config(config, tracking_uri)
    console = terminal(stderr=True)
    with quiet_stdout(), _progress(console, live=console.is_terminal and not as_json,
                                   spark=engine == "spark") as progress:
        summary = predict_file(
            cfg.tracking_uri, cfg.model, data, output, engine=engine, alias=cfg.promote.alias,
            registry_uri=cfg.registry_uri, chunk_rows=chunk_rows, progress=progress,
            spark=cfg.spark,
        )
    if as_json:
        emit_json(summary)
        return
    terminal().print(
        f"scored {summary['rows']} rows with {cfg.model} version {summary['version']} "
        f"({summary['engine']}, {summary['seconds']} s): {summary['output']}")


@contextlib.contextmanager
def _progress(console: Any, live: bool, spark: bool) -> Iterator[Any]:
    """A progress bar on a terminal (rows, rows/s, time left); nothing when piped or --json.

    The Spark engine's rows move inside Spark's tasks: a spinner says it is working.
    """
    if not live:
        yield None
        return
    if spark:
        with console.status("scoring with Spark"):
            yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("scoring"), BarColumn(), TaskProgressColumn(),
                   MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console, transient=True)
    task = bar.add_task("scoring", total=None)

    def advance(rows: int, total: int | None) -> None:
        bar.update(task, completed=rows, total=total)

    with bar:
        yield advance
