"""`approve`, `reject` and `notify test`: people decide, and people are told."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from retrainer.cli.app import (
    ActorOpt,
    ConfigOpt,
    JsonOpt,
    TrackingOpt,
    app,
    emit_json,
    load_config,
    quiet_stdout,
    set_actor,
    terminal,
    with_status,
)
from retrainer.errors import UserError, require_reason

VersionArg = Annotated[str, typer.Argument(help="The version awaiting approval (3, v3 or "
                                                "models:/NAME/3).")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Why (required; recorded in the history).", show_default=False)]


@app.command()
def approve(
    version: VersionArg,
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    reason: ReasonOpt = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Data for the re-check, should the champion have changed since the "
                       "gate passed this version (default: data.source).",
        show_default=False)] = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Promote a version awaiting approval, through the locked promotion with its re-check."""
    require_reason(reason, "approve needs --reason: say why (it is recorded in the history)")
    set_actor(actor)
    from retrainer.governance import approve as approve_version

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        doc = with_status(lambda: approve_version(cfg, version, reason, data=data),
                          f"approving version {version}", quiet=as_json)
    if as_json:
        emit_json(doc)
        return
    console = terminal()
    if doc["decision"] in ("promoted", "first_champion"):
        was = f" (was {doc['champion_before']}, now 'previous')" if doc["champion_before"] \
            else " (the first champion)"
        console.print(f"[bold green]approved[/bold green]: {doc['model']} champion is now "
                      f"version {doc['version']}{was} — {doc['reason']}")
    else:
        console.print(f"[bold yellow]approved, not promoted[/bold yellow]: version "
                      f"{doc['version']} — {doc['outcome']}")


@app.command()
def reject(
    version: VersionArg,
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Decline a version awaiting approval; the champion stays."""
    require_reason(reason, "reject needs --reason: say why (it is recorded in the history)")
    set_actor(actor)
    from retrainer.governance import reject as reject_version

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        doc = reject_version(cfg, version, reason)
    if as_json:
        emit_json(doc)
        return
    terminal().print(f"[bold yellow]rejected[/bold yellow]: {doc['model']} version "
                     f"{doc['version']} — {doc['reason']}")


notify_app = typer.Typer(help="Notifications to chat and webhooks (the `notify` config key).",
                         no_args_is_help=True)
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def notify_test(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a test message to every receiver and report each result (exit 3 if one failed)."""
    from retrainer.notify import send_test

    cfg = load_config(config, tracking_uri)
    if not cfg.notify:
        raise UserError("no receivers configured: add a `notify` list to the config")
    results = send_test(cfg)
    failed = [r for r in results if not r.ok]
    if as_json:
        emit_json({"model": cfg.model, "ok": not failed,
                   "receivers": [r.to_dict() for r in results]})
    else:
        console = terminal()
        for r in results:
            console.print(_result_line(r))
    if failed:
        raise typer.Exit(3)


def _result_line(r: Any) -> str:
    if r.ok:
        return f"[green]ok[/green]   {r.receiver}: HTTP {r.status} in {r.seconds:.2f} s"
    return f"[red]fail[/red] {r.receiver}: {r.error}"
