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


def print_record(record: dict[str, Any]) -> None:
    from rich.table import Table

    from retrainer.report import comparison_tables, differences_rows

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
        console.print(f"note: {note}")
    diffs = differences_rows(record)
    if diffs:
        table = Table(title="Challenger minus champion on the clean holdout (paired bootstrap)",
                      title_justify="left")
        for col in ("metric", "delta", "interval"):
            table.add_column(col, justify="right" if col != "metric" else "left")
        for row in diffs:
            table.add_row(*row)
        console.print(table)
    for check in record.get("checks", []):
        mark = "[green]pass[/green]" if check["passed"] else "[red]fail[/red]"
        console.print(f"  {mark} {check['name']}: {check['detail']}")
    colour = "green" if record["decision"] in ("first_champion", "promoted") else "yellow"
    console.print(f"[bold {colour}]{record['decision']}[/bold {colour}]: version "
                  f"{record['challenger']['version']} — {record['reason']}")
    console.print()
