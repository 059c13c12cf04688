"""`status`, `history` and `rollback`: what the registry holds, how it got there, one step back."""

from __future__ import annotations

from pathlib import Path
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
from retrainer.errors import require_reason


@app.command()
def status(config: ConfigOpt = None, tracking_uri: TrackingOpt = None,
           as_json: JsonOpt = False) -> None:
    """Champion, challenger, previous (and a running canary): version, run, metrics, since
    when; last decision."""
    from retrainer.status import model_status

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        doc = model_status(cfg)
    if as_json:
        emit_json(doc)
        return
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    console = terminal()
    table = Table(box=None, padding=(0, 2, 0, 0))
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
    canary = doc.get("canary")
    if canary:
        table.add_row("canary", canary["version"], (canary.get("run_id") or "-")[:12],
                      canary.get("since") or "-",
                      *(_num(canary["metrics"].get(m)) for m in doc["metrics"]))
    lines: list[Any] = [table, ""]
    for pending in doc.get("pending_approvals") or []:
        against = f"beat champion {pending['judged_against']}" if pending["judged_against"] \
            else "would be the first champion"
        lines.append(f"[bold yellow]awaiting approval[/bold yellow]: version "
                     f"{pending['version']} ({against}; waiting {pending['age']}): "
                     f"`retrainer approve {pending['version']} --reason …` or `retrainer "
                     f"reject {pending['version']} --reason …`")
    if canary:
        lines.append(f"canary: version {canary['version']} answers "
                     f"{(canary.get('share') or 0):.0%} of requests beside champion "
                     f"{canary.get('beside')} since {canary.get('since')} "
                     "(`retrainer rollout status` for its guardrails)")
    last = doc.get("last_decision")
    if last:
        lines.append(f"last decision: [bold]{last['decision']}[/bold] at {last.get('at')} "
                     f"(trigger {last.get('trigger')}): {last.get('reason')}")
    if doc["champion"] is None and not doc.get("pending_approvals"):
        lines.append("no champion yet: run `retrainer run`")
    elif doc["champion"] is not None and doc["champion"].get("known_by") == "legacy_stage":
        lines.append(f"champion known by its legacy '{doc['champion'].get('stage')}' stage "
                     "(no alias yet): the first promotion sets the aliases")
    if doc.get("repaired"):
        lines.append("[yellow]finished a promotion a crash had left half-done "
                     "(recorded in `retrainer history`)[/yellow]")
    # A panel on a terminal; piped, rich draws it in plain ASCII-safe box characters.
    champion = doc["champion"]["version"] if doc["champion"] else "none"
    # A registry apart from the tracking store is named: that is where the aliases live.
    store = f"tracking {doc['tracking_uri']}" if doc["registry_uri"] == doc["tracking_uri"] \
        else f"tracking {doc['tracking_uri']}, registry {doc['registry_uri']}"
    lines.append(f"[dim]{store}[/dim]")  # a line, not the subtitle: a long URI is not cut
    console.print(Panel(Group(*lines), title=f"[bold]{doc['model']}[/bold] champion "
                        f"{champion}", title_align="left", expand=False))


def _num(value: Any) -> str:
    from retrainer.report import fmt

    return fmt(value)


@app.command()
def history(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", help="Show the newest N entries.", show_default=False)] = None,
    html: Annotated[Path | None, typer.Option(
        "--html", help="Also write the timeline as a self-contained HTML page here.",
        show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every decision and alias move of the model, newest first."""
    from retrainer.history import model_history

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        doc = model_history(cfg, limit=limit)
        if html is not None:
            from retrainer.cli.report import write_page
            from retrainer.report.html import render_history

            write_page(html, render_history(cfg.model, doc["entries"], cfg.primary_metric))
            terminal(stderr=True).print(f"wrote {html}")
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
    require_reason(reason, "rollback needs --reason: say why the champion is rolled back")
    set_actor(actor)
    from retrainer.governance import rollback as roll_back

    cfg = load_config(config, tracking_uri)
    with quiet_stdout():
        doc = roll_back(cfg, reason, to=to)
    if as_json:
        emit_json(doc)
        return
    terminal().print(f"[bold green]rollback[/bold green]: {doc['model']} champion is now version "
                     f"{doc['champion']} (was {doc['previous']}, now 'previous') — "
                     f"{doc['reason']}")
