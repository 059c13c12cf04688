"""The inference log: Parquet parts written by one background thread, off the request path.

Two logs share a folder. The row-level log (``<folder>/part-*.parquet``) holds each scored
row: ``ts``, ``request_id``, ``model_version``, the input columns, ``prediction`` (and the
challenger's in shadow mode); `retrainer drift --data <folder>` reads it. The request log
(``<folder>/_requests/part-*.parquet``) holds one row per POST /invocations answer, ok or
not: ``ts``, ``request_id``, ``model_version``, ``role``, ``outcome``, ``status``,
``latency_ms``, ``rows``; canary guardrails read it (``retrainer.rollout.logs``). Readers
of the folder (pyarrow, retrainer's folder source) skip ``_``-prefixed folders, so the
row-level readers never see it.

Each part is written under a dot-name and renamed, so no reader sees half a part, and its
name carries the process id, so several workers or servers can share one folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

from retrainer.serving.metrics import Metrics
from retrainer.serving.protocol import DUMP_OPTS, jsonable, orjson_default
from retrainer.serving.records import Answer, Scored
from retrainer.serving.shadow import is_vector, runs, score_shadow

log = logging.getLogger("retrainer.serving")

REQUESTS_DIR = "_requests"


class Sidecar(threading.Thread):
    """Scores the challenger (shadow mode) and writes the inference logs, off the hot path.

    Requests only put a reference on a queue. This thread drains it in bulk, scores the
    challenger on whole batches, and writes one Parquet part per log per flush, so its cost
    per request is a few microseconds of the GIL rather than a DataFrame per request.
    """

    def __init__(
        self,
        metrics: Metrics,
        log_dir: str | None,
        shadow: bool,
        flush_seconds: float,
        flush_rows: int = 50_000,
        max_queue: int = 20_000,
    ) -> None:
        super().__init__(name="retrainer-sidecar", daemon=True)
        self.metrics = metrics
        self.log_dir = log_dir
        self.shadow = shadow
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.queue: queue.Queue[Answer | None] = queue.Queue(maxsize=max_queue)
        self.buffer: list[Scored] = []
        self.answers: list[Answer] = []
        self.buffered_rows = 0
        self.first_buffered = 0.0
        self.seq = 0
        self.pred_kind: str | None = None
        if log_dir:
            os.makedirs(os.path.join(log_dir, REQUESTS_DIR), exist_ok=True)

    @property
    def wants_answers(self) -> bool:
        """Whether answers without scored rows are worth a queue slot (the request log)."""
        return self.log_dir is not None

    def submit(self, item: Answer) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.metrics.log_dropped += 1  # shed load rather than slow the requests

    def stop(self) -> None:
        self.queue.put(None)
        self.join(timeout=60)

    def run(self) -> None:
        while True:
            pending = self.buffer or self.answers
            items: list[Answer | None] = []
            with contextlib.suppress(queue.Empty):
                items.append(self.queue.get(timeout=self.flush_seconds if pending else None))
                while len(items) < 2000:
                    items.append(self.queue.get_nowait())
            answers = [i for i in items if i is not None]
            if answers:
                try:
                    self._take(answers)
                except Exception:  # noqa: BLE001 - the sidecar must outlive a bad batch
                    self.metrics.log_errors += 1
                    log.exception("inference log: could not record %d requests", len(answers))
            stopping = len(answers) != len(items)
            if (self.buffer or self.answers) and (
                stopping
                or self.buffered_rows >= self.flush_rows
                or len(self.answers) >= self.flush_rows
                or time.monotonic() - self.first_buffered >= self.flush_seconds
            ):
                self._flush()
            if stopping:
                return

    def _take(self, answers: list[Answer]) -> None:
        scored = [a.scored for a in answers if a.scored is not None]
        if self.shadow and scored:
            score_shadow(scored, self.metrics)
        if not self.log_dir:
            return
        if not (self.buffer or self.answers):
            self.first_buffered = time.monotonic()
        self.answers.extend(answers)
        self.metrics.log_requests += len(answers)
        self.buffer.extend(scored)
        rows = sum(i.rows for i in scored)
        self.buffered_rows += rows
        self.metrics.log_rows += rows

    # -- writing ---------------------------------------------------------------------

    def _flush(self) -> None:
        batch, self.buffer, self.buffered_rows = self.buffer, [], 0
        answers, self.answers = self.answers, []
        if not self.log_dir:
            return
        self.seq += 1
        if batch:
            self._write(self.log_dir, self._rows_table, batch)
        if answers:
            self._write(os.path.join(self.log_dir, REQUESTS_DIR), _answers_table, answers)

    def _write(self, folder: str, build: Any, items: list[Any]) -> None:
        import pyarrow.parquet as pq

        try:
            table = build(items)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            name = f"part-{stamp}-{os.getpid()}-{self.seq:06d}.parquet"
            # Readers of the folder skip dot-files, so they never see a half-written part.
            tmp = os.path.join(folder, f".{name}.tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, os.path.join(folder, name))
        except Exception:  # noqa: BLE001
            self.metrics.log_errors += 1
            log.exception("inference log: could not write a Parquet part in %s", folder)

    def _rows_table(self, batch: list[Scored]) -> Any:
        import pyarrow as pa

        tables = []
        for group in runs(batch, lambda i: (i.model.columns, i.x is not None)):
            if group[0].x is not None:
                tables.append(self._table(group))
            else:  # general path: one table per request (frames may differ)
                tables.extend(self._table([item]) for item in group)
        return pa.concat_tables(tables, promote_options="permissive")

    def _table(self, group: list[Scored]) -> Any:
        """One Arrow table for a run of requests scored by the same model the same way."""
        import pyarrow as pa

        counts = [i.rows for i in group]
        total = sum(counts)
        columns: dict[str, Any] = {
            "ts": pa.array(
                np.repeat(np.array([int(i.ts * 1e6) for i in group], "datetime64[us]"), counts),
                pa.timestamp("us", tz="UTC"),
            ),
            "request_id": pa.array(np.repeat([i.request_id for i in group], counts), pa.string()),
            "model_version": pa.array(
                np.repeat([i.model.version for i in group], counts), pa.string()
            ),
        }
        first = group[0]
        if first.x is not None and first.model.columns is not None:
            x = np.concatenate([i.x for i in group]) if len(group) > 1 else first.x
            for j, name in enumerate(first.model.columns):
                columns.setdefault(name, pa.array(np.ascontiguousarray(x[:, j])))
        else:
            frame = first.input_frame()
            if frame is not None:
                inputs = pa.Table.from_pandas(frame, preserve_index=False)
                for name in inputs.column_names:
                    columns.setdefault(str(name), inputs.column(name))
        columns["prediction"] = self._predictions([i.predictions for i in group], counts, total)
        if self.shadow:
            columns["challenger_version"] = pa.array(
                np.repeat([i.challenger.version if i.challenger else None for i in group], counts),
                pa.string(),
            )
            columns["challenger_prediction"] = self._predictions(
                [i.shadow for i in group], counts, total
            )
        return pa.table(columns)

    def _predictions(self, parts: list[Any], counts: list[int], total: int) -> Any:
        import pyarrow as pa

        if self.pred_kind in (None, "float") and all(
            is_vector(p, n) for p, n in zip(parts, counts, strict=True)
        ):
            self.pred_kind = "float"
            return pa.array(np.concatenate(parts).astype(np.float64, copy=False))
        arrays = []
        for p, n in zip(parts, counts, strict=True):
            arr, kind = _prediction_array(p, n, self.pred_kind)
            self.pred_kind = self.pred_kind or (kind if p is not None else None)
            arrays.append(arr)
        target = pa.float64() if self.pred_kind == "float" else pa.string()
        return pa.concat_arrays([a.cast(target) if a.type != target else a for a in arrays])


def request_log_schema() -> Any:
    """The request log's columns, fixed so every part (and every process) agrees."""
    import pyarrow as pa

    return pa.schema(
        [
            ("ts", pa.timestamp("us", tz="UTC")),
            ("request_id", pa.string()),
            ("model_version", pa.string()),
            ("role", pa.string()),
            ("outcome", pa.string()),
            ("status", pa.int64()),
            ("latency_ms", pa.float64()),
            ("rows", pa.int64()),
        ]
    )


def _answers_table(answers: list[Answer]) -> Any:
    import pyarrow as pa

    return pa.table(
        [
            pa.array(
                np.array([int(a.ts * 1e6) for a in answers], "datetime64[us]"),
                pa.timestamp("us", tz="UTC"),
            ),
            pa.array([a.request_id for a in answers], pa.string()),
            pa.array([a.model_version for a in answers], pa.string()),
            pa.array([a.role for a in answers], pa.string()),
            pa.array([a.outcome for a in answers], pa.string()),
            pa.array([a.status for a in answers], pa.int64()),
            pa.array([a.latency_ms for a in answers], pa.float64()),
            pa.array([a.rows for a in answers], pa.int64()),
        ],
        schema=request_log_schema(),
    )


def _prediction_array(predictions: Any, rows: int, kind: str | None) -> tuple[Any, str]:
    """Predictions as one Parquet column: float64 when numeric and 1-D, else JSON strings."""
    import pandas as pd
    import pyarrow as pa

    if predictions is None:
        return pa.nulls(rows, pa.float64() if kind == "float" else pa.string()), kind or "string"
    if isinstance(predictions, pd.DataFrame) and predictions.shape[1] == 1:
        predictions = predictions.iloc[:, 0]
    if isinstance(predictions, pd.Series):
        predictions = predictions.to_numpy()
    arr = np.asarray(predictions) if isinstance(predictions, (list, np.ndarray)) else None
    numeric = arr is not None and arr.ndim == 1 and arr.dtype.kind in "fiub" and len(arr) == rows
    if numeric and kind in (None, "float"):
        return pa.array(arr.astype(np.float64, copy=False)), "float"
    values = jsonable(predictions)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not (isinstance(values, list) and len(values) == rows):
        values = [None] * rows
    strings = [
        v
        if isinstance(v, str) or v is None
        else orjson.dumps(v, default=orjson_default, option=DUMP_OPTS).decode()
        for v in values
    ]
    return pa.array(strings, pa.string()), "string"
