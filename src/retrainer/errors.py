"""Error types that decide the exit code.

A `UserError` is the user's mistake (config, data, arguments): the CLI prints its
message on one line and exits 2, and nothing has been written to the registry.
"""

from __future__ import annotations


class UserError(Exception):
    """Invalid input: one-line message, exit code 2."""

    exit_code = 2


class GateRejected(Exception):
    """Raised only for `run --fail-on-reject`: exit code 3."""

    exit_code = 3


def require_reason(reason: str | None, message: str) -> str:
    """The reason, stripped; a `UserError(message)` when it is missing or blank (every
    command that moves a model by hand records why)."""
    if not (reason or "").strip():
        raise UserError(message)
    return (reason or "").strip()
