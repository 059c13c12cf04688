"""What can be known about the training rows of a candidate retrainer did not train.

A version registered outside retrainer (the "deploy model" pattern, `promote VERSION`, the
new_version trigger) logged no training-row fingerprints, so its holdout score may be
in-sample. What is knowable is used, strongest first:
- under ``split: time``, holdout rows newer than the version's registration: it cannot
  have trained on them, so only those are kept;
- the run's logged dataset inputs (MLflow dataset sources): a readable local file's rows
  are treated as rows it may have trained on, and excluded;
- otherwise the rows are unknown, and the record and the decision line say so; its own
  logged test metrics against its holdout score give a leakage sign worth a line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from retrainer.data import Dataset, fingerprints, split_label
from retrainer.metrics import GREATER_IS_BETTER

if TYPE_CHECKING:
    import numpy as np

    from retrainer.config import Config

log = logging.getLogger("retrainer")

UNKNOWN = "the candidate's training rows are unknown: its score may include rows it trained on"
# Scored on rows it never saw, a model is rarely much better than on its own test split; a
# gap this large in its favour suggests the "clean" rows were training rows.
LEAKAGE_GAP = 0.10


class Registered(Protocol):
    """What is read of a registered version (an `evaluation.Champion` has it all)."""

    version: str
    split: str | None
    created_ms: int | None
    dataset_inputs: list[dict[str, Any]]
    metrics_as_logged: dict[str, float]


@dataclass
class CandidateRows:
    """How the candidate's training rows are known, and the holdout rows to drop for it."""

    how: str  # same_hash_split | newer_than_registration | logged_dataset_input | unknown
    trained: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def dataset_inputs(run: Any) -> list[dict[str, Any]]:
    """A run's logged MLflow dataset inputs: name, digest, source, context, rows."""
    out = []
    for di in getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []:
        ds = di.dataset
        try:
            source = json.loads(ds.source) if ds.source else {}
        except (TypeError, ValueError):
            source = {"uri": ds.source}
        uri = (source.get("uri") or source.get("url") or source.get("path")) \
            if isinstance(source, dict) else None
        try:
            rows = (json.loads(ds.profile) or {}).get("num_rows") if ds.profile else None
        except (TypeError, ValueError):
            rows = None
        context = next((t.value for t in di.tags if t.key == "mlflow.data.context"), None)
        out.append({"name": ds.name, "digest": ds.digest, "source_type": ds.source_type,
                    "source": uri, "context": context, "rows": rows})
    return out


def candidate_rows(cfg: Config, candidate: Registered | None, holdout: Dataset,
                   hold_fp: np.ndarray) -> CandidateRows:
    """What is knowable about which holdout rows a fingerprint-less candidate trained on."""
    import numpy as np

    none = np.zeros(len(holdout), dtype=bool)
    name = f"version {candidate.version}" if candidate is not None else "the candidate"
    if candidate is None:
        return CandidateRows("unknown", none, notes=[UNKNOWN])
    if cfg.split.method == "hash" and candidate.split == split_label(cfg.split):
        return CandidateRows("same_hash_split", none, notes=[
            f"{name} was trained with this same hash split, so none of these holdout rows "
            "were its training rows"])
    if cfg.split.method == "time" and candidate.created_ms is not None:
        older = _not_newer(holdout, cfg.split.column or "", candidate.created_ms)
        if older is not None:
            return CandidateRows("newer_than_registration", older,
                                 {"before_candidate_registered": int(older.sum())},
                                 [f"{name} logged no training rows: only holdout rows newer "
                                  "than its registration are judged (it cannot have seen them)"])
    trained, files = none.copy(), []
    for item in candidate.dataset_inputs:
        path = _local_file(item.get("source"), cfg.base_dir)
        rows = _rows_in_file(path, holdout, hold_fp) if path else None
        if rows is not None:
            trained |= rows
            files.append(str(path))
    if files:
        return CandidateRows("logged_dataset_input", trained,
                             {"candidate_logged_input": int(trained.sum())},
                             [f"{name} logged no training-row fingerprints; its run logged "
                              f"{', '.join(files)} as dataset input: the {int(trained.sum())} "
                              "holdout rows found there are excluded (it may have trained on "
                              "any of them)"])
    notes = [UNKNOWN]
    same = [i["source"] for i in candidate.dataset_inputs
            if i.get("source") and Path(str(i["source"])).name == Path(holdout.source).name]
    if same:
        notes.append(f"{name}'s run logged {same[0]} as a dataset input, the data judged here: "
                     "it may have trained on these holdout rows")
    elif not candidate.dataset_inputs:
        notes.append(f"{name}'s run logged no dataset input; judge it on rows it cannot have "
                     "seen with `retrainer promote " + candidate.version + " --data` (rows "
                     "newer than its registration), or use split: time")
    return CandidateRows("unknown", none, notes=notes)


def _not_newer(holdout: Dataset, column: str, created_ms: int) -> np.ndarray | None:
    """Holdout rows stamped at or before the registration time; None when not datetimes."""
    import pandas as pd

    if column not in holdout.frame.columns:
        return None
    values = holdout.frame[column]
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        if pd.api.types.is_numeric_dtype(values.dtype):
            return None  # epoch seconds or a plain counter: cannot tell which
        try:
            values = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError):
            return None
    stamp = pd.Timestamp(created_ms, unit="ms", tz="UTC")
    if values.dt.tz is None:
        values = values.dt.tz_localize("UTC")  # naive stamps: read as UTC
    return (values <= stamp).fillna(True).to_numpy(dtype=bool)


def _local_file(source: Any, base_dir: Path) -> Path | None:
    if not source or not isinstance(source, str):
        return None
    text = source.removeprefix("file://")
    if "://" in text:
        return None
    path = Path(text)
    for candidate in ([path] if path.is_absolute() else [base_dir / path, Path.cwd() / path]):
        if candidate.is_file() and candidate.suffix in (".csv", ".parquet", ".pq"):
            return candidate
    return None


def _rows_in_file(path: Path, holdout: Dataset, hold_fp: np.ndarray) -> np.ndarray | None:
    """Holdout rows present in `path` (by fingerprint), or None when it cannot be compared."""
    import numpy as np

    from retrainer.data import read_source
    from retrainer.errors import UserError

    try:
        frame = read_source(str(path), path.parent)
    except UserError as err:
        log.warning("cannot read the candidate's logged input %s: %s", path, err)
        return None
    frame.columns = [str(c) for c in frame.columns]
    cols = holdout.features + [holdout.target]
    if any(c not in frame.columns for c in cols):
        return None
    try:
        theirs = fingerprints(Dataset(frame.reset_index(drop=True), holdout.target,
                                      holdout.features, str(path)))
    except (TypeError, ValueError):
        return None
    return np.isin(hold_fp, theirs)


def leakage_signs(candidate: Registered | None, holdout_metrics: dict[str, float],
                  metric: str) -> list[str]:
    """A line when the holdout score is far better than the candidate's own logged score."""
    if candidate is None:
        return []
    logged = candidate.metrics_as_logged.get(metric)
    held = holdout_metrics.get(metric)
    if logged is None or held is None or not logged:
        return []
    gain = (held - logged) if GREATER_IS_BETTER[metric] else (logged - held)
    rel = gain / abs(logged)
    if rel <= LEAKAGE_GAP:
        return []
    return [f"leakage sign: version {candidate.version} scores {metric} {held:.4g} on the clean "
            f"holdout, {rel:.1%} better than the {logged:.4g} its own run logged"]
