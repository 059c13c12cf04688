"""`drift` and `watch`: is the data still what the champion learned, and when to retrain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from retrainer.cli.app import (
    STDOUT,
    ConfigOpt,
    JsonOpt,
    TrackingOpt,
    app,
    emit_json,
    load_config,
    quiet_stdout,
    terminal,
)
from retrainer.errors import UserError


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
    from retrainer.drift.champion import champion_drift, table_view

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        result = champion_drift(cfg, data)
    if html is not None:
        from retrainer.drift.html import render_html

        try:
            html.write_text(render_html(result.report, result.profile, result.current),
                            encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot write {html}: {err.strerror or err}") from None
    if as_json:
        for note in result.notes:
            terminal(stderr=True).print(f"note: {note}")
        emit_json(result.report.to_dict())
    else:
        from rich.table import Table

        title, header, rows, lines = table_view(result)
        table = Table(title=title, title_justify="left")
        for name in header:
            table.add_column(name, justify="right" if name in ("value", "threshold") else "left")
        for row in rows:
            table.add_row(*row)
        console = terminal()
        console.print(table)
        for line in lines:
            console.print(line)
        if html is not None:
            console.print(f"wrote {html}")
    if fail_on_drift and result.report.dataset_drift:
        raise typer.Exit(3)


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
    outside retrainer; judges a running canary (abort / complete) and guards a new
    champion (auto rollback). Without --once: a daemon, one per model, stopped by SIGTERM.
    """
    from retrainer.triggers.clock import parse_now
    from retrainer.triggers.daemon import run_daemon, watch_once

    cfg = load_config(config, tracking_uri)
    at = parse_now(now)
    if once:
        with quiet_stdout():
            result = watch_once(cfg, now=at)
        _show_tick(result, as_json, quiet_if_idle=False)
        if result.failures or result.abandoned:
            raise typer.Exit(1)
        return

    def ready(url: str | None) -> None:
        where = f"; webhooks: POST {url}" if url else ""
        terminal(stderr=True).print(f"watching {cfg.model} every {interval:g} s{where}")

    with quiet_stdout():
        code = run_daemon(
            cfg, interval=interval, now=at, webhook_port=webhook_port,
            webhook_host=webhook_host, on_ready=ready,
            on_tick=lambda result: _show_tick(result, as_json, quiet_if_idle=True))
    raise typer.Exit(code)


def _show_tick(result: Any, as_json: bool, quiet_if_idle: bool) -> None:
    idle = not (result.fired or result.cycles or result.failures or result.rollout_acted)
    if as_json:
        if not (idle and quiet_if_idle):
            from retrainer.redact import redact_all

            doc = redact_all(result.to_json())
            # --once prints one document; the daemon one line per evaluation (JSON Lines).
            STDOUT.write(json.dumps(doc, default=str, indent=None if quiet_if_idle else 2)
                          + "\n")
            STDOUT.flush()
    elif not (idle and quiet_if_idle):
        console = terminal()
        stamp = result.now.isoformat(timespec="seconds")
        if idle:
            console.print(f"{stamp} nothing fired")
        for fire in result.fired:
            console.print(f"{stamp} fired [bold]{fire.trigger}[/bold]: {fire.reason}")
        for rec in result.cycles:
            console.print(f"  {rec['decision']}: version {rec['challenger']['version']} "
                          f"(trigger {rec['trigger']}) — {rec['reason']}")
        for doc in result.rollout:
            if doc["action"] in ("baking", "watching") and quiet_if_idle:
                continue
            console.print(f"{stamp} {doc['kind']} version {doc['version']}: "
                          f"[bold]{doc['action']}[/bold] — {doc['reason']}")
    err = terminal(stderr=True)
    for failure in result.failures:
        retry = f"; retry after {failure['retry_at']}" if failure["retry_at"] else \
            "; giving up"
        err.print(f"error: the {failure['trigger']} cycle failed (attempt "
                  f"{failure['attempt']} of {failure['max_attempts']}): {failure['error']}{retry}")
    if result.abandoned:
        err.print("abandoned the cycle in progress (a second SIGTERM); it is retried later")
