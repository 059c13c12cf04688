"""Who acted and when: the actor, the UTC time stamp every record carries, and ages.

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


def age_seconds(since: str | None, until: str | None = None) -> float | None:
    """Seconds between two ISO time stamps (until: now); None when unknown."""
    if not since:
        return None
    try:
        start = datetime.fromisoformat(since)
        end = datetime.fromisoformat(until) if until else datetime.now(timezone.utc)
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        if end.tzinfo is None:
            end = end.replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return round((end - start).total_seconds(), 1)


def age_text(seconds: float | None) -> str:
    """'3d 4h', '2h 5m', '7m', 'just now'."""
    if seconds is None:
        return "?"
    s = int(seconds)
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else "just now"
