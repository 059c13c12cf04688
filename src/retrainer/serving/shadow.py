"""Shadow mode: the challenger scores what the champion answered, off the request path.

The answer always comes from the champion; the challenger's predictions only go to the
inference log and /metrics. A failing challenger never hurts serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from retrainer.serving.metrics import Metrics
from retrainer.serving.records import Scored

log = logging.getLogger("retrainer.serving")


def score_shadow(items: list[Scored], metrics: Metrics) -> None:
    """Fill in ``item.shadow``: one challenger call per run of alike fast-path requests."""
    for group in runs(items, lambda i: (id(i.challenger), i.x is not None, i.model.columns)):
        challenger = group[0].challenger
        if challenger is None:
            continue
        if (
            group[0].x is not None
            and challenger.fast
            and challenger.columns == group[0].model.columns
        ):
            try:
                got = challenger.predict_array(np.concatenate([i.x for i in group]))
            except Exception:  # noqa: BLE001 - retried request by request below
                got = None
            if is_vector(got, sum(i.rows for i in group)):
                start = 0
                for item in group:
                    item.shadow = got[start : start + item.rows]
                    start += item.rows
                    _compare(item, metrics)
                continue
        for item in group:
            try:
                frame = item.input_frame()
                if frame is None:
                    raise ValueError("the request is not a table")
                if challenger.fast and challenger.columns is not None:
                    item.shadow = challenger.predict_array(challenger.frame_to_array(frame))
                else:
                    item.shadow = challenger.pyfunc.predict(frame)
                _compare(item, metrics)
            except Exception as exc:  # noqa: BLE001 - a failing challenger never hurts serving
                metrics.shadow_errors += 1
                log.warning("shadow: challenger %s could not score: %s", challenger.version, exc)


def _compare(item: Scored, metrics: Metrics) -> None:
    metrics.shadow_rows += item.rows
    if is_vector(item.shadow, item.rows) and is_vector(item.predictions, item.rows):
        diff = np.abs(item.shadow.astype(float) - item.predictions.astype(float))
        metrics.shadow_abs_diff += float(np.nansum(diff))


def is_vector(values: Any, rows: int) -> bool:
    return (
        isinstance(values, np.ndarray)
        and values.ndim == 1
        and values.dtype.kind in "fiub"
        and len(values) == rows
    )


def runs(items: list[Scored], key: Callable[[Scored], Any]) -> list[list[Scored]]:
    """Consecutive items with an equal key, in order."""
    out: list[list[Scored]] = []
    last: Any = object()
    for item in items:
        k = key(item)
        if out and k == last:
            out[-1].append(item)
        else:
            out.append([item])
            last = k
    return out
