"""What both batch engines share: the input named by the user, the added columns, errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer.errors import UserError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: The columns scoring adds; re-scoring a scored file replaces them.
ADDED = ("prediction", "model_version", "scored_at")
#: (rows scored so far, total rows or None when unknown): how a caller follows a run.
RowProgress = Callable[[int, int | None], None]

# A table name as Spark catalogs spell it: table, db.table or catalog.db.table (backticks
# allowed). Checked only when no file of that name exists.
_TABLE = re.compile(r"^(`[^`]+`|[A-Za-z_]\w*)(\.(`[^`]+`|[A-Za-z_]\w*)){0,2}$")


@dataclass(frozen=True)
class Source:
    """The data to score: a file or folder (`path`, `fmt`), or a Spark table (`table`)."""

    text: str
    path: Path | None = None
    fmt: str = ""
    table: str | None = None

    @property
    def name(self) -> str:
        return self.table if self.table is not None else self.path.name  # type: ignore[union-attr]


def resolve_source(text: str, engine: str) -> Source:
    """`--data`: a path, `spark:<table or path>`, or (Spark) a bare table name."""
    raw = str(text)
    if raw.startswith("spark:"):
        rest = raw.removeprefix("spark:")
        if engine != "spark":
            raise UserError(f"{raw}: Spark tables are scored with --engine spark")
        if not rest:
            raise UserError("spark: needs a table name or a path after the colon")
        if _is_table(rest):
            return Source(raw, table=rest)
        return _file_source(raw, Path(rest))
    if engine == "spark" and _is_table(raw):
        return Source(raw, table=raw)
    return _file_source(raw, Path(raw))


def _is_table(name: str) -> bool:
    """A table name, not a file: no such file, a table's spelling, no file suffix."""
    path = Path(name)
    return (not path.exists() and bool(_TABLE.match(name))
            and path.suffix.lower() not in (*FORMATS, ".json", ".delta"))


def _file_source(text: str, path: Path) -> Source:
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    return Source(text, path=path, fmt=format_of(path, "input"))


def format_of(path: Path, role: str) -> str:
    if role == "input" and path.is_dir():
        return "parquet"  # a folder of Parquet parts (e.g. Spark output, the inference log)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{role} {path}: use a .csv or .parquet file")
    return fmt


def required_columns(model: Any) -> list[str]:
    schema = model.input_schema
    if schema is None or not schema.has_input_names():
        return []
    return list(schema.required_input_names())


def check_columns(present: list[str], needed: list[str], source: Source) -> None:
    missing = [c for c in needed if c not in present]
    if missing:
        raise UserError(
            f"{source.name} is missing column(s) the model needs: {', '.join(missing)}")


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    if "Error: " in text:  # MLflow quotes the whole input before the reason
        text = text.rsplit("Error: ", 1)[1]
    return text.splitlines()[0] if text else type(exc).__name__
