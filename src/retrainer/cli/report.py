"""`report`: a judgement's page (the one logged with it), written to a file or opened."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
from retrainer.errors import UserError


@app.command("report")
def report_cmd(
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    version: Annotated[str | None, typer.Option(
        "--version", help="The newest decision about this registered version.",
        show_default=False)] = None,
    run_id: Annotated[str | None, typer.Option(
        "--run", help="The decision recorded on this run (a cycle's or a judgement's).",
        show_default=False)] = None,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Where to write the page.")] = Path("report.html"),
    open_page: Annotated[bool, typer.Option(
        "--open", help="Open the page in a browser once written.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The cycle report of a decision (default: the newest) as one self-contained HTML page.

    The decision banner and every gate check, the article's table beside the fair one,
    bootstrap intervals, predictions, feature importance of both models, the metric across
    decisions and the drift of the training data.
    """
    if version is not None and run_id is not None:
        raise UserError("give --version or --run, not both")
    from retrainer import registry
    from retrainer.report.publish import find_record, report_page

    cfg = load_config(config, tracking_uri)
    if version is not None:
        version = registry.parse_version_ref(version, cfg.model)
    with quiet_stdout():
        client = registry.connect(cfg)
        record, found_run = find_record(client, cfg, version=version, run_id=run_id)
        page = report_page(client, cfg, record)
    write_page(output, page)
    doc = {"output": str(output), "model": cfg.model, "decision": record["decision"],
           "version": record["challenger"]["version"], "run_id": found_run,
           "cycle_id": record.get("cycle_id"), "logged_as": record.get("report")}
    opened = open_in_browser(output) if open_page else None
    if as_json:
        emit_json(doc | ({"opened": opened} if open_page else {}))
        return
    console = terminal()
    console.print(f"wrote {output} ({record['decision']}: version "
                  f"{record['challenger']['version']}, decision {record.get('cycle_id')})")
    if open_page and not opened:
        console.print(f"no browser to open it here: open {output.resolve().as_uri()}")


def write_page(path: Path, page: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None


def open_in_browser(path: Path) -> bool:
    import webbrowser

    try:
        return bool(webbrowser.open(path.resolve().as_uri()))
    except webbrowser.Error:
        return False
