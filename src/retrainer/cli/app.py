"""The typer app, the options every command shares, and how results reach the terminal.

With `--json` a command prints exactly one JSON document on stdout; logs and MLflow's own
chatter go to stderr. Heavy libraries are imported inside the commands.
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

from retrainer.errors import UserError

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

STDOUT = sys.stdout


class _RedactingFormatter(logging.Formatter):
    """Log lines (retrainer's and the libraries') with URL credentials blanked."""

    def format(self, record: logging.LogRecord) -> str:
        from retrainer.redact import redact

        return redact(super().format(record)) or ""


def setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("retrainer").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("mlflow", "alembic", "urllib3", "py4j", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """MLflow prints 'View run …' on stdout with an http store: keep stdout for results."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def terminal(stderr: bool = False) -> Any:
    from rich.console import Console

    file = sys.stderr if stderr else STDOUT
    # Piped output (logs, CI) has no terminal width: tables get room instead of 80 columns.
    width = None if file.isatty() or os.environ.get("COLUMNS") else 160
    from retrainer.redact import RedactingStream

    return Console(file=RedactingStream(file), highlight=False, soft_wrap=True, width=width)


def emit_json(doc: Any) -> None:
    from retrainer.redact import redact_all

    # Every document a command prints: no URL credentials, whatever field carries one.
    doc = redact_all(json.loads(json.dumps(doc, default=str)))
    STDOUT.write(json.dumps(doc, indent=2) + "\n")
    STDOUT.flush()


def load_config(config: Path | None, tracking_uri: str | None) -> Any:
    from retrainer.config import load

    return load(config, tracking_uri)

ActorOpt = Annotated[str | None, typer.Option(
    "--actor", help="Who is acting, for the history (default: $RETRAINER_ACTOR or OS user).",
    show_default=False)]


def set_actor(actor: str | None) -> None:
    # stamp.actor() reads the environment, so every record of this command names them.
    if actor is not None:
        if not actor.strip():
            raise UserError("--actor must not be empty")
        os.environ["RETRAINER_ACTOR"] = actor.strip()



def with_status(work: Callable[[], Any], text: str, quiet: bool) -> Any:
    if quiet:
        return work()
    with terminal(stderr=True).status(text):
        return work()


@contextlib.contextmanager
def steps(quiet: bool, first: str = "starting") -> Iterator[None]:
    """Show where a long command is (loading, training, scoring, bootstrapping, ...).

    On a terminal: finished steps with their seconds above a spinner on the current one.
    Piped (CI, logs): one plain line per finished step on stderr. Quiet (--json): nothing.
    """
    if quiet:
        yield
        return
    import time

    from retrainer import progress

    console = terminal(stderr=True)
    live = console.is_terminal
    state = {"text": first, "at": time.perf_counter()}

    def done() -> None:
        took = time.perf_counter() - state["at"]
        if live:
            console.print(f"[green]✓[/green] {state['text']} [dim]{took:.1f} s[/dim]")
        else:
            console.print(f"{state['text']} ({took:.1f} s)", markup=False, highlight=False)

    if not live:
        def plain(text: str) -> None:
            done()
            state.update(text=text, at=time.perf_counter())

        with progress.reporting(plain):
            yield
        done()
        return
    with console.status(first) as status:
        def update(text: str) -> None:
            done()
            state.update(text=text, at=time.perf_counter())
            status.update(text)

        with progress.reporting(update):
            yield
        done()


def print_record(record: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from retrainer.report import (
        SLICE_HEADER,
        comparison_tables,
        decision_head,
        differences_rows,
        slice_rows,
    )

    console = terminal()
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
    from retrainer.explain import summary_line

    shift = summary_line(record.get("importance"))
    if shift:
        console.print(escape(shift))
    if record.get("report"):
        console.print(f"report: {record['report']} (retrainer report --run "
                      f"{record['challenger']['run_id']} --open)")
    colour = "green" if record["decision"] in ("first_champion", "promoted") else "yellow"
    # The decision line carries its notes: a promotion within noise, unknown training rows.
    decision, reason = decision_head(record)
    console.print(f"[bold {colour}]{escape(decision)}[/bold {colour}]: version "
                  f"{record['challenger']['version']} — {escape(reason)}", highlight=False)
    console.print()
