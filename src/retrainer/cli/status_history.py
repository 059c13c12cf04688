"""`status`, `history` and `rollback`: what the registry holds, how it got there, one step back."""

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
)
from retrainer.errors import UserError


@app.command()
def status(config: ConfigOpt = None, tracking_uri: TrackingOpt = None,
           as_json: JsonOpt = False) -> None:
    """Champion, challenger and previous: version, run, metrics, since when; last decision."""
    from retrainer.status import model_status

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        doc = model_status(cfg)
    if as_json:
        emit_json(doc)
        return
    from rich.table import Table

    console = terminal()
    # A registry apart from the tracking store is named: that is where the aliases live.
    store = doc["tracking_uri"] if doc["registry_uri"] == doc["tracking_uri"] else \
        f"tracking {doc['tracking_uri']}, registry {doc['registry_uri']}"
    table = Table(title=f"{doc['model']} ({store})", title_justify="left")
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

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        doc = model_history(cfg, limit=limit)
    if as_json:
        emit_json(doc)
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
    terminal().print(table)
    if not doc["entries"]:
        terminal().print("no history yet: run `retrainer run`")


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
    set_actor(actor)
    from retrainer import registry, stamp

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        client = registry.connect(cfg)
        move = registry.rollback(client, cfg, reason, to=to)
    doc = {"model": move.model, "decision": "rollback", "champion": move.champion,
           "previous": move.previous, "at": move.at, "reason": reason.strip(),
           "actor": stamp.actor()}
    if as_json:
        emit_json(doc)
        return
    terminal().print(f"[bold green]rollback[/bold green]: {move.model} champion is now version "
                     f"{move.champion} (was {move.previous}, now 'previous') — {doc['reason']}")
