"""The `retrainer` command line: parses, calls the modules, prints. Nothing else.

Heavy libraries (mlflow, pandas, scikit-learn) are imported inside the commands so that
`retrainer --help` starts fast. With `--json` a command prints exactly one JSON document
on stdout; logs and MLflow's own chatter go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from retrainer.errors import GateRejected, UserError

app = typer.Typer(
    name="retrainer",
    help="Continuous training and deployment for MLflow models: retrain the approved code on "
         "the latest data, judge the challenger against the champion on the same clean "
         "holdout, promote only through the validation gate, serve the champion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Config file (default: ./retrainer.yaml).", show_default=False)]
TrackingOpt = Annotated[str | None, typer.Option(
    "--tracking-uri", help="MLflow tracking URI; overrides the config and MLFLOW_TRACKING_URI.",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

_STDOUT = sys.stdout


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("retrainer").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("mlflow", "alembic", "urllib3", "py4j", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """MLflow prints 'View run …' on stdout with an http store: keep stdout for results."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    file = sys.stderr if stderr else _STDOUT
    # Piped output (logs, CI) has no terminal width: tables get room instead of 80 columns.
    width = None if file.isatty() or os.environ.get("COLUMNS") else 160
    return Console(file=file, highlight=False, soft_wrap=True, width=width)


def _emit_json(doc: Any) -> None:
    _STDOUT.write(json.dumps(doc, indent=2, default=str) + "\n")
    _STDOUT.flush()


def _load(config: Path | None, tracking_uri: str | None) -> Any:
    from retrainer.config import load

    return load(config, tracking_uri)


# --------------------------------------------------------------------------- init, demo

@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to write into.")] = Path("."),
    example: Annotated[str, typer.Option(help="Example to start from.")] = "diabetes",
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Write a working retrainer.yaml, a training entrypoint and example data."""
    from retrainer.project import write_example

    written = write_example(directory, example, force=force)
    console = _console()
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"next: cd {directory} && retrainer run")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo project.")] =
    Path("retrainer-demo"),
    as_json: JsonOpt = False,
) -> None:
    """The article's scenario end to end on an embedded store, with both comparison tables.

    Version 1 trains on all diabetes rows but the last 20 ("a week ago") and becomes the
    first champion; retraining on all rows gives a challenger, judged on the rows neither
    model trained on.
    """
    from retrainer.project import compare_policies, run_demo

    with _quiet_stdout():
        records = run_demo(directory, progress=None if as_json else _progress_line)
        policies = compare_policies(directory, records[-1])
    if as_json:
        _emit_json({"cycles": records, "policies": policies})
        return
    for rec in records:
        _print_record(rec)
    _print_policies(policies)


def _print_policies(policies: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="The same clean-holdout scores judged under each gate.policy "
                        "(what `retrainer run` would decide)", title_justify="left")
    for col in ("policy", "decision", "why"):
        table.add_column(col, overflow="fold")
    for p in policies:
        table.add_row(escape(p["policy"]), p["decision"], escape(p["reason"]))
    _console().print(table)


def _progress_line(text: str) -> None:
    _console(stderr=True).print(f"[dim]{text}[/dim]")


# --------------------------------------------------------------------------- run

@app.command()
def run(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Data to train on instead of data.source (path or URL).")] = None,
    trigger: Annotated[str, typer.Option(help="Why this cycle runs (recorded).")] = "manual",
    fail_on_reject: Annotated[bool, typer.Option(
        "--fail-on-reject", help="Exit 3 when the gate keeps the champion (for CI).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run one retrain cycle: train, judge against the champion, promote if the gate passes."""
    from retrainer.cycle import run_cycle

    cfg = _load(config, tracking_uri)
    with _quiet_stdout():
        record = _with_status(lambda: run_cycle(cfg, data=data, trigger=trigger),
                              "training and judging the challenger", quiet=as_json)
    if as_json:
        _emit_json(record)
    else:
        _print_record(record)
    if fail_on_reject and record["decision"] not in ("first_champion", "promoted",
                                                     "dry_run_would_promote"):
        raise GateRejected(record["reason"])


def _with_status(work: Callable[[], Any], text: str, quiet: bool) -> Any:
    if quiet:
        return work()
    with _console(stderr=True).status(text):
        return work()


def _print_record(record: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from retrainer.report import (
        SLICE_HEADER,
        comparison_tables,
        decision_head,
        differences_rows,
        slice_rows,
    )

    console = _console()
    for title, header, rows in comparison_tables(record):
        table = Table(title=title, title_justify="left")
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i < 2 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    h = record["holdout"]
    if h["excluded"]:
        console.print("excluded from the holdout: " + ", ".join(
            f"{v} rows {k.replace('_', ' ')}" for k, v in h["excluded"].items()))
    for note in h.get("notes", []):
        console.print(f"note: {escape(note)}")
    diffs = differences_rows(record)
    if diffs:
        table = Table(title="Challenger minus champion on the clean holdout (paired bootstrap)",
                      title_justify="left")
        for col in ("metric", "delta", "interval"):
            table.add_column(col, justify="right" if col != "metric" else "left")
        for row in diffs:
            table.add_row(*row)
        console.print(table)
    slices = slice_rows(record)
    if slices:
        table = Table(title="Slices: the primary metric on the clean holdout",
                      title_justify="left")
        for i, col in enumerate(SLICE_HEADER):
            table.add_column(col, justify="left" if i in (0, 6) else "right")
        for row in slices:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    for check in record.get("checks", []):
        mark = "[green]pass[/green]" if check["passed"] else "[red]fail[/red]"
        console.print(f"  {mark} {escape(check['name'])}: {escape(check['detail'])}")
    colour = "green" if record["decision"] in ("first_champion", "promoted") else "yellow"
    decision, reason = decision_head(record)
    console.print(f"[bold {colour}]{escape(decision)}[/bold {colour}]: version "
                  f"{record['challenger']['version']} — {escape(reason)}", highlight=False)
    console.print()


# --------------------------------------------------------------------------- status

@app.command()
def status(config: ConfigOpt = None, tracking_uri: TrackingOpt = None,
           as_json: JsonOpt = False) -> None:
    """Champion, challenger and previous: version, run, metrics, since when; last decision."""
    from retrainer.status import model_status

    cfg = _load(config, tracking_uri)
    with _quiet_stdout():
        doc = model_status(cfg)
    if as_json:
        _emit_json(doc)
        return
    from rich.table import Table

    console = _console()
    table = Table(title=f"{doc['model']} ({doc['tracking_uri']})", title_justify="left")
    for col in ("role", "version", "run", "since", *doc["metrics"]):
        table.add_column(col)
    for role in ("champion", "challenger", "previous"):
        entry = doc[role]
        if entry is None:
            table.add_row(role, "-", "-", "-", *("-" for _ in doc["metrics"]))
            continue
        table.add_row(role, entry["version"], (entry.get("run_id") or "-")[:12],
                      entry.get("since") or "-",
                      *(_num(entry["metrics"].get(m)) for m in doc["metrics"]))
    console.print(table)
    last = doc.get("last_decision")
    if last:
        console.print(f"last decision: [bold]{last['decision']}[/bold] at {last.get('at')} "
                      f"(trigger {last.get('trigger')}): {last.get('reason')}")
    if doc["champion"] is None:
        console.print("no champion yet: run `retrainer run`")
    elif doc["champion"].get("known_by") == "legacy_stage":
        console.print(f"champion known by its legacy '{doc['champion'].get('stage')}' stage "
                      "(no alias yet): the first promotion sets the aliases")
    if doc.get("repaired"):
        console.print("[yellow]finished a promotion a crash had left half-done "
                      "(recorded in `retrainer history`)[/yellow]")


def _num(value: Any) -> str:
    from retrainer.report import fmt

    return fmt(value)


# --------------------------------------------------------------------------- drift

@app.command("drift")
def drift_cmd(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Current data (default: triggers.drift.data).")] = None,
    html: Annotated[Path | None, typer.Option(
        "--html", help="Also write a self-contained HTML report here.")] = None,
    fail_on_drift: Annotated[bool, typer.Option(
        "--fail-on-drift", help="Exit 3 when the dataset drifted (for CI).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Current data against the champion's reference profile: per column, and predictions."""
    from retrainer.drift import champion_drift, render_html, table_view

    cfg = _load(config, tracking_uri)
    with _quiet_stdout():
        result = champion_drift(cfg, data)
    if html is not None:
        try:
            html.write_text(render_html(result.report, result.profile, result.current),
                            encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot write {html}: {err.strerror or err}") from None
    if as_json:
        for note in result.notes:
            _console(stderr=True).print(f"note: {note}")
        _emit_json(result.report.to_dict())
    else:
        from rich.table import Table

        title, header, rows, lines = table_view(result)
        table = Table(title=title, title_justify="left")
        for name in header:
            table.add_column(name, justify="right" if name in ("value", "threshold") else "left")
        for row in rows:
            table.add_row(*row)
        console = _console()
        console.print(table)
        for line in lines:
            console.print(line)
        if html is not None:
            console.print(f"wrote {html}")
    if fail_on_drift and result.report.dataset_drift:
        raise typer.Exit(3)


# ------------------------------------------------------------- history, rollback, promote

ActorOpt = Annotated[str | None, typer.Option(
    "--actor", help="Who is acting, for the history (default: $RETRAINER_ACTOR or OS user).",
    show_default=False)]


def _set_actor(actor: str | None) -> None:
    # stamp.actor() reads the environment, so every record of this command names them.
    if actor is not None:
        if not actor.strip():
            raise UserError("--actor must not be empty")
        os.environ["RETRAINER_ACTOR"] = actor.strip()


@app.command()
def history(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", help="Show the newest N entries.", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every decision and alias move of the model, newest first."""
    from retrainer.history import model_history

    cfg = _load(config, tracking_uri)
    with _quiet_stdout():
        doc = model_history(cfg, limit=limit)
    if as_json:
        _emit_json(doc)
        return
    from rich.table import Table

    table = Table(title=f"{doc['model']}: {len(doc['entries'])} of {doc['total']} entries, "
                        "newest first", title_justify="left")
    for col in ("when (UTC)", "what", "version", "champion", "trigger", "actor"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="fold", min_width=30)
    for e in doc["entries"]:
        what = e["what"] if e["decision"] in (None, e["what"]) else f"{e['what']}: {e['decision']}"
        before, after = e.get("champion_before") or "-", e.get("champion_after") or "-"
        champ = f"{before} -> {after}" if e.get("alias_moved") else before
        reason = e.get("reason") or ""
        if e.get("note"):
            reason = f"{reason} ({e['note']})".strip()
        reason = reason if len(reason) <= 120 else reason[:119] + "…"
        when = e["at"].replace("T", " ").removesuffix("+00:00")
        table.add_row(when, what, e.get("version") or "-", champ, e.get("trigger") or "-",
                      e.get("actor") or "-", reason)
    _console().print(table)
    if not doc["entries"]:
        _console().print("no history yet: run `retrainer run`")


@app.command()
def rollback(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Version to make champion (default: the 'previous' alias).",
        show_default=False)] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why (required; recorded in the history).", show_default=False)] = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Champion back to 'previous' (or --to VERSION); the displaced one becomes 'previous'."""
    if not (reason or "").strip():
        raise UserError("rollback needs --reason: say why the champion is rolled back")
    _set_actor(actor)
    from retrainer import registry, stamp

    cfg = _load(config, tracking_uri)
    with _quiet_stdout():
        client = registry.connect(cfg)
        move = registry.rollback(client, cfg, reason, to=to)
    doc = {"model": move.model, "decision": "rollback", "champion": move.champion,
           "previous": move.previous, "at": move.at, "reason": reason.strip(),
           "actor": stamp.actor()}
    if as_json:
        _emit_json(doc)
        return
    _console().print(f"[bold green]rollback[/bold green]: {move.model} champion is now version "
                     f"{move.champion} (was {move.previous}, now 'previous') — {doc['reason']}")


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered version (3 or models:/NAME/3).")],
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Promote even if the gate rejects (needs --reason; recorded).")] = False,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why (required with --force; recorded).", show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Data to judge on instead of data.source.", show_default=False)] = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Judge a registered version with the same gate on the current holdout; promote on a pass."""
    if force and not (reason or "").strip():
        raise UserError("--force needs --reason: say why the gate is skipped")
    _set_actor(actor)
    from retrainer.cycle import judge_version

    cfg = _load(config, tracking_uri)
    with _quiet_stdout():
        record = _with_status(
            lambda: judge_version(cfg, version, data=data, reason=reason, force=force),
            f"judging version {version}", quiet=as_json)
    if as_json:
        _emit_json(record)
    else:
        _print_record(record)


# --------------------------------------------------------------------------- watch

@app.command()
def watch(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Evaluate the triggers once, run what fired, exit (cron, Airflow).")] =
    False,
    now: Annotated[str | None, typer.Option(
        "--now", help="Evaluate at this ISO-8601 moment instead of the clock.",
        show_default=False)] = None,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.1, help="Seconds between evaluations (daemon).")] = 60.0,
    webhook_port: Annotated[int | None, typer.Option(
        "--webhook-port", min=0, help="Receive signed MLflow registry webhooks on this port.",
        show_default=False)] = None,
    webhook_host: Annotated[str, typer.Option(
        "--webhook-host", help="Address the webhook endpoint binds to.")] = "127.0.0.1",
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON on stdout: one document (--once), or one line per "
                       "evaluation that fired (daemon).")] = False,
) -> None:
    """Evaluate the triggers (schedule, drift, new version, performance) and act on them.

    Runs a cycle when schedule, drift or performance fire; judges versions registered
    outside retrainer. Without --once: a daemon, one per model, stopped by SIGTERM.
    """
    from retrainer import triggers

    cfg = _load(config, tracking_uri)
    at = triggers.parse_now(now)
    if once:
        with _quiet_stdout():
            result = triggers.watch_once(cfg, now=at)
        _show_tick(result, as_json, quiet_if_idle=False)
        if result.failures or result.abandoned:
            raise typer.Exit(1)
        return

    def ready(url: str | None) -> None:
        where = f"; webhooks: POST {url}" if url else ""
        _console(stderr=True).print(f"watching {cfg.model} every {interval:g} s{where}")

    with _quiet_stdout():
        code = triggers.run_daemon(
            cfg, interval=interval, now=at, webhook_port=webhook_port,
            webhook_host=webhook_host, on_ready=ready,
            on_tick=lambda result: _show_tick(result, as_json, quiet_if_idle=True))
    raise typer.Exit(code)


def _show_tick(result: Any, as_json: bool, quiet_if_idle: bool) -> None:
    idle = not (result.fired or result.cycles or result.failures)
    if as_json:
        if not (idle and quiet_if_idle):
            doc = result.to_json()
            # --once prints one document; the daemon one line per evaluation (JSON Lines).
            _STDOUT.write(json.dumps(doc, default=str, indent=None if quiet_if_idle else 2)
                          + "\n")
            _STDOUT.flush()
    elif not (idle and quiet_if_idle):
        console = _console()
        stamp = result.now.isoformat(timespec="seconds")
        if idle:
            console.print(f"{stamp} nothing fired")
        for fire in result.fired:
            console.print(f"{stamp} fired [bold]{fire.trigger}[/bold]: {fire.reason}")
        for rec in result.cycles:
            console.print(f"  {rec['decision']}: version {rec['challenger']['version']} "
                          f"(trigger {rec['trigger']}) — {rec['reason']}")
    err = _console(stderr=True)
    for failure in result.failures:
        retry = f"; retry after {failure['retry_at']}" if failure["retry_at"] else \
            "; giving up"
        err.print(f"error: the {failure['trigger']} cycle failed (attempt "
                  f"{failure['attempt']} of {failure['max_attempts']}): {failure['error']}{retry}")
    if result.abandoned:
        err.print("abandoned the cycle in progress (a second SIGTERM); it is retried later")


# --------------------------------------------------------------------------- serve, predict

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
    """REST server for the champion (MLflow scoring protocol); swaps when the alias moves."""
    from retrainer.config import absolutize_uri
    from retrainer.registry import probe
    from retrainer.serving import serve as run_server

    cfg = _load(config, tracking_uri)
    probe(cfg.tracking_uri)
    opts = cfg.serve
    alias = cfg.promote.alias
    _console(stderr=True).print(
        f"serving {cfg.model}@{alias} from {cfg.tracking_uri} on http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''})")
    run_server(
        cfg.tracking_uri, cfg.model, host=host, port=port, workers=workers, alias=alias,
        poll_seconds=poll_seconds if poll_seconds is not None else opts.poll_seconds,
        token_env=opts.token_env,
        inference_log=cfg.resolve_path(opts.inference_log) if opts.inference_log else None,
        shadow=opts.shadow,
        max_body_bytes=int(opts.max_body_mb * 2**20),
        registry_uri=absolutize_uri(cfg.registry_uri, cfg.base_dir) if cfg.registry_uri else None,
    )


@app.command()
def predict(
    data: Annotated[Path, typer.Option(
        "--data", help="CSV or Parquet file (or a folder of Parquet parts) to score.")],
    output: Annotated[Path, typer.Option(
        "--output", help="Where to write the rows plus prediction and model_version "
        "(.csv or .parquet).")],
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="pandas (streams in chunks) or spark (local Spark, spark_udf).")
    ] = "pandas",
    as_json: JsonOpt = False,
) -> None:
    """Batch scoring with the champion: the input rows plus prediction and model_version."""
    from retrainer.batch import predict_file
    from retrainer.config import absolutize_uri

    cfg = _load(config, tracking_uri)
    with _quiet_stdout():
        summary = predict_file(
            cfg.tracking_uri, cfg.model, data, output, engine=engine, alias=cfg.promote.alias,
            registry_uri=absolutize_uri(cfg.registry_uri, cfg.base_dir)
            if cfg.registry_uri else None,
        )
    if as_json:
        _emit_json(summary)
        return
    _console().print(
        f"scored {summary['rows']} rows with {cfg.model} version {summary['version']} "
        f"({summary['engine']}, {summary['seconds']} s): {summary['output']}")


# --------------------------------------------------------------------------- entry point

def _usage_error_types() -> tuple[type[Exception], ...]:
    """click's ClickException, wherever this typer keeps click (recent typers vendor it)."""
    types: list[type[Exception]] = []
    try:
        from typer._click.exceptions import ClickException as Vendored

        types.append(Vendored)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


def main() -> None:
    """Console entry: exit 2 with one line for the user's mistakes, 1 for the unexpected."""
    _setup_logging(verbose=os.environ.get("RETRAINER_VERBOSE") == "1")
    try:
        code = app(standalone_mode=False)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except GateRejected as err:
        print(f"rejected: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001
        usage = _usage_error_types()
        if isinstance(err, usage):  # bad arguments: click's own message, exit 2
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, typer.Exit):
            sys.exit(err.exit_code)
        if isinstance(err, typer.Abort):
            print("aborted", file=sys.stderr)
            sys.exit(1)
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"unexpected error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
