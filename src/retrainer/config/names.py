"""Names in a config: registered model names the registry would refuse, near-miss hints."""

from __future__ import annotations

import difflib
from typing import Any

#: Characters the MLflow registry refuses in a model name (its own check and its file
#: store's), plus control characters.
_REFUSED_IN_NAMES = "/:\\%"
MAX_NAME_LENGTH = 256  # the registry's name column


def model_name_problem(name: str) -> str | None:
    """Why the registry would refuse `name` as a registered model name, or None.

    Checked at config load, so a bad name is a one-line config error (exit 2) instead of
    MLflow's "Missing value for required parameter 'name'" after work has started.
    """
    if not name.strip():
        return "the registered model name is empty"
    if name != name.strip():
        return f"the registered model name {name!r} starts or ends with white space"
    bad = next((c for c in name if c in _REFUSED_IN_NAMES or ord(c) < 32 or ord(c) == 127),
               None)
    if bad is not None:
        return (f"the registered model name {name!r} contains {bad!r}, which the MLflow "
                "registry refuses (use letters, digits, '-', '_', '.' or spaces)")
    if name in (".", ".."):
        return f"{name!r} is not a usable registered model name"
    if len(name) > MAX_NAME_LENGTH:
        return f"the registered model name is longer than {MAX_NAME_LENGTH} characters"
    return None


def did_you_mean(name: str, choices: Any) -> str:
    """` (did you mean 'rmse'?)` for a near miss among `choices`, else ''."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
