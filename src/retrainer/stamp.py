"""Who acted and when: the actor and the UTC time stamp that every record carries.

It sits below `locks` and `registry` (both stamp what they write), so it imports nothing
of retrainer's.
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime, timezone


def now_iso(ts: float | None = None) -> str:
    """UTC ISO-8601 to the second: now, or the POSIX time `ts`."""
    moment = datetime.now(timezone.utc) if ts is None else datetime.fromtimestamp(ts, timezone.utc)
    return moment.isoformat(timespec="seconds")


def actor() -> str:
    """Who acts: $RETRAINER_ACTOR (set by `--actor`), else the OS user."""
    try:
        return os.environ.get("RETRAINER_ACTOR") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
