"""One registered version, downloaded, loaded, checked, and how it scores.

Why serving is faster than ``mlflow models serve``: besides a bare ASGI app with orjson
(``app.py``), for scikit-learn models whose signature is all-numeric the request is
converted straight to a numpy array in signature column order (``fast_input.py``) and the
estimator is called directly, skipping MLflow's pandas parsing and schema enforcement
(which cost about a millisecond a request). That fast path is only used when, at load
time, it reproduces ``pyfunc.predict`` on the model's input example; otherwise every
request goes through MLflow's own parser and ``pyfunc.predict``.

Either way, a model that raises on a request that passed parsing and the signature is a
:class:`ModelError`, not the client's mistake.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

from retrainer.serving.fast_input import NumericInput
from retrainer.serving.protocol import (
    CT_JSON,
    BadInput,
    ModelError,
    dump_predictions,
    dump_unwrapped,
    first_line,
)

# Legacy registry stages stand in for an alias that a stage-only registry lacks.
LEGACY_STAGE = {"champion": "Production", "challenger": "Staging"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


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
    plan: NumericInput | None = None  # the signature, when the fast path can read it
    predict_fn: Callable[[Any], Any] | None = None
    has_params: bool = False  # a params schema: requests with params take MLflow's path
    check: str = ""

    @property
    def fast(self) -> bool:
        return self.predict_fn is not None

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The named numeric signature, in order (None for a tensor or another signature)."""
        return self.plan.columns if self.plan is not None else None

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "loaded_at": iso(self.loaded_at),
            "scoring_path": self.mode,
            "check": self.check,
            "input_columns": list(self.columns) if self.columns else None,
        }

    def convert(self, fmt: str, value: Any) -> np.ndarray:
        assert self.plan is not None
        return self.plan.convert(fmt, value)

    def frame_to_array(self, df: Any) -> np.ndarray:
        assert self.plan is not None
        return self.plan.frame_to_array(df)

    def predict_array(self, x: np.ndarray) -> Any:
        """The fast path's predict: the estimator itself, on an array in signature order."""
        assert self.predict_fn is not None
        return self.predict_fn(x)

    def score_general(self, payload: Any, mime: str) -> tuple[Any, Any, bytes]:
        """MLflow's own parsing and ``pyfunc.predict``: (input, predictions, answer body)."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server as ss

        unwrapped = False
        try:
            if mime == CT_JSON:
                parsed = ss._parse_json_data(payload, self.pyfunc.metadata, self.input_schema)
                data, params, unwrapped = parsed.data, parsed.params, parsed.is_unified_llm_input
            else:
                data, params = payload, None
        except MlflowException as exc:
            raise BadInput(first_line(exc.message)) from None
        except Exception as exc:  # noqa: BLE001 - MLflow's parser raising is the payload's fault
            raise BadInput(f"could not parse the input: {first_line(str(exc))}") from None
        try:
            predictions = self.pyfunc.predict(data, params=params)
        except MlflowException as exc:
            # MLflow says INVALID_PARAMETER_VALUE when the input or params fail the signature
            # (or a type-hinted model's own validation): the client's mistake. Any other
            # MlflowException came from inside the model.
            refused = BadInput if exc.error_code == "INVALID_PARAMETER_VALUE" else ModelError
            raise refused(
                f"the model could not score this input: {first_line(exc.message)}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - a 400 as MLflow answers it, the model's fault
            raise ModelError.of(exc) from None
        out = dump_unwrapped(predictions) if unwrapped else dump_predictions(predictions)
        return data, predictions, out


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
        schema = pyfunc.metadata.get_input_schema()
        model = LoadedModel(
            name=name,
            version=str(version),
            run_id=mv.run_id,
            source=mv.source,
            local_dir=local_dir,
            pyfunc=pyfunc,
            loaded_at=time.time(),
            input_schema=schema,
            has_params=pyfunc.metadata.get_params_schema() is not None,
            model_path=path,
            plan=NumericInput.from_schema(schema),
        )
        _check_model(model, meta, path)
        return model
    except BaseException:
        shutil.rmtree(local_dir, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- the check


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

    plan = model.plan
    if model.pyfunc.loader_module != "mlflow.sklearn" or plan is None:
        return
    raw = model.pyfunc.get_raw_model()
    fn_name = meta.flavors.get("python_function", {}).get("predict_fn") or "predict"
    fn = getattr(raw, fn_name, None)
    if fn is None:
        return
    if plan.columns is not None:
        x = plan.frame_to_array(example) if isinstance(example, pd.DataFrame) else None
        if x is None:
            return
        # Fitted on a DataFrame, sklearn warns on every numpy call; the check below proves
        # the predictions are the same, so the warning says nothing here.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        candidates: list[tuple[str, Callable[[np.ndarray], Any]]] = [
            ("sklearn-numpy", fn),
            ("sklearn-frame", _frame_predictor(fn, plan.columns, plan.col_dtypes)),
        ]
    else:
        x = np.asarray(example, dtype=plan.tensor_dtype)
        candidates = [("sklearn-numpy", fn)]
    for mode, candidate in candidates:
        try:
            got = candidate(x)
        except Exception:  # noqa: BLE001 - a path that cannot score the example is not used
            continue
        if _same_predictions(got, reference):
            model.mode, model.predict_fn = mode, candidate
            return


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
