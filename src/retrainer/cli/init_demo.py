"""`init` and `demo`: a working project, and the article's scenario end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from retrainer.cli.app import (
    JsonOpt,
    app,
    emit_json,
    print_record,
    quiet_stdout,
    terminal,
)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to write into.")] = Path("."),
    example: Annotated[str, typer.Option(help="Example to start from.")] = "diabetes",
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Write a working retrainer.yaml, a training entrypoint and example data."""
    from retrainer.project import write_example

    written = write_example(directory, example, force=force)
    console = terminal()
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
    from retrainer.project import REPORT, compare_policies, run_demo

    with quiet_stdout():
        records = run_demo(directory, progress=None if as_json else progress_line)
        policies = compare_policies(directory, records[-1])
    report = directory / REPORT
    if as_json:
        emit_json({"cycles": records, "policies": policies, "report": str(report)})
        return
    for rec in records:
        print_record(rec)
    print_policies(policies)
    terminal().print(f"[bold]the cycle report:[/bold] {report} (open it in a browser: "
                     f"{report.resolve().as_uri()})")


def print_policies(policies: list[dict[str, Any]]) -> None:
    """The demo's last cycle under each gate.policy, one row each."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="The same clean-holdout scores judged under each gate.policy "
                        "(what `retrainer run` would decide)", title_justify="left")
    for col in ("policy", "decision", "why"):
        table.add_column(col, overflow="fold")
    for p in policies:
        table.add_row(escape(p["policy"]), p["decision"], escape(p["reason"]))
    terminal().print(table)


def progress_line(text: str) -> None:
    terminal(stderr=True).print(f"[dim]{text}[/dim]")
