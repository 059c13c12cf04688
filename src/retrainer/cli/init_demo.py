"""`init` and `demo`: a working project, and the article's scenario end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    from retrainer.project import REPORT, run_demo

    with quiet_stdout():
        records = run_demo(directory, progress=None if as_json else progress_line)
    report = directory / REPORT
    if as_json:
        emit_json({"cycles": records, "report": str(report)})
        return
    for rec in records:
        print_record(rec)
    terminal().print(f"[bold]the cycle report:[/bold] {report} (open it in a browser: "
                     f"{report.resolve().as_uri()})")


def progress_line(text: str) -> None:
    terminal(stderr=True).print(f"[dim]{text}[/dim]")
