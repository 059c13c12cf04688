"""What a check returns when it fires, and the small helpers the checks share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Fire:
    """A trigger that fired: what, why, and the key of the event (for deduplication)."""

    trigger: str
    reason: str
    key: str
    version: str | None = None  # new_version: the version to judge

    def public(self) -> dict[str, str]:
        return {"trigger": self.trigger, "reason": self.reason}


def frame_digest(frame: pd.DataFrame) -> str:
    """A short content hash of a frame: the same rows give the same digest."""
    import pandas as pd

    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    try:
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    except TypeError:  # unhashable cells (lists, dicts): fall back to their text
        h.update(frame.to_csv(index=False).encode())
    return h.hexdigest()[:16]


def fmt(value: float) -> str:
    """A number for a reason: three significant digits, thousands separated."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
