"""What an answered request hands to the background thread: plain references, no copies.

Building these is all a request pays for the inference log and shadow scoring; turning
them into frames and Parquet happens on the sidecar thread (``inference_log.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from retrainer.serving.model import LoadedModel
from retrainer.serving.protocol import rows_of


@dataclass
class Scored:
    """A request the champion answered: its input and predictions, for the row-level log."""

    ts: float
    request_id: str
    model: LoadedModel
    x: np.ndarray | None  # fast path: rows in model.columns order
    frame: Any  # general path: the DataFrame MLflow parsed, if it was one
    predictions: Any
    challenger: LoadedModel | None = None
    shadow: Any = None  # the challenger's predictions, filled in by the sidecar
    rows: int = 0

    def __post_init__(self) -> None:
        self.rows = self.x.shape[0] if self.x is not None else rows_of(self.predictions)

    def input_frame(self) -> Any:
        import pandas as pd

        if self.x is not None and self.model.columns is not None:
            return pd.DataFrame(self.x, columns=list(self.model.columns), copy=False)
        if isinstance(self.frame, pd.DataFrame):
            return self.frame.reset_index(drop=True)
        return None


@dataclass(slots=True)
class Answer:
    """One answered POST /invocations, whatever its outcome: a row of the request log."""

    ts: float  # when the answer was sent (POSIX seconds)
    request_id: str
    model_version: str | None  # None when no version was loaded
    role: str  # "champion", or "canary" for the share a canary rollout answers
    outcome: str  # ok | client_error | model_error | server_error
    status: int
    latency_ms: float
    rows: int
    scored: Scored | None = None  # the rows and predictions, for a 200
