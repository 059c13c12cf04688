"""Reading the inference log that every server writes: the shared record of a rollout.

Each server process appends Parquet parts to `serve.inference_log`: the request log
(``_requests/part-*.parquet``, one row per answered POST /invocations: ts, request_id,
model_version, role, outcome, status, latency_ms, rows) and the row-level log
(``part-*.parquet``: each scored row with its prediction). Guardrails read a time window
of them, so they see the traffic of every worker and every server, and anyone can
recompute a decision from the same files. A part's name carries the time it was written
(``part-<UTC stamp>-<pid>-<seq>.parquet``): parts written before a window starts hold
nothing of it and are not opened.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

REQUESTS_DIR = "_requests"  # as serving.inference_log writes it
REQUEST_COLUMNS = ["ts", "request_id", "model_version", "role", "outcome", "status",
                   "latency_ms", "rows"]
_PART = re.compile(r"^part-(\d{8}T\d{6})(\d{6})?-.*\.parquet$")
#: A part holds answers buffered for up to its server's flush interval (5 s by default)
#: before the time in its name; this much earlier is never needed.
SLACK = timedelta(minutes=10)


def _parts(folder: str, start: datetime) -> list[str]:
    """Parts in `folder` written at or after `start` - SLACK (dot-files are half-written)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    earliest = (start - SLACK).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = []
    for name in sorted(names):
        m = _PART.match(name)
        if m is None:
            continue
        if m.group(1) >= earliest:
            out.append(os.path.join(folder, name))
    return out


def _read(files: list[str], columns: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in files:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid):  # removed or compacted meanwhile
            continue
        have = [c for c in columns if c in schema.names]
        if "ts" not in have:
            continue
        tables.append(pq.read_table(path, columns=have))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def _window(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    import pandas as pd

    ts = pd.to_datetime(frame["ts"], utc=True)
    keep = (ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))
    return frame.loc[keep].reset_index(drop=True)


def read_requests(log_dir: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Every answered request in [start, end], from every server writing to `log_dir`."""
    import pandas as pd

    table = _read(_parts(os.path.join(log_dir, REQUESTS_DIR), start), REQUEST_COLUMNS)
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in REQUEST_COLUMNS})
    return _window(table.to_pandas(), start, end)


def read_predictions(log_dir: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Scored rows in [start, end]: ts, model_version, prediction (from the row-level log)."""
    import pandas as pd

    table = _read(_parts(log_dir, start), ["ts", "model_version", "prediction"])
    if table is None or "prediction" not in table.column_names:
        return pd.DataFrame({c: pd.Series(dtype="object")
                             for c in ("ts", "model_version", "prediction")})
    return _window(table.to_pandas(), start, end)


def parse_time(value: str) -> datetime:
    """An ISO time stamp the registry holds, as an aware UTC datetime."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
