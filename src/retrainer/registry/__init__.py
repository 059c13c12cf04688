"""The only writer of the MLflow Model Registry: aliases, tags, stages, journal, locks.

`store` connects; `reads` finds versions and the champion; `writes` registers and tags;
`promotion` moves the champion (journaled, locked, re-checked), rolls back and repairs;
`records` writes history events; `approval` keeps pending approvals on the version.
Callers use the names re-exported here.
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
from retrainer.registry.names import (
    CHALLENGER,
    JOURNAL_TAG,
    LEGACY_ARCHIVED,
    LEGACY_PRODUCTION,
    PREFIX,
    PREVIOUS,
)
from retrainer.registry.promotion import (
    Move,
    lock_path,
    move_champion,
    pending_journal,
    promote,
    promotion_lock,
    repair,
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
    "APPROVAL_PENDING", "CHALLENGER", "JOURNAL_TAG", "LEGACY_ARCHIVED", "LEGACY_PRODUCTION",
    "PREFIX", "PREVIOUS",
    "Move", "Pending", "aliases", "approval_state", "approval_tags", "is_pending",
    "pending_approvals", "reject_approval", "request_approval", "require_pending", "settle",
    "check_version_of_model", "connect", "current_champion",
    "ensure_model", "experiment_id", "get_version", "legacy_production", "lock_path",
    "model_exists", "move_champion", "parse_version_ref", "pending_journal", "probe",
    "promote", "promotion_lock", "record_event", "register", "repair", "retry_conflicts",
    "rollback", "set_challenger", "summary_tags", "tag_run", "tag_version",
    "version_by_alias",
]
