"""`rollout status|complete|abort`: the running canary, judged now; finish it by hand."""

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
from retrainer.errors import require_reason

rollout_app = typer.Typer(
    name="rollout", no_args_is_help=True, rich_markup_mode="markdown",
    help="The canary rollout: its guardrails now (`status`), and finishing it by hand "
         "(`complete`, `abort`). `watch` does both by itself; see docs/rollout.md.")
app.add_typer(rollout_app, name="rollout")

NowOpt = Annotated[str | None, typer.Option(
    "--now", help="Judge at this ISO-8601 moment instead of the clock.", show_default=False)]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Why (required; recorded in the history).", show_default=False)]


@rollout_app.command("status")
def status(config: ConfigOpt = None, tracking_uri: TrackingOpt = None, now: NowOpt = None,
           as_json: JsonOpt = False) -> None:
    """The running canary (version, share, since, requests per model, every guardrail's
    value and limit, what completion waits for) and the guard after a promotion."""
    from retrainer import registry
    from retrainer.rollout.lifecycle import rollout_status
    from retrainer.triggers.clock import parse_now, utcnow

    cfg = load_config(config, tracking_uri)
    at = parse_now(now) or utcnow()
    with quiet_stdout():
        doc = rollout_status(registry.connect(cfg), cfg, at)
    if as_json:
        emit_json(doc)
        return
    console = terminal()
    canary = doc["canary"]
    if canary is None:
        console.print(f"{cfg.model}: no canary running (rollout.mode: {doc['mode']})")
    else:
        how = f", sticky by {canary['sticky_header']}" if canary.get("sticky_header") else ""
        console.print(f"{cfg.model}: canary version [bold]{canary['version']}[/bold] beside "
                      f"champion {canary['champion']}, {canary['share']:.0%} of requests{how}, "
                      f"since {canary['since']} (bake until {canary['bake_until']})")
        _show(console, canary)
        console.print("ready to complete" if canary["ready"] else
                      "waiting for: " + "; ".join(canary["waiting_for"]))
    guard = doc["guard"]
    if guard is not None:
        console.print(f"guard: champion {guard['version']} against previous "
                      f"{guard['previous']} until {guard['guard_until']}")
        _show(console, guard)


def _show(console: Any, doc: dict[str, Any]) -> None:
    from rich.table import Table

    requests = doc.get("requests") or {}
    if requests:
        table = Table(title="requests in the window (every server)", title_justify="left")
        for col in ("model", "answered", "scored", "model errors", "client errors",
                    "p99 ms"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for role, r in requests.items():
            table.add_row(role, str(r["requests"]), str(r["scored"]), str(r["model_errors"]),
                          str(r["client_errors"]),
                          "-" if r["p99_latency_ms"] is None else f"{r['p99_latency_ms']:.1f}")
        console.print(table)
    colours = {"holding": "green", "tripped": "red", "unclear": "yellow", "waiting": "yellow"}
    for line in doc.get("guardrails") or []:
        c = colours.get(line["state"], "white")
        console.print(f"  [{c}]{line['state']}[/{c}] {line['detail']}")


def _finish(action: str, config: Any, tracking_uri: str | None, reason: str | None,
            actor: str | None, now: str | None, as_json: bool) -> None:
    require_reason(reason, f"rollout {action} needs --reason: say why")
    set_actor(actor)
    from retrainer import cycle, registry
    from retrainer.rollout.lifecycle import finish_by_hand
    from retrainer.triggers.clock import parse_now, utcnow

    cfg = load_config(config, tracking_uri)
    at = parse_now(now) or utcnow()
    with quiet_stdout():
        client = registry.connect(cfg)
        doc = finish_by_hand(client, cfg, action, str(reason), at,
                             rejudge=lambda v, a: cycle.passes_gate(cfg, client, v, a))
    if as_json:
        emit_json(doc)
        return
    colour = "green" if doc["action"] == "completed" else "yellow"
    terminal().print(f"[bold {colour}]{doc['action']}[/bold {colour}]: canary version "
                     f"{doc['version']} of {cfg.model} — {doc['reason']}")


@rollout_app.command("complete")
def complete(config: ConfigOpt = None, tracking_uri: TrackingOpt = None,
             reason: ReasonOpt = None, actor: ActorOpt = None, now: NowOpt = None,
             as_json: JsonOpt = False) -> None:
    """Make the canary champion now, whatever the bake (recorded with the reason, the
    actor and the guardrails of this moment). Re-checked if the champion changed."""
    _finish("complete", config, tracking_uri, reason, actor, now, as_json)


@rollout_app.command("abort")
def abort(config: ConfigOpt = None, tracking_uri: TrackingOpt = None,
          reason: ReasonOpt = None, actor: ActorOpt = None, now: NowOpt = None,
          as_json: JsonOpt = False) -> None:
    """Stop the canary: the alias is removed, the version tagged `rollout=aborted`, the
    champion keeps serving every request."""
    _finish("abort", config, tracking_uri, reason, actor, now, as_json)
