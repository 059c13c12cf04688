"""Fit the challenger with the team's approved code and log it as an MLflow run.

Two ways to say what to train ("deploy code", not "deploy model"):
- ``train.estimator``: an import path to a scikit-learn-compatible estimator or Pipeline,
  built with ``train.params``;
- ``train.entrypoint``: ``file.py:function(X_train, y_train, params) -> fitted model``.

The model is fitted before any run is opened, so a script that fails leaves no trace.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import metrics as mx
from retrainer import registry
from retrainer.data import Dataset, fingerprints, load_callable, split_label
from retrainer.errors import UserError
from retrainer.redact import redact

if TYPE_CHECKING:
    import numpy as np

    from retrainer.config import Config

log = logging.getLogger("retrainer")

FINGERPRINTS = "retrainer/train_fingerprints.npy"
MODEL_NAME = "model"
TAG_PREFIX = "retrainer."


@dataclass
class TrainedModel:
    model: Any
    task: str
    run_id: str
    model_uri: str
    model_id: str | None
    metrics_as_logged: dict[str, float]
    fit_seconds: float
    signature: Any = None
    labels: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_estimator(path: str, params: dict[str, Any]) -> Any:
    module_name, _, cls_name = path.rpartition(".")
    if not module_name:
        raise UserError(f"train.estimator {path!r}: expected an import path like "
                        "sklearn.linear_model.Ridge")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001
        raise UserError(f"train.estimator {path!r} does not import: {err}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise UserError(f"train.estimator {path!r} does not import: {module_name} has no "
                        f"{cls_name!r}")
    try:
        return cls(**params)
    except TypeError as err:
        raise UserError(f"train.params do not fit {path}: {err}") from None


def fit(cfg: Config, train: Dataset) -> tuple[Any, float]:
    """Fit with the configured estimator or entrypoint; the team's errors become UserErrors."""
    params = dict(cfg.train.params)
    start = time.perf_counter()
    if cfg.train.estimator:
        estimator = build_estimator(cfg.train.estimator, params)
        try:
            model = estimator.fit(train.X, train.y)
        except Exception as err:  # noqa: BLE001 - a fit failure is the data's or params' fault
            raise UserError(_fit_error(cfg.train.estimator, train, err)) from None
        model = model if model is not None else estimator
    else:
        spec = cfg.train.entrypoint or ""
        file, _, func_name = spec.rpartition(":")
        if not file or not func_name:
            raise UserError(f"train.entrypoint {spec!r}: expected file.py:function")
        func = load_callable(file, func_name, cfg.base_dir, what="train.entrypoint")
        n_args = len(inspect.signature(func).parameters)
        try:
            model = func(train.X, train.y, params) if n_args >= 3 else func(train.X, train.y)
        except Exception as err:  # noqa: BLE001 - the team's code: show its message
            raise UserError(_fit_error(f"train.entrypoint {spec}", train, err)) from None
        if model is None or not hasattr(model, "predict"):
            raise UserError(f"train.entrypoint {spec} must return a fitted model with .predict(), "
                            f"got {type(model).__name__}")
    return model, time.perf_counter() - start


def _fit_error(path: str, train: Dataset, err: Exception) -> str:
    import pandas as pd

    text_cols = [c for c in train.features
                 if not pd.api.types.is_numeric_dtype(train.frame[c].dtype)]
    msg = f"{type(err).__name__}: {str(err).splitlines()[0]}" if str(err) \
        else type(err).__name__
    if text_cols and isinstance(err, ValueError | TypeError) and "convert" in str(err):
        return (f"{path} cannot take feature column {text_cols[0]!r} "
                f"({train.frame[text_cols[0]].dtype}): {msg}; encode it, e.g. with a Pipeline")
    return f"{path} raised {msg}"


def task_of(cfg: Config, model: Any, y: Any) -> str:
    if cfg.train.task != "auto":
        return cfg.train.task
    from sklearn.base import is_classifier

    try:
        if is_classifier(model):
            return "classification"
    except Exception:  # noqa: BLE001 - the team's own class need not be an sklearn estimator
        if hasattr(model, "predict_proba") or hasattr(model, "classes_"):
            return "classification"
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_bool_dtype(y.dtype):
        return "classification"
    return "regression"


def predict(model: Any, X: Any, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions and, for classifiers that have it, class probabilities."""
    import numpy as np

    pred = np.asarray(model.predict(X))
    proba = None
    if task == "classification" and hasattr(model, "predict_proba"):
        try:
            proba = np.asarray(model.predict_proba(X))
        except Exception:  # noqa: BLE001 - probabilities are optional
            proba = None
    return pred, proba


def score(metrics: list[str], y: Any, pred: Any, proba: Any = None,
          labels: Any = None) -> dict[str, float]:
    import numpy as np

    return {m: mx.compute(m, np.asarray(y), pred, proba, labels) for m in metrics}


def pip_requirements(serialization: str) -> list[str]:
    """Explicit requirements: MLflow's inference spawns a subprocess and costs ~3 s."""
    from importlib.metadata import version

    pkgs = ["mlflow", "scikit-learn", "numpy", "pandas", "scipy"]
    pkgs.append("skops" if serialization == "skops" else "cloudpickle")
    reqs = []
    for pkg in pkgs:
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except Exception:  # noqa: BLE001
            reqs.append(pkg)
    return reqs


def _serialization(model: Any) -> tuple[str, list[str] | None]:
    """skops with the model's own types trusted; cloudpickle for the team's own classes."""
    try:
        import skops.io as sio

        untrusted = sio.get_untrusted_types(data=sio.dumps(model))
    except Exception:  # noqa: BLE001 - skops cannot take every object
        return "cloudpickle", None
    if any(t.startswith(("retrainer_user_", "__main__")) for t in untrusted):
        return "cloudpickle", None
    return "skops", untrusted


def fit_and_log(cfg: Config, train: Dataset, holdout: Dataset, *, cycle_id: str,
                trigger: str, reason: str | None = None) -> TrainedModel:
    """Fit the challenger, score it on its own holdout (as the article logs), log the run."""
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    from retrainer import progress
    from retrainer.drift.profile import PROFILE_ARTIFACT

    model, fit_seconds = fit(cfg, train)
    progress.step("logging the run to MLflow")
    task = task_of(cfg, model, train.y)
    problem = mx.check_task(cfg.metrics, task)
    if problem:
        raise UserError(problem)
    labels = _labels(model, train, task)
    pred, proba = predict(model, holdout.X, task)
    logged = score(cfg.metrics, holdout.y, pred, proba, labels)

    serialization, trusted = _serialization(model)
    if serialization == "cloudpickle":
        _pickle_user_code_by_value(model)
    sample = train.X.head(1000)
    signature = infer_signature(sample, model.predict(sample))
    tags = {f"{TAG_PREFIX}model": cfg.model, f"{TAG_PREFIX}cycle_id": cycle_id,
            f"{TAG_PREFIX}trigger": trigger, f"{TAG_PREFIX}kind": "cycle",
            f"{TAG_PREFIX}task": task}
    if reason:
        tags[f"{TAG_PREFIX}trigger_reason"] = redact(reason[:5000]) or ""
    with mlflow.start_run(experiment_id=registry.experiment_id(cfg), tags=tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in cfg.train.params.items()})
        mlflow.log_params({"estimator": cfg.train.estimator or cfg.train.entrypoint,
                           "split": split_label(cfg.split),
                           "train_rows": len(train), "holdout_rows": len(holdout)})
        mlflow.log_metrics({m: v for m, v in logged.items() if np.isfinite(v)})
        mlflow.log_metric("fit_seconds", fit_seconds)
        info = mlflow.sklearn.log_model(
            model, name=MODEL_NAME, signature=signature, input_example=train.X.head(5),
            pip_requirements=pip_requirements(serialization),
            serialization_format=serialization, skops_trusted_types=trusted)
        train_fps = fingerprints(train)
        _log_training_data(run.info.run_id, train, train_fps)
        with tempfile.TemporaryDirectory() as tmp:
            fp = Path(tmp) / "train_fingerprints.npy"
            np.save(fp, train_fps)
            mlflow.log_artifact(str(fp), artifact_path="retrainer")
        profile = _reference_profile(cfg, train, holdout, model, pred, labels)
        if profile is not None:
            mlflow.log_dict(profile, PROFILE_ARTIFACT)
        mlflow.log_dict({"features": train.features, "target": train.target, "task": task,
                         "labels": _jsonable(labels), "metrics": cfg.metrics},
                        "retrainer/training.json")
    return TrainedModel(model=model, task=task, run_id=run.info.run_id,
                        model_uri=info.model_uri, model_id=getattr(info, "model_id", None),
                        metrics_as_logged=logged, fit_seconds=fit_seconds,
                        signature=signature, labels=labels,
                        extra={"train_fingerprints": train_fps})


def _labels(model: Any, train: Dataset, task: str) -> list[Any] | None:
    if task != "classification":
        return None
    import numpy as np

    classes = getattr(model, "classes_", None)
    return list(classes) if classes is not None else list(np.unique(train.y))


def _jsonable(values: list[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    return [v.item() if hasattr(v, "item") else v for v in values]


def _pickle_user_code_by_value(model: Any) -> None:
    """The team's classes live in a file loaded by path: pickle them by value."""
    import sys

    import cloudpickle

    for name, module in list(sys.modules.items()):
        if name.startswith("retrainer_user_"):
            cloudpickle.register_pickle_by_value(module)


def _log_training_data(run_id: str, train: Dataset, train_fps: np.ndarray) -> None:
    from retrainer import lineage

    try:
        # Not mlflow.log_input: its per-cell schema inference costs ~16 s at 1M rows.
        lineage.log_training_dataset(run_id, train, train_fps)
    except Exception as err:  # noqa: BLE001 - lineage is nice to have, never fatal
        log.warning("could not log the training dataset input: %s", err)


def _reference_profile(cfg: Config, train: Dataset, holdout: Dataset, model: Any,
                       holdout_pred: Any, labels: list[Any] | None) -> dict | None:
    """The training rows, the holdout predictions and the model's importance on the holdout
    (what the drift verdict weighs columns by)."""
    try:
        from retrainer.drift.profile import build_profile
        from retrainer.importance import importance_record

        importance = importance_record(model, holdout.X, holdout.y, cfg.primary_metric,
                                       labels=labels)
        return build_profile(train.X, holdout_pred, bins=cfg.drift.bins, importance=importance)
    except Exception as err:  # noqa: BLE001 - drift is an add-on to the cycle
        log.warning("could not build the reference profile: %s", err)
        return None


def load_training_info(client: Any, run_id: str) -> dict[str, Any]:
    """What a run recorded about its training data (features, target, task)."""
    try:
        path = client.download_artifacts(run_id, "retrainer/training.json")
        return json.loads(Path(path).read_text())
    except Exception:  # noqa: BLE001 - a run not made by retrainer
        return {}


def load_fingerprints(client: Any, run_id: str) -> np.ndarray | None:
    import numpy as np

    try:
        path = client.download_artifacts(run_id, FINGERPRINTS)
    except Exception:  # noqa: BLE001 - a run not made by retrainer has none
        return None
    return np.load(path)
