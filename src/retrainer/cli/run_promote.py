"""`run` and `promote`: judge a challenger (trained now, or registered) and maybe promote it."""

from __future__ import annotations

from typing import Annotated

import typer

from retrainer.cli.app import (
    ActorOpt,
    ConfigOpt,
    JsonOpt,
    TrackingOpt,
    app,
    emit_json,
    load_config,
    print_record,
    quiet_stdout,
    set_actor,
    steps,
)
from retrainer.errors import GateRejected, UserError


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

    cfg = load_config(config, tracking_uri)
    with quiet_stdout(), steps(quiet=as_json, first="connecting to the tracking store"):
        record = run_cycle(cfg, data=data, trigger=trigger)
    if as_json:
        emit_json(record)
    else:
        print_record(record)
    if fail_on_reject and record["decision"] not in ("first_champion", "promoted",
                                                     "awaiting_approval",
                                                     "dry_run_would_promote"):
        raise GateRejected(record["reason"])


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
    set_actor(actor)
    from retrainer.cycle import judge_version

    cfg = load_config(config, tracking_uri)
    with quiet_stdout(), steps(quiet=as_json, first=f"judging version {version}"):
        record = judge_version(cfg, version, data=data, reason=reason, force=force)
    if as_json:
        emit_json(record)
    else:
        print_record(record)
