"""REST server for a registered model's alias (``champion``), with hot swap.

The server speaks MLflow's scoring protocol (POST /invocations with ``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs`` JSON bodies, CSV or Parquet) and adds
/health, /model, /metrics and an ``X-Model-Version`` header on every response.

Why it is faster than ``mlflow models serve``: it is a bare ASGI app (no framework
routing or middleware), parses JSON with orjson, and for scikit-learn models whose
signature is all-numeric it converts the request straight to a numpy array in signature
column order and calls the estimator, skipping MLflow's pandas parsing and schema
enforcement (which cost about a millisecond a request). That fast path is only used
when, at load time, it reproduces ``pyfunc.predict`` on the model's input example;
otherwise every request goes through MLflow's own parser and ``pyfunc.predict``.

Hot swap: a background thread polls the alias; a new version is downloaded, loaded and
made to predict its own input example before one reference assignment swaps it in.
Each request reads that reference once, so requests in flight finish on the version
they started with. A version that fails its check is not served; /health says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import json
import logging
import math
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

from retrainer.errors import UserError

log = logging.getLogger("retrainer.serving")

DF_SPLIT = "dataframe_split"
DF_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
CT_JSON = "application/json"
CT_CSV = "text/csv"
CT_PARQUET = "application/vnd.apache.parquet"

# Legacy registry stages stand in for an alias that a stage-only registry lacks.
LEGACY_STAGE = {"champion": "Production", "challenger": "Staging"}
# Signature types the fast path converts to float64 without changing what the model sees.
_FAST_TYPES = {"double": False, "float": False, "long": True, "integer": True}
_ENV_CONFIG = "RETRAINER_SERVE_CONFIG"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BadInput(Exception):
    """A client mistake: answered with ``status`` and the message, never a 5xx."""

    def __init__(self, message: str, status: int = 400, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class _UseGeneralPath(Exception):
    """The fast converter does not handle this payload shape; MLflow's parser will."""


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, timezone.utc).isoformat()


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- registry


def resolve_version(client: Any, model_name: str, alias: str) -> str | None:
    """The version an alias points to (as str), or the legacy stage's latest, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    stage = LEGACY_STAGE.get(alias)
    if stage is None:
        return None
    # search_model_versions returns stages correctly (only its aliases are empty, mlflow#16734).
    versions = [
        int(mv.version)
        for mv in client.search_model_versions(f"name = '{model_name}'")
        if mv.current_stage == stage
    ]
    return str(max(versions)) if versions else None


# --------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    """One registered version, loaded, checked, and with its request converter."""

    name: str
    version: str
    run_id: str | None
    source: str | None
    local_dir: str
    pyfunc: Any
    loaded_at: float
    input_schema: Any
    model_path: str = ""  # the downloaded MLflow model folder (inside local_dir)
    mode: str = "pyfunc"  # "sklearn-numpy" | "sklearn-frame" | "pyfunc"
    columns: tuple[str, ...] | None = None  # named numeric signature, in order
    int_columns: tuple[int, ...] = ()
    col_dtypes: tuple[str, ...] = ()
    tensor_width: int | None = None  # unnamed 2-D tensor signature (-1, k)
    tensor_dtype: Any = None
    predict_fn: Callable[[Any], Any] | None = None
    has_params: bool = False  # a params schema: requests with params take MLflow's path
    check: str = ""

    @property
    def fast(self) -> bool:
        return self.predict_fn is not None

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "loaded_at": _now_iso(self.loaded_at),
            "scoring_path": self.mode,
            "check": self.check,
            "input_columns": list(self.columns) if self.columns else None,
        }

    # -- request -> array ------------------------------------------------------------

    def convert(self, fmt: str, value: Any) -> np.ndarray:
        """Request payload -> 2-D array in signature order; raises BadInput/_UseGeneralPath."""
        if self.columns is not None:
            if fmt == DF_SPLIT:
                return self._from_split(value)
            if fmt == DF_RECORDS or (fmt in (INSTANCES, INPUTS) and _is_records(value)):
                return self._from_records(value, fmt)
            if fmt == INPUTS and isinstance(value, dict):
                return self._from_columns(value)
            raise _UseGeneralPath
        if self.tensor_width is not None:
            if fmt in (INSTANCES, INPUTS) and isinstance(value, list):
                return self._tensor(value)
            if fmt == DF_SPLIT and isinstance(value, dict) and "columns" not in value:
                _check_split_keys(value)
                return self._tensor(value.get("data"))
        raise _UseGeneralPath

    def _finish(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[0] == 0:
            raise BadInput("input has no rows")
        if self.int_columns:
            part = x[:, self.int_columns]
            bad = ~np.isfinite(part) | (part != np.trunc(part))
            if bad.any():
                row, j = (int(i) for i in np.argwhere(bad)[0])
                name = self.columns[self.int_columns[j]]  # type: ignore[index]
                raise BadInput(
                    f"column '{name}' expects an integer; row {row} has {part[row, j]!r}"
                )
        return x

    def _from_split(self, value: Any) -> np.ndarray:
        if not isinstance(value, dict):
            raise BadInput(f"{DF_SPLIT} must be an object with 'columns' and 'data'")
        _check_split_keys(value)
        cols, data = value.get("columns"), value["data"]
        if cols is None:
            raise _UseGeneralPath  # positional columns: MLflow decides (it rejects them)
        if not isinstance(cols, list) or not isinstance(data, list):
            raise BadInput(f"{DF_SPLIT}: 'columns' and 'data' must be lists")
        assert self.columns is not None
        if cols == list(self.columns):
            try:
                x = np.array(data, dtype=np.float64)
            except (ValueError, TypeError, OverflowError):
                raise BadInput(self._explain_rows(data, range(len(cols)))) from None
            if x.ndim == 2 and x.shape[1] != len(cols):
                raise BadInput(f"rows have {x.shape[1]} values, expected {len(cols)}")
            if x.ndim == 1 and len(data):
                raise BadInput(self._explain_rows(data, range(len(cols))))
            return self._finish(x if x.ndim == 2 else x.reshape(0, len(cols)))
        index: dict[Any, int] = {}
        for i, c in enumerate(cols):
            if not isinstance(c, (str, int, float, bool)) and c is not None:
                raise BadInput(f"{DF_SPLIT}: column names must be strings, got {_short(c)}")
            index.setdefault(c, i)
        missing = [c for c in self.columns if c not in index]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")
        pos = [index[c] for c in self.columns]
        for r, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(cols):
                raise BadInput(f"row {r} has {_len(row)} values, expected {len(cols)}")
        try:
            x = np.array([[row[p] for p in pos] for row in data], dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise BadInput(self._explain_rows(data, pos)) from None
        return self._finish(x if x.ndim == 2 else x.reshape(0, len(pos)))

    def _from_records(self, records: Any, fmt: str) -> np.ndarray:
        if not isinstance(records, list):
            raise BadInput(f"{fmt} must be a list of records (objects)")
        assert self.columns is not None
        cols = self.columns
        try:
            x = np.array([[rec.get(c) for c in cols] for rec in records], dtype=np.float64)
        except AttributeError:
            bad = next(i for i, rec in enumerate(records) if not isinstance(rec, dict))
            raise BadInput(f"{fmt}: record {bad} is not an object") from None
        except (ValueError, TypeError, OverflowError):
            rows = [[rec.get(c) for c in cols] for rec in records]
            raise BadInput(self._explain_rows(rows, range(len(cols)))) from None
        if x.ndim != 2:
            x = x.reshape(0, len(cols))
        if x.size and np.isnan(x).any():
            # A key absent from every record is a missing column, as MLflow reports it;
            # absent from some records only, it is a missing value the model judges.
            missing = [
                c
                for j, c in enumerate(cols)
                if np.isnan(x[:, j]).all() and not any(c in rec for rec in records)
            ]
            if missing:
                raise BadInput(f"missing column(s): {', '.join(missing)}")
        return self._finish(x)

    def _from_columns(self, value: dict[str, Any]) -> np.ndarray:
        assert self.columns is not None
        missing = [c for c in self.columns if c not in value]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")
        vals = [value[c] for c in self.columns]
        lists = [isinstance(v, list) for v in vals]
        if all(lists):
            lengths = {len(v) for v in vals}
            if len(lengths) > 1:
                raise BadInput(f"{INPUTS}: columns have different lengths {sorted(lengths)}")
            rows: list[Any] = list(zip(*vals, strict=True))
        elif not any(lists):
            rows = [vals]  # one value per column: one row
        else:
            raise _UseGeneralPath
        try:
            x = np.array(rows, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise BadInput(self._explain_rows(rows, range(len(self.columns)))) from None
        return self._finish(x if x.ndim == 2 else x.reshape(0, len(self.columns)))

    def _tensor(self, data: Any) -> np.ndarray:
        try:
            x = np.array(data, dtype=self.tensor_dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadInput(f"input is not a numeric 2-D array: {exc}") from None
        if x.ndim != 2 or x.shape[1] != self.tensor_width:
            raise BadInput(
                f"input must be a 2-D array of rows with {self.tensor_width} values, "
                f"got shape {list(x.shape)}"
            )
        if x.shape[0] == 0:
            raise BadInput("input has no rows")
        return x

    def frame_to_array(self, df: Any) -> np.ndarray:
        """A pandas DataFrame (CSV/Parquet body, batch chunk) -> array in signature order."""
        assert self.columns is not None
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")
        try:
            x = df[list(self.columns)].to_numpy(dtype=np.float64)
        except (ValueError, TypeError):
            import pandas as pd

            for c, t in zip(self.columns, self.col_dtypes, strict=True):
                try:
                    pd.to_numeric(df[c], errors="raise")
                except (ValueError, TypeError) as exc:
                    raise BadInput(f"column '{c}' expects {t}: {exc}") from None
            raise BadInput("input columns are not numeric") from None
        return self._finish(x)

    def _explain_rows(self, rows: Any, positions: Any) -> str:
        """Name the first cell that does not convert (the slow path of an error)."""
        cols = self.columns or ()
        width = len(cols)
        positions = list(positions)
        for r, row in enumerate(rows):
            if not isinstance(row, (list, tuple)):
                return f"row {r} is not a list of values"
            if len(row) < (max(positions) + 1 if positions else width):
                return f"row {r} has {len(row)} values, expected {width}"
            for j, p in enumerate(positions):
                v = row[p]
                if v is None or isinstance(v, bool):
                    continue
                try:
                    if isinstance(v, (list, dict)):
                        raise TypeError
                    float(v)
                except (TypeError, ValueError, OverflowError):
                    return (
                        f"column '{cols[j]}' expects {self.col_dtypes[j]}; row {r} has {_short(v)}"
                    )
        return "input values do not form a table of numbers"

    # -- array -> predictions ------------------------------------------------------

    def predict_array(self, x: np.ndarray) -> Any:
        assert self.predict_fn is not None
        return self.predict_fn(x)


def _len(row: Any) -> str:
    return str(len(row)) if isinstance(row, list) else "no list of"


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def _check_split_keys(value: dict[str, Any]) -> None:
    keys = set(value)
    if "data" not in keys or keys - {"columns", "data", "index"}:
        raise BadInput(
            f"{DF_SPLIT} must have a 'data' field and optionally 'columns' and 'index'; "
            f"got {sorted(map(str, keys))}"
        )


def _jsonable(predictions: Any) -> Any:
    """MLflow's conversion of model output for JSON (records for frames)."""
    from mlflow.utils.proto_json_utils import _get_jsonable_obj

    return _get_jsonable_obj(predictions, pandas_orient="records")


def _orjson_default(obj: Any) -> Any:
    import pandas as pd

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return _jsonable(obj)
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        import base64

        return base64.encodebytes(obj).decode("ascii")
    raise TypeError(f"cannot serialise {type(obj).__name__}")


_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dump_predictions(predictions: Any) -> bytes:
    """``{"predictions": ...}`` as MLflow writes it, serialised with orjson."""
    if not isinstance(predictions, np.ndarray):
        predictions = _jsonable(predictions)
    elif not predictions.flags.c_contiguous:
        predictions = np.ascontiguousarray(predictions)
    return orjson.dumps({"predictions": predictions}, default=_orjson_default, option=_DUMP_OPTS)


def _same_predictions(a: Any, b: Any) -> bool:
    try:
        ja, jb = orjson.loads(dump_predictions(a)), orjson.loads(dump_predictions(b))
    except TypeError:
        return False
    if ja == jb:
        return True
    try:
        xa, xb = np.asarray(ja, dtype=np.float64), np.asarray(jb, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return xa.shape == xb.shape and bool(np.allclose(xa, xb, rtol=1e-9, atol=1e-12))


def _example_frame(model_meta: Any, local_dir: str, columns: tuple[str, ...] | None) -> Any:
    """The model's input example as a DataFrame, or a synthetic zero row, or None."""
    import pandas as pd

    example = None
    with contextlib.suppress(Exception):
        example = model_meta.load_input_example(local_dir)
    if isinstance(example, pd.DataFrame):
        return example, "input example"
    if isinstance(example, dict) and columns:
        with contextlib.suppress(Exception):
            return pd.DataFrame(example), "input example"
    if isinstance(example, np.ndarray):
        return example, "input example"
    if columns:
        return pd.DataFrame([[0.0] * len(columns)], columns=list(columns)), "synthetic zero row"
    return None, "no input example"


def load_version(
    tracking_uri: str,
    registry_uri: str | None,
    name: str,
    version: str,
    workdir: str,
    client: Any = None,
) -> LoadedModel:
    """Download, load and check one registered version; raises on any failure."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import Model

    client = client or MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    mv = client.get_model_version(name, version)
    local_dir = tempfile.mkdtemp(prefix=f"v{version}-", dir=workdir)
    try:
        # The version's own storage location, read through this client: a models:/name/N
        # URI would be resolved through MLflow's global tracking URI, not ours.
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(name, version),
            dst_path=local_dir,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri or tracking_uri,
        )
        pyfunc = mlflow.pyfunc.load_model(path)
        meta = Model.load(path)
        model = LoadedModel(
            name=name,
            version=str(version),
            run_id=mv.run_id,
            source=mv.source,
            local_dir=local_dir,
            pyfunc=pyfunc,
            loaded_at=time.time(),
            input_schema=pyfunc.metadata.get_input_schema(),
            has_params=pyfunc.metadata.get_params_schema() is not None,
            model_path=path,
        )
        _plan_fast_path(model)
        _check_model(model, meta, path)
        return model
    except BaseException:
        shutil.rmtree(local_dir, ignore_errors=True)
        raise


def _plan_fast_path(model: LoadedModel) -> None:
    """Fill in the converter fields from the signature (no fast predict yet)."""
    schema = model.input_schema
    if schema is None:
        return
    from mlflow.types.schema import ColSpec, DataType, TensorSpec

    inputs = schema.inputs
    if schema.has_input_names() and all(isinstance(s, ColSpec) for s in inputs):
        kinds = []
        for spec in inputs:
            if not isinstance(spec.type, DataType) or spec.type.name not in _FAST_TYPES:
                return
            if not spec.required:
                return  # optional columns: MLflow's enforcement decides what absence means
            kinds.append(spec.type.name)
        model.columns = tuple(schema.input_names())
        model.col_dtypes = tuple(kinds)
        model.int_columns = tuple(i for i, k in enumerate(kinds) if _FAST_TYPES[k])
    elif (
        not schema.has_input_names()
        and len(inputs) == 1
        and isinstance(inputs[0], TensorSpec)
        and len(inputs[0].shape) == 2
        and inputs[0].shape[1] > 0
        and inputs[0].type.kind in "fiu"
    ):
        model.tensor_width = int(inputs[0].shape[1])
        model.tensor_dtype = inputs[0].type


def _check_model(model: LoadedModel, meta: Any, path: str) -> None:
    """Predict the input example with pyfunc; adopt the sklearn fast path if it agrees."""
    import pandas as pd

    example, what = _example_frame(meta, path, model.columns)
    if example is None:
        model.check = "loaded; no input example to predict"
        return
    reference = model.pyfunc.predict(example)
    rows = len(example)
    if reference is None or (hasattr(reference, "__len__") and len(reference) != rows):
        raise ValueError(f"predicting the {what} gave no prediction per row")
    model.check = f"predicted its {what} ({rows} rows)"

    if model.pyfunc.loader_module != "mlflow.sklearn":
        return
    if model.columns is None and model.tensor_width is None:
        return
    raw = model.pyfunc.get_raw_model()
    fn_name = meta.flavors.get("python_function", {}).get("predict_fn") or "predict"
    fn = getattr(raw, fn_name, None)
    if fn is None:
        return
    if model.columns is not None:
        x = model.frame_to_array(example) if isinstance(example, pd.DataFrame) else None
        if x is None:
            return
        # Fitted on a DataFrame, sklearn warns on every numpy call; the check below proves
        # the predictions are the same, so the warning says nothing here.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        candidates: list[tuple[str, Callable[[np.ndarray], Any]]] = [
            ("sklearn-numpy", fn),
            ("sklearn-frame", _frame_predictor(fn, model.columns, model.col_dtypes)),
        ]
    else:
        x = np.asarray(example, dtype=model.tensor_dtype)
        candidates = [("sklearn-numpy", fn)]
    for mode, candidate in candidates:
        try:
            got = candidate(x)
        except Exception:  # noqa: BLE001 - a path that cannot score the example is not used
            continue
        if _same_predictions(got, reference):
            model.mode, model.predict_fn = mode, candidate
            return


def _frame_predictor(
    fn: Callable[[Any], Any], columns: tuple[str, ...], dtypes: tuple[str, ...]
) -> Callable[[np.ndarray], Any]:
    """For pipelines that select columns by name: a minimal DataFrame, no schema checks."""
    import pandas as pd

    np_types = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}
    cast = [(c, np_types[t]) for c, t in zip(columns, dtypes, strict=True)]

    def predict(x: np.ndarray) -> Any:
        return fn(pd.DataFrame({c: x[:, i].astype(t, copy=False) for i, (c, t) in enumerate(cast)}))

    return predict


# --------------------------------------------------------------------------- metrics

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Prometheus counters of one worker process (each worker exposes its own)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.bucket_counts = [0] * (len(_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.rows = 0
        self.swaps = 0
        self.swap_failures = 0
        self.log_rows = 0
        self.log_dropped = 0
        self.log_errors = 0
        self.shadow_rows = 0
        self.shadow_errors = 0
        self.shadow_abs_diff = 0.0

    def observe(self, path: str, status: int, seconds: float, rows: int) -> None:
        key = (path, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if path == "/invocations":
            i = 0
            while i < len(_BUCKETS) and seconds > _BUCKETS[i]:
                i += 1
            self.bucket_counts[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1
            self.rows += rows

    def render(self, model: LoadedModel | None, challenger: LoadedModel | None) -> str:
        p = "retrainer_serving"
        out = [
            f"# HELP {p}_requests_total HTTP requests by path and status code.",
            f"# TYPE {p}_requests_total counter",
        ]
        for (path, status), n in sorted(self.requests.items()):
            out.append(f'{p}_requests_total{{path="{path}",code="{status}"}} {n}')
        errors = sum(n for (_, s), n in self.requests.items() if s >= 400)
        out += [
            f"# HELP {p}_errors_total Responses with a 4xx or 5xx status.",
            f"# TYPE {p}_errors_total counter",
            f"{p}_errors_total {errors}",
            f"# HELP {p}_request_duration_seconds Time to answer POST /invocations.",
            f"# TYPE {p}_request_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip((*_BUCKETS, math.inf), self.bucket_counts, strict=True):
            cumulative += n
            le = "+Inf" if bound == math.inf else repr(bound)
            out.append(f'{p}_request_duration_seconds_bucket{{le="{le}"}} {cumulative}')
        out += [
            f"{p}_request_duration_seconds_sum {self.latency_sum}",
            f"{p}_request_duration_seconds_count {self.latency_count}",
            f"# HELP {p}_rows_scored_total Rows scored by the served model.",
            f"# TYPE {p}_rows_scored_total counter",
            f"{p}_rows_scored_total {self.rows}",
            f"# HELP {p}_model_version The registered version being served (value 1).",
            f"# TYPE {p}_model_version gauge",
        ]
        if model is not None:
            out.append(
                f'{p}_model_version{{model="{model.name}",version="{model.version}",'
                f'path="{model.mode}"}} 1'
            )
        out += [
            f"# HELP {p}_model_swaps_total Hot swaps to a new version.",
            f"# TYPE {p}_model_swaps_total counter",
            f"{p}_model_swaps_total {self.swaps}",
            f"# HELP {p}_model_swap_failures_total New versions that failed their check.",
            f"# TYPE {p}_model_swap_failures_total counter",
            f"{p}_model_swap_failures_total {self.swap_failures}",
            f"# TYPE {p}_inference_log_rows_total counter",
            f"{p}_inference_log_rows_total {self.log_rows}",
            f"# TYPE {p}_inference_log_dropped_total counter",
            f"{p}_inference_log_dropped_total {self.log_dropped}",
            f"# TYPE {p}_inference_log_errors_total counter",
            f"{p}_inference_log_errors_total {self.log_errors}",
            f"# TYPE {p}_shadow_rows_total counter",
            f"{p}_shadow_rows_total {self.shadow_rows}",
            f"# TYPE {p}_shadow_errors_total counter",
            f"{p}_shadow_errors_total {self.shadow_errors}",
            f"# HELP {p}_shadow_abs_diff_sum Sum of |challenger - champion| over shadow rows.",
            f"# TYPE {p}_shadow_abs_diff_sum counter",
            f"{p}_shadow_abs_diff_sum {self.shadow_abs_diff}",
        ]
        if challenger is not None:
            out += [
                f"# TYPE {p}_challenger_version gauge",
                f'{p}_challenger_version{{model="{challenger.name}",'
                f'version="{challenger.version}"}} 1',
            ]
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- sidecar


@dataclass
class _Scored:
    """One answered request, handed to the sidecar thread (never blocks the request)."""

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
        self.rows = self.x.shape[0] if self.x is not None else _rows_of(self.predictions)

    def input_frame(self) -> Any:
        import pandas as pd

        if self.x is not None and self.model.columns is not None:
            return pd.DataFrame(self.x, columns=list(self.model.columns), copy=False)
        if isinstance(self.frame, pd.DataFrame):
            return self.frame.reset_index(drop=True)
        return None


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
    values = _jsonable(predictions)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not (isinstance(values, list) and len(values) == rows):
        values = [None] * rows
    strings = [
        v
        if isinstance(v, str) or v is None
        else orjson.dumps(v, default=_orjson_default, option=_DUMP_OPTS).decode()
        for v in values
    ]
    return pa.array(strings, pa.string()), "string"


def _is_vector(values: Any, rows: int) -> bool:
    return (
        isinstance(values, np.ndarray)
        and values.ndim == 1
        and values.dtype.kind in "fiub"
        and len(values) == rows
    )


class Sidecar(threading.Thread):
    """Scores the challenger (shadow mode) and writes the inference log, off the hot path.

    Requests only put a reference on a queue. This thread drains it in bulk, scores the
    challenger on whole batches, and writes one Parquet part per flush, so its cost per
    request is a few microseconds of the GIL rather than a DataFrame per request.
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
        self.queue: queue.Queue[_Scored | None] = queue.Queue(maxsize=max_queue)
        self.buffer: list[_Scored] = []
        self.buffered_rows = 0
        self.first_buffered = 0.0
        self.seq = 0
        self.pred_kind: str | None = None
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)

    def submit(self, item: _Scored) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.metrics.log_dropped += 1  # shed load rather than slow the requests

    def stop(self) -> None:
        self.queue.put(None)
        self.join(timeout=60)

    def run(self) -> None:
        while True:
            timeout = self.flush_seconds if self.buffer else None
            items: list[_Scored | None] = []
            with contextlib.suppress(queue.Empty):
                items.append(self.queue.get(timeout=timeout))
                while len(items) < 2000:
                    items.append(self.queue.get_nowait())
            scored = [i for i in items if i is not None]
            if scored:
                try:
                    self._take(scored)
                except Exception:  # noqa: BLE001 - the sidecar must outlive a bad batch
                    self.metrics.log_errors += 1
                    log.exception("inference log: could not record %d requests", len(scored))
            stopping = len(scored) != len(items)
            if self.buffer and (
                stopping
                or self.buffered_rows >= self.flush_rows
                or time.monotonic() - self.first_buffered >= self.flush_seconds
            ):
                self._flush()
            if stopping:
                return

    def _take(self, items: list[_Scored]) -> None:
        if self.shadow:
            self._score_shadow(items)
        if not self.log_dir:
            return
        if not self.buffer:
            self.first_buffered = time.monotonic()
        self.buffer.extend(items)
        rows = sum(i.rows for i in items)
        self.buffered_rows += rows
        self.metrics.log_rows += rows

    def _score_shadow(self, items: list[_Scored]) -> None:
        """The challenger scores what the champion scored: one call per run of alike requests."""
        for group in _runs(items, lambda i: (id(i.challenger), i.x is not None, i.model.columns)):
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
                if _is_vector(got, sum(i.rows for i in group)):
                    start = 0
                    for item in group:
                        item.shadow = got[start : start + item.rows]
                        start += item.rows
                        self._compare(item)
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
                    self._compare(item)
                except Exception as exc:  # noqa: BLE001 - a failing challenger never hurts serving
                    self.metrics.shadow_errors += 1
                    log.warning(
                        "shadow: challenger %s could not score: %s", challenger.version, exc
                    )

    def _compare(self, item: _Scored) -> None:
        self.metrics.shadow_rows += item.rows
        if _is_vector(item.shadow, item.rows) and _is_vector(item.predictions, item.rows):
            diff = np.abs(item.shadow.astype(float) - item.predictions.astype(float))
            self.metrics.shadow_abs_diff += float(np.nansum(diff))

    def _table(self, group: list[_Scored]) -> Any:
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
            _is_vector(p, n) for p, n in zip(parts, counts, strict=True)
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

    def _flush(self) -> None:
        batch, self.buffer, self.buffered_rows = self.buffer, [], 0
        if not batch or not self.log_dir:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            groups = _runs(batch, lambda i: (i.model.columns, i.x is not None))
            tables = []
            for group in groups:
                if group[0].x is not None:
                    tables.append(self._table(group))
                else:  # general path: one table per request (frames may differ)
                    tables.extend(self._table([item]) for item in group)
            table = pa.concat_tables(tables, promote_options="permissive")
            self.seq += 1
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            final = os.path.join(self.log_dir, f"part-{stamp}-{os.getpid()}-{self.seq:06d}.parquet")
            # Readers of the directory skip dot-files, so they never see a half-written part.
            tmp = os.path.join(self.log_dir, "." + os.path.basename(final) + ".tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        except Exception:  # noqa: BLE001
            self.metrics.log_errors += 1
            log.exception("inference log: could not write a Parquet part")


def _runs(items: list[_Scored], key: Callable[[_Scored], Any]) -> list[list[_Scored]]:
    """Consecutive items with an equal key, in order."""
    out: list[list[_Scored]] = []
    last: Any = object()
    for item in items:
        k = key(item)
        if out and k == last:
            out[-1].append(item)
        else:
            out.append([item])
            last = k
    return out


def _rows_of(predictions: Any) -> int:
    try:
        return len(predictions)
    except TypeError:
        return 1


# --------------------------------------------------------------------------- app


@dataclass
class _Failure:
    version: str
    error: str
    at: float
    retry_after: float


@dataclass
class _Follower:
    """What one alias currently serves, and what went wrong following it."""

    alias: str
    model: LoadedModel | None = None
    alias_version: str | None = None
    failure: _Failure | None = None
    dirs: list[str] = field(default_factory=list)


class ServingApp:
    """The ASGI application. Build it with :func:`create_app`."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        *,
        alias: str = "champion",
        poll_seconds: float = 5.0,
        token: str | None = None,
        inference_log: str | None = None,
        shadow: bool = False,
        max_body_bytes: int = 50 * 2**20,
        registry_uri: str | None = None,
        log_flush_seconds: float = 5.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.token = token.encode() if token else None
        self.max_body = max_body_bytes
        self.metrics = Metrics()
        self.champion = _Follower(alias)
        self.challenger = _Follower("challenger") if shadow else None
        self.sidecar = (
            Sidecar(self.metrics, inference_log, shadow, log_flush_seconds)
            if (inference_log or shadow)
            else None
        )
        self.last_poll: float | None = None
        self.last_poll_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self._workdir = tempfile.mkdtemp(prefix="retrainer-serve-")
        self._request_seq = 0
        self._pid = os.getpid()
        self._client: Any = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Load the current version (blocking) and start the poller and sidecar threads."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
            self._poll_once()
            _freeze_heap()
            self._poller = threading.Thread(
                target=self._poll_loop, name="retrainer-poller", daemon=True
            )
            self._poller.start()
            if self.sidecar is not None:
                self.sidecar.start()

    def stop(self) -> None:
        """Stop polling, flush the inference log, remove downloaded artifacts."""
        self._stop.set()
        self._wake.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
        if self.sidecar is not None and self.sidecar.is_alive():
            self.sidecar.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def refresh(self) -> None:
        """Check the alias now (e.g. on a registry webhook) instead of at the next poll."""
        self._wake.set()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._poll_once()

    def _poll_once(self) -> None:
        from mlflow import MlflowClient

        try:
            # One client for the poller's life: building one opens (and for sqlite, checks
            # the schema of) the store, which would steal the GIL from requests every poll.
            if self._client is None:
                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
                )
            client = self._client
            for follower in (self.champion, self.challenger):
                if follower is not None:
                    self._follow(client, follower)
            self.last_poll_error = None
        except Exception as exc:  # noqa: BLE001 - a registry hiccup must not stop serving
            self.last_poll_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "registry poll failed (still serving %s): %s",
                self._version_of(self.champion.model),
                self.last_poll_error,
            )
        self.last_poll = time.time()

    def _follow(self, client: Any, f: _Follower) -> None:
        version = resolve_version(client, self.model_name, f.alias)
        f.alias_version = version
        current = f.model
        if version is None:
            if f is self.challenger:
                f.model = None
            return
        if current is not None and current.version == version:
            f.failure = None
            return
        now = time.time()
        if f.failure and f.failure.version == version and now < f.failure.retry_after:
            return
        try:
            new = load_version(
                self.tracking_uri,
                self.registry_uri,
                self.model_name,
                version,
                self._workdir,
                client,
            )
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old version serving
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            first = not (f.failure and f.failure.version == version)
            f.failure = _Failure(version, error, now, now + max(30.0, 6 * self.poll_seconds))
            if f is self.champion:
                self.metrics.swap_failures += first
            if first:
                log.error(
                    "%s: version %s failed its check, keeping version %s: %s",
                    f.alias,
                    version,
                    self._version_of(current),
                    error,
                )
            return
        f.model = new  # the swap: one reference assignment; requests read it once
        f.failure = None
        f.dirs.append(new.local_dir)
        while len(f.dirs) > 2:  # keep the previous version's files for in-flight stragglers
            shutil.rmtree(f.dirs.pop(0), ignore_errors=True)
        if f is self.champion and current is not None:
            self.metrics.swaps += 1
        log.info(
            "%s: now serving version %s (was %s; %s, %s)",
            f.alias,
            version,
            self._version_of(current),
            new.mode,
            new.check,
        )

    @staticmethod
    def _version_of(model: LoadedModel | None) -> str:
        return model.version if model is not None else "none"

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await loop.run_in_executor(None, self.start)
                except Exception as exc:  # noqa: BLE001
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await loop.run_in_executor(None, self.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        model = self.champion.model  # read once: this request's version, whatever swaps
        path = scope["path"]
        method = scope["method"]
        rows = 0
        if not self._started:
            await asyncio.get_running_loop().run_in_executor(None, self.start)
            model = self.champion.model
        try:
            if path != "/ping" and self.token is not None:
                self._authorize(scope)
            if path == "/refresh" and method == "POST":
                self.refresh()
                status, body, ctype = 202, b'{"refresh": "requested"}', CT_JSON
            elif path == "/invocations":
                if method != "POST":
                    raise BadInput("use POST", 405, "METHOD_NOT_ALLOWED")
                status, body, ctype, rows = await self._invocations(scope, receive, model)
            elif method not in ("GET", "HEAD"):
                raise BadInput(f"{method} is not allowed on {path}", 405, "METHOD_NOT_ALLOWED")
            elif path == "/ping":
                status = 200 if model is not None else 503
                body, ctype = b"\n", CT_JSON
            elif path == "/health":
                status, body, ctype = self._health(model)
            elif path == "/version":
                from mlflow.version import VERSION

                status, body, ctype = 200, VERSION.encode(), CT_JSON  # as mlflow serves it
            elif path == "/model":
                status, body, ctype = self._model_info(model)
            elif path == "/metrics":
                text = self.metrics.render(
                    model, self.challenger.model if self.challenger else None
                )
                status, body, ctype = 200, text.encode(), "text/plain; version=0.0.4"
            else:
                raise BadInput(f"no such endpoint: {path}", 404, "NOT_FOUND")
        except BadInput as exc:
            status, ctype = exc.status, CT_JSON
            body = orjson.dumps({"error_code": exc.code, "message": exc.message})
        except Exception as exc:  # noqa: BLE001 - a bug of ours: say so, keep serving
            log.exception("internal error on %s %s", method, path)
            status, ctype = 500, CT_JSON
            body = orjson.dumps({"error_code": "INTERNAL_ERROR", "message": repr(exc)})
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-model-version", (model.version if model else "none").encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="retrainer"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        self.metrics.observe(
            path if path in _KNOWN_PATHS else "other", status, time.perf_counter() - started, rows
        )

    def _authorize(self, scope: Scope) -> None:
        supplied = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                supplied = value
                break
        scheme, _, token = supplied.partition(b" ")
        assert self.token is not None
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.token):
            raise BadInput("missing or wrong bearer token", 401, "UNAUTHENTICATED")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise BadInput("invalid Content-Length header") from None
                if declared > self.max_body:
                    raise BadInput(
                        f"request body of {declared} bytes is over the limit of "
                        f"{self.max_body} bytes",
                        413,
                        "REQUEST_TOO_LARGE",
                    )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadInput("client disconnected")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    raise BadInput(
                        f"request body is over the limit of {self.max_body} bytes",
                        413,
                        "REQUEST_TOO_LARGE",
                    )
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _invocations(
        self, scope: Scope, receive: Receive, model: LoadedModel | None
    ) -> tuple[int, bytes, str, int]:
        ctype_raw = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype_raw = value
                break
        mime = _parse_content_type(ctype_raw.decode("latin-1"))
        body = await self._read_body(scope, receive)
        if model is None:
            raise BadInput(
                f"no version of model '{self.model_name}' is loaded yet "
                f"(alias '{self.champion.alias}')",
                503,
                "SERVICE_UNAVAILABLE",
            )
        if not body.strip():
            raise BadInput("empty request body")
        challenger = self.challenger.model if self.challenger else None
        x: np.ndarray | None = None
        if mime == CT_JSON:
            payload = _loads(body)
            if not isinstance(payload, dict):
                raise BadInput(
                    "the body must be a JSON object with exactly one of "
                    f"{', '.join(FORMATS)}; got a {type(payload).__name__}"
                )
            keys = [k for k in FORMATS if k in payload]
            if model.fast and len(keys) == 1 and not ("params" in payload and model.has_params):
                with contextlib.suppress(_UseGeneralPath):
                    x = model.convert(keys[0], payload[keys[0]])
            if x is None:
                return await self._general(model, payload, mime, challenger)
        elif mime in (CT_CSV, CT_PARQUET):
            fast_table = model.fast and model.columns is not None
            # The fast path reads CSV as is, so a bad cell's column can be named; MLflow's
            # path reads it with the signature's dtypes, as `mlflow models serve` does.
            frame = _read_table(body, mime, None if fast_table else model.input_schema)
            if fast_table:
                x = model.frame_to_array(frame)
            else:
                return await self._general(model, frame, mime, challenger)
        else:
            raise BadInput(
                f"unsupported content type '{mime or '(none)'}'; use {CT_JSON}, "
                f"{CT_CSV} or {CT_PARQUET}",
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            )
        try:
            predictions = model.predict_array(x)
        except Exception as exc:  # noqa: BLE001 - the model refused this input (e.g. NaN)
            raise BadInput(f"the model could not score this input: {exc}") from None
        out = dump_predictions(predictions)
        if self.sidecar is not None:
            self.sidecar.submit(
                _Scored(time.time(), self._request_id(), model, x, None, predictions, challenger)
            )
        return 200, out, CT_JSON, x.shape[0]

    async def _general(
        self, model: LoadedModel, payload: Any, mime: str, challenger: LoadedModel | None
    ) -> tuple[int, bytes, str, int]:
        """MLflow's own parsing and pyfunc.predict, off the event loop as MLflow does."""
        loop = asyncio.get_running_loop()
        data, predictions, out = await loop.run_in_executor(
            None, _score_general, model, payload, mime
        )
        if self.sidecar is not None:
            self.sidecar.submit(
                _Scored(time.time(), self._request_id(), model, None, data, predictions, challenger)
            )
        return 200, out, CT_JSON, _rows_of(data)

    def _request_id(self) -> str:
        self._request_seq += 1
        return f"{self._pid}-{self._request_seq}"

    def _health(self, model: LoadedModel | None) -> tuple[int, bytes, str]:
        f = self.champion
        problems = []
        if f.failure is not None:
            problems.append(
                f"version {f.failure.version} failed its check and is not served: {f.failure.error}"
            )
        if self.last_poll_error:
            problems.append(f"registry poll failed: {self.last_poll_error}")
        if model is None:
            status = "no_model"
            if f.alias_version is None and not f.failure:
                problems.append(
                    f"model '{self.model_name}' has no alias '{f.alias}' "
                    "(nor a legacy stage version)"
                )
        else:
            if f.alias_version is None and self.last_poll_error is None:
                problems.append(
                    f"alias '{f.alias}' is no longer set (nor a legacy stage version); "
                    f"still serving version {model.version}"
                )
            status = "degraded" if problems else "ok"
        doc: dict[str, Any] = {
            "status": status,
            "model": self.model_name,
            "alias": f.alias,
            "version": model.version if model else None,
            "alias_version": f.alias_version,
            "loaded_at": _now_iso(model.loaded_at) if model else None,
            "scoring_path": model.mode if model else None,
            "last_poll": _now_iso(self.last_poll) if self.last_poll else None,
            "poll_seconds": self.poll_seconds,
            "pid": self._pid,  # each uvicorn worker follows the alias on its own
            "problems": problems,
            "failed_version": (
                {
                    "version": f.failure.version,
                    "error": f.failure.error,
                    "at": _now_iso(f.failure.at),
                }
                if f.failure
                else None
            ),
        }
        if self.challenger is not None:
            c = self.challenger
            doc["shadow"] = {
                "alias": c.alias,
                "version": c.model.version if c.model else None,
                "alias_version": c.alias_version,
                "failed_version": c.failure.version if c.failure else None,
                "error": c.failure.error if c.failure else None,
            }
        return (200 if model is not None else 503), orjson.dumps(doc), CT_JSON

    def _model_info(self, model: LoadedModel | None) -> tuple[int, bytes, str]:
        if model is None:
            raise BadInput(
                f"no version of model '{self.model_name}' is loaded", 503, "SERVICE_UNAVAILABLE"
            )
        doc = {"alias": self.champion.alias, **model.info()}
        if self.challenger is not None and self.challenger.model is not None:
            doc["challenger"] = self.challenger.model.info()
        return 200, orjson.dumps(doc), CT_JSON


def _freeze_heap() -> None:
    """Move what is loaded at startup (MLflow, pandas, the model) out of the collector's sight.

    Requests allocate many short-lived objects (a 1,000-row JSON body is 11,000 of them),
    so full collections come often; each one walked MLflow's and pandas' heap (~360,000
    objects, ~270 ms) and stalled every request in flight: that was the p99. Frozen
    objects are skipped. This runs once, at startup, not at each swap: a collection then
    would be that same stall in the middle of the traffic. Models loaded later are not
    frozen, so the collector reclaims a swapped-out one as usual.
    """
    import gc

    gc.collect()
    gc.freeze()


_KNOWN_PATHS = frozenset(
    ["/invocations", "/ping", "/health", "/version", "/model", "/metrics", "/refresh"]
)


def _parse_content_type(raw: str) -> str:
    parts = [p.strip() for p in raw.split(";")]
    mime = parts[0].lower()
    params = {}
    for part in parts[1:]:
        if part:
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
    charset = params.pop("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise BadInput("the scoring server only supports UTF-8", 415, "UNSUPPORTED_MEDIA_TYPE")
    if params:
        raise BadInput(
            f"unrecognized content type parameters: {', '.join(params)}",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        )
    return mime


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # MLflow's parser (stdlib json) also takes NaN/Infinity and big integers.
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise BadInput(f"malformed JSON: {exc}") from None


def _read_table(body: bytes, mime: str, schema: Any) -> Any:
    import pandas as pd

    try:
        if mime == CT_PARQUET:
            return pd.read_parquet(io.BytesIO(body))
        text = body.decode("utf-8")
        if schema is not None and schema.has_input_names():
            from mlflow.pyfunc.scoring_server import parse_csv_input

            return parse_csv_input(io.StringIO(text), schema=schema)
        return pd.read_csv(io.StringIO(text))
    except UnicodeDecodeError as exc:
        raise BadInput(f"the CSV body is not UTF-8: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any parser error is the body's fault
        msg = getattr(exc, "message", None) or str(exc)
        raise BadInput(f"could not read the {mime} body: {msg.splitlines()[0]}") from None


def _score_general(model: LoadedModel, payload: Any, mime: str) -> tuple[Any, Any, bytes]:
    """Parse with MLflow's scoring-server functions and call pyfunc.predict."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server as ss

    unwrapped = False
    try:
        if mime == CT_JSON:
            parsed = ss._parse_json_data(payload, model.pyfunc.metadata, model.input_schema)
            data, params, unwrapped = parsed.data, parsed.params, parsed.is_unified_llm_input
        else:
            data, params = payload, None
    except MlflowException as exc:
        raise BadInput(_first_line(exc.message)) from None
    except Exception as exc:  # noqa: BLE001 - MLflow's parser raising is the payload's fault
        raise BadInput(f"could not parse the input: {_first_line(str(exc))}") from None
    try:
        predictions = model.pyfunc.predict(data, params=params)
    except MlflowException as exc:
        raise BadInput(
            f"the model could not score this input: {_first_line(exc.message)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - as MLflow: a predict error is a 400
        raise BadInput(
            f"the model could not score this input: {type(exc).__name__}: {_first_line(str(exc))}"
        ) from None
    if unwrapped:
        out = orjson.dumps(_jsonable(predictions), default=_orjson_default, option=_DUMP_OPTS)
    else:
        out = dump_predictions(predictions)
    return data, predictions, out


def _first_line(text: str, limit: int = 500) -> str:
    """A short message: MLflow's errors quote the whole input before the real reason."""
    text = text.strip() if text else ""
    if "Error: " in text:
        text = text.rsplit("Error: ", 1)[1]
    text = " ".join(text.splitlines()[:3])
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- entry points


def create_app(
    tracking_uri: str,
    model_name: str,
    *,
    alias: str = "champion",
    poll_seconds: float = 5.0,
    token_env: str | None = None,
    inference_log: str | None = None,
    shadow: bool = False,
    max_body_bytes: int = 50 * 2**20,
    registry_uri: str | None = None,
    log_flush_seconds: float = 5.0,
) -> ServingApp:
    """The ASGI app serving ``model_name@alias``; the model loads at lifespan startup."""
    token = None
    if token_env:
        token = os.environ.get(token_env, "")
        if not token:
            raise UserError(
                f"serve: token_env is {token_env} but that environment variable is empty or unset"
            )
    if poll_seconds <= 0:
        raise UserError("serve: poll_seconds must be positive")
    return ServingApp(
        tracking_uri,
        model_name,
        alias=alias,
        poll_seconds=poll_seconds,
        token=token,
        inference_log=inference_log,
        shadow=shadow,
        max_body_bytes=max_body_bytes,
        registry_uri=registry_uri,
        log_flush_seconds=log_flush_seconds,
    )


def app_from_env() -> ServingApp:
    """uvicorn factory for ``--workers N``: each worker builds its own app and poller."""
    _logs_to_stderr()
    options = json.loads(os.environ[_ENV_CONFIG])
    return create_app(options.pop("tracking_uri"), options.pop("model_name"), **options)


def _logs_to_stderr() -> None:
    # A server's stdout carries nothing; MLflow's prints and our logs both go to stderr.
    sys.stdout = sys.stderr
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def serve(
    tracking_uri: str,
    model_name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "warning",
    access_log: bool = False,
    **options: Any,
) -> None:
    """Run uvicorn; with ``workers > 1`` every worker follows the alias on its own."""
    import uvicorn

    _logs_to_stderr()
    if workers < 1:
        raise UserError("serve: workers must be at least 1")
    # Fail fast on bad options before uvicorn forks workers.
    create_app(tracking_uri, model_name, **options).stop()
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        uvicorn.run(create_app(tracking_uri, model_name, **options), **common)
        return
    os.environ[_ENV_CONFIG] = json.dumps(
        {"tracking_uri": tracking_uri, "model_name": model_name, **options}
    )
    uvicorn.run("retrainer.serving:app_from_env", factory=True, workers=workers, **common)
