"""The schedule check: a cron slot (in a time zone) passed since the last scheduled fire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from retrainer.errors import UserError
from retrainer.triggers.clock import iso, parse_iso
from retrainer.triggers.fire import Fire

#: Missed slots are only counted for the reason text; past this it says "1000+".
SLOT_COUNT_CAP = 1000


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001
        raise UserError(f"triggers.schedule.timezone: unknown time zone {name!r}") from None


def latest_slot(cron: str, tz: str, now: datetime) -> datetime:
    """The latest cron slot at or before `now`, in the schedule's time zone."""
    from croniter import croniter

    local = now.astimezone(_zone(tz))
    # croniter's get_prev is strict: nudge so that a slot exactly at `now` counts.
    return croniter(cron, local + timedelta(microseconds=1)).get_prev(datetime)


def _slots_between(cron: str, tz: str, after: datetime, until: datetime,
                   cap: int = SLOT_COUNT_CAP) -> int:
    """How many slots lie in (after, until]; capped, it only feeds the reason text."""
    from croniter import croniter

    it = croniter(cron, after.astimezone(_zone(tz)))
    count = 0
    while count < cap and it.get_next(datetime) <= until:
        count += 1
    return count


def check_schedule(cron: str, tz: str, state: dict[str, Any],
                   now: datetime) -> tuple[Fire | None, dict[str, Any]]:
    """Fire once for the latest slot not yet fired, however many were missed.

    The first watch of a model records `since` and fires nothing: it starts the clock
    rather than firing for a slot that passed before anyone was watching.
    """
    new = dict(state)
    last, since = state.get("last_slot"), state.get("since")
    if last is None and since is None:
        new["since"] = iso(now)
        return None, new
    slot = latest_slot(cron, tz, now)
    baseline = parse_iso(last or since)
    if slot <= baseline:
        return None, new
    if last is not None:
        # DST fall-back repeats an hour: a slot with the same wall-clock time as the last
        # fired one is the same slot, as cron itself treats it.
        last_local = parse_iso(last).astimezone(slot.tzinfo)
        if last_local.replace(tzinfo=None) == slot.replace(tzinfo=None):
            return None, new
    slots = _slots_between(cron, tz, baseline, slot)
    reason = f"cron '{cron}' ({tz}) slot {slot.isoformat()}"
    if slots > 1:
        more = f"{slots - 1}" if slots < SLOT_COUNT_CAP else f"{SLOT_COUNT_CAP}+"
        reason += f"; {more} earlier slot(s) passed while nobody watched: fired once"
    new["last_slot"] = slot.isoformat()
    new["fired_at"] = iso(now)
    return Fire("schedule", reason, key=f"schedule:{slot.isoformat()}"), new
