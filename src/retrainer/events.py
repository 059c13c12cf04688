"""The names of what happens to a model: decisions and registry events, as notified.

One list, so that the config can refuse a misspelled event name and every sender uses the
same words the history does. It imports nothing of retrainer's: `config` reads it.
"""

from __future__ import annotations

#: Decisions of a judgement (a cycle, `promote`, the watcher): the record's `decision`.
DECISIONS = ("first_champion", "promoted", "kept_champion", "awaiting_approval",
             "dry_run_would_promote", "dry_run_would_keep")
#: Human actions and the watcher's findings.
GOVERNANCE = ("approved", "rejected", "rollback", "drift", "cycle_failed")
#: Safe rollout (docs/rollout.md): a canary's start, completion and abort, and the guard's
#: automatic rollback.
ROLLOUT = ("canary_started", "rollout_completed", "rollout_aborted", "auto_rollback")

#: Every event a `notify` receiver may subscribe to.
NOTIFY_EVENTS = DECISIONS + GOVERNANCE + ROLLOUT

#: Not subscribable: `notify test` always sends; a failed delivery is recorded in the
#: history as `notify_failed` and never notified (a failing receiver would loop).
TEST = "test"
NOTIFY_FAILED = "notify_failed"
