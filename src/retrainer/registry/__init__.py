"""The only writer of the MLflow Model Registry: aliases, tags, stages, journal, locks.

`store` connects; `reads` finds versions and the champion; `writes` registers and tags;
`promotion` moves the champion (journaled, locked, re-checked) and rolls back; `records`
writes history events; `approval` keeps pending approvals on the version; `canary` starts,
aborts and completes a canary rollout, rolls back by itself, and (as `repair`) finishes
half-done promotions and rollout steps. Callers use the names re-exported here.
"""

from retrainer.registry.approval import PENDING as APPROVAL_PENDING
from retrainer.registry.approval import (
    Pending,
    approval_state,
    approval_tags,
    is_pending,
    pending_approvals,
    request_approval,
    require_pending,
    settle,
)
from retrainer.registry.approval import reject as reject_approval
from retrainer.registry.canary import CanaryStart, auto_rollback, read_canary, repair
from retrainer.registry.canary import abort as abort_canary
from retrainer.registry.canary import complete as complete_canary
from retrainer.registry.canary import start as start_canary
from retrainer.registry.names import (
    CANARY,
    CHALLENGER,
    JOURNAL_TAG,
    LEGACY_ARCHIVED,
    LEGACY_PRODUCTION,
    PREFIX,
    PREVIOUS,
    ROLLOUT_TAG,
)
from retrainer.registry.promotion import (
    Move,
    lock_path,
    move_champion,
    pending_journal,
    promote,
    promotion_lock,
    rollback,
)
from retrainer.registry.reads import (
    aliases,
    check_version_of_model,
    current_champion,
    get_version,
    legacy_production,
    model_exists,
    parse_version_ref,
    version_by_alias,
)
from retrainer.registry.records import record_event, summary_tags, tag_run
from retrainer.registry.store import connect, experiment_id, probe
from retrainer.registry.writes import (
    ensure_model,
    register,
    retry_conflicts,
    set_challenger,
    tag_version,
)

__all__ = [
    "APPROVAL_PENDING",
    "CANARY",
    "CHALLENGER",
    "JOURNAL_TAG",
    "LEGACY_ARCHIVED",
    "LEGACY_PRODUCTION",
    "PREFIX",
    "PREVIOUS",
    "ROLLOUT_TAG",
    "abort_canary",
    "aliases",
    "approval_state",
    "approval_tags",
    "auto_rollback",
    "CanaryStart",
    "check_version_of_model",
    "complete_canary",
    "connect",
    "current_champion",
    "ensure_model",
    "experiment_id",
    "get_version",
    "is_pending",
    "legacy_production",
    "lock_path",
    "model_exists",
    "Move",
    "move_champion",
    "parse_version_ref",
    "Pending",
    "pending_approvals",
    "pending_journal",
    "probe",
    "promote",
    "promotion_lock",
    "read_canary",
    "record_event",
    "register",
    "reject_approval",
    "repair",
    "request_approval",
    "require_pending",
    "retry_conflicts",
    "rollback",
    "set_challenger",
    "settle",
    "start_canary",
    "summary_tags",
    "tag_run",
    "tag_version",
    "version_by_alias",
]
