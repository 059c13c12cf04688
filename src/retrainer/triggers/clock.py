"""Time, injected: the moments the watcher evaluates at (aware, UTC) and the daemon's clock."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from retrainer.errors import UserError


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_now(value: str | None) -> datetime | None:
    """`--now` as an aware UTC datetime (a naive value is taken as UTC); None if not given."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--now {value!r}: expected an ISO-8601 moment, e.g. "
                        "2024-01-01T03:00:00+00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def parse_iso(value: str) -> datetime:
    """A moment the state recorded with `iso` (or a slot in its own zone)."""
    return datetime.fromisoformat(value)


class DaemonClock:
    """The daemon's sense of time: the moment to evaluate at, intervals and waits.

    Injected so that tests can run the daemon's loop (intervals, backoff) on virtual time
    instead of sleeping; this one is the real clock.
    """

    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, wake: threading.Event, seconds: float) -> None:
        """Sleep up to `seconds`, less if `wake` is set (a webhook, a signal); clear it."""
        wake.wait(seconds)
        wake.clear()
