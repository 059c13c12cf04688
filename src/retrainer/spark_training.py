"""Training in Spark: an entrypoint that declares it takes a Spark DataFrame gets one.

With ``data.engine: spark`` and a ``train.entrypoint`` whose first parameter is annotated
``pyspark.sql.DataFrame``, the training rows never leave Spark:

    def train(df: DataFrame, target: str, params: dict) -> PipelineModel

gets the training split (features and target) as a Spark DataFrame and returns a fitted
Spark ML model, logged with ``mlflow.spark``. The split is ``split: hash`` computed in
Spark with the very hash the pandas engine uses (`data.hash_holdout_mask`, per Arrow
batch), so a row's side is the same on either engine and no fingerprints are needed.

What comes to the driver: the holdout (at most ``data.max_rows`` rows, or a stated
uniform sample with ``data.sample``), which both models score for the judgement (a
Spark model through its pyfunc, one Spark job per call), and a bounded uniform sample
of the training rows for the drift reference profile.
"""

from __future__ import annotations

import inspect
import logging
import time
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer.data import Dataset, load_callable, split_label, validate
from retrainer.errors import UserError

if TYPE_CHECKING:
    from retrainer.config import Config
    from retrainer.training import TrainedModel

log = logging.getLogger("retrainer")

#: Training rows sampled (uniformly) for the drift reference profile.
PROFILE_SAMPLE = 100_000


@dataclass
class SparkRows(Dataset):
    """Rows that live in Spark: `frame` is the part on the driver, `rows` the full count."""

    rows: int = 0
    spark_df: Any = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.rows


@dataclass
class SparkSplit:
    rows: SparkRows  # the whole source (frame: the holdout, for column checks)
    train: SparkRows  # frame: the profile's sample of the training rows
    holdout: Dataset  # on the driver


def spark_entrypoint(cfg: Config) -> Any | None:
    """The team's entrypoint when it wants a Spark DataFrame (and data.engine is spark)."""
    if cfg.data.engine != "spark" or not cfg.train.entrypoint:
        return None
    file, _, name = cfg.train.entrypoint.rpartition(":")
    if not file or not name:
        return None  # training.fit says what is wrong with it
    func = load_callable(file, name, cfg.base_dir, what="train.entrypoint")
    return func if wants_spark_dataframe(func) else None


def wants_spark_dataframe(func: Any) -> bool:
    """True when the first parameter is annotated as a pyspark.sql DataFrame."""
    params = list(inspect.signature(func).parameters.values())
    if not params:
        return False
    try:
        hint = typing.get_type_hints(func).get(params[0].name)
    except Exception:  # noqa: BLE001 - unresolvable string annotations: read the text
        hint = params[0].annotation
    if isinstance(hint, str):
        return "pyspark" in hint or (hint.endswith("DataFrame") and "pyspark" in str(
            getattr(func, "__globals__", {}).get(hint.rpartition(".")[2], "")))
    return getattr(hint, "__module__", "").startswith("pyspark.sql") \
        and getattr(hint, "__name__", "") == "DataFrame"


def prepare(cfg: Config) -> SparkSplit:
    """Read the source in Spark, check it, split it there; bring the holdout to the driver."""
    from pyspark.sql import functions as F

    from retrainer.spark_data import collect, read_spark, uniform_sample

    if cfg.split.method != "hash":
        raise UserError("training in Spark needs split.method: hash (a row's side must be "
                        "recomputable without collecting the rows); set split: {method: hash}")
    source = cfg.data.source
    sdf = read_spark(source, cfg.spark, cfg.base_dir)
    sdf = sdf.toDF(*[str(c) for c in sdf.columns])
    target = cfg.data.target
    if target not in sdf.columns:
        raise UserError(f"target column {target!r} not found in {source!r}; columns: "
                        f"{', '.join(sdf.columns[:12])}")
    features = list(cfg.data.features or [c for c in sdf.columns
                                          if c != target and c not in cfg.data.drop])
    absent = [c for c in features if c not in sdf.columns]
    if absent:
        raise UserError(f"feature column {absent[0]!r} not found in {source!r}")
    counts = sdf.agg(F.count(F.lit(1)).alias("n"),
                     F.count(F.when(F.col(_q(target)).isNull(), 1)).alias("missing")).collect()[0]
    if counts["missing"]:
        raise UserError(f"target column {target!r} has {counts['missing']} missing values in "
                        f"{source!r}; drop or fill them first")
    flagged = _with_holdout_flag(sdf, cfg, sorted([*features, target]))
    train_sdf = flagged.where(~F.col("__holdout")).drop("__holdout")
    hold_sdf = flagged.where(F.col("__holdout")).drop("__holdout")
    got = collect(hold_sdf, f"the holdout of {source}", cfg.data.max_rows, cfg.data.sample,
                  cfg.split.seed)
    holdout = validate(got.frame, cfg.data, source, min_rows=2)
    holdout.sample_note = got.sample_note
    n_train = int(counts["n"]) - got.source_rows
    if n_train < 2:
        raise UserError(f"the hash split left {n_train} training rows; more data needed")
    sample = uniform_sample(train_sdf, min(PROFILE_SAMPLE, cfg.data.max_rows), n_train,
                            cfg.split.seed).toPandas()
    train = SparkRows(sample, target, features, source, rows=n_train, spark_df=train_sdf)
    rows = SparkRows(holdout.frame, target, features, source, rows=int(counts["n"]),
                     spark_df=sdf, sample_note=got.sample_note)
    return SparkSplit(rows, train, holdout)


def _with_holdout_flag(sdf: Any, cfg: Config, row_columns: list[str]) -> Any:
    """`data.hash_holdout_mask` per Arrow batch: the pandas engine's split, in Spark."""
    from collections.abc import Iterator

    import pandas as pd
    from pyspark.sql.types import BooleanType, StructField, StructType

    from retrainer.data import hash_holdout_mask

    split = cfg.split

    def flag(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield batch.assign(__holdout=hash_holdout_mask(batch, split, row_columns))

    schema = StructType([*sdf.schema.fields, StructField("__holdout", BooleanType(), False)])
    return sdf.mapInPandas(flag, schema=schema)


def fit_and_log(cfg: Config, prepared: SparkSplit, func: Any, *, cycle_id: str, trigger: str,
                reason: str | None = None) -> TrainedModel:
    """Fit in Spark, log the Spark model, score it on the holdout as the article logs."""
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    from retrainer import metrics as mx
    from retrainer import progress, registry, training
    from retrainer.drift.profile import PROFILE_ARTIFACT, build_profile
    from retrainer.redact import redact

    train, holdout = prepared.train, prepared.holdout
    params = dict(cfg.train.params)
    n_args = len(inspect.signature(func).parameters)
    started = time.perf_counter()
    data = train.spark_df.select(*[_q(c) for c in [*train.features, train.target]])
    try:
        model = func(data, train.target, params) if n_args >= 3 else func(data, train.target)
    except Exception as err:  # noqa: BLE001 - the team's code: show its message
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise UserError(f"train.entrypoint {cfg.train.entrypoint} raised "
                        f"{type(err).__name__}: {first}") from None
    fit_seconds = time.perf_counter() - started
    if model is None or not hasattr(model, "transform"):
        raise UserError(f"train.entrypoint {cfg.train.entrypoint} takes a Spark DataFrame: it "
                        f"must return a fitted Spark ML model (.transform), got "
                        f"{type(model).__name__}")
    progress.step("logging the Spark model to MLflow")
    tags = {f"{training.TAG_PREFIX}model": cfg.model, f"{training.TAG_PREFIX}cycle_id": cycle_id,
            f"{training.TAG_PREFIX}trigger": trigger, f"{training.TAG_PREFIX}kind": "cycle",
            f"{training.TAG_PREFIX}engine": "spark"}
    if reason:
        tags[f"{training.TAG_PREFIX}trigger_reason"] = redact(reason[:5000]) or ""
    with mlflow.start_run(experiment_id=registry.experiment_id(cfg), tags=tags) as run:
        example = holdout.X.head(5)
        info = mlflow.spark.log_model(model, artifact_path=training.MODEL_NAME,
                                      input_example=example,
                                      pip_requirements=[*training.pip_requirements("none"),
                                                        "pyspark"])
        scorer = mlflow.pyfunc.load_model(info.model_uri)  # pandas in, a Spark job inside
        task = training.task_of(cfg, scorer, holdout.y)
        problem = mx.check_task(cfg.metrics, task)
        if problem:
            raise UserError(problem)
        pred = np.asarray(scorer.predict(holdout.X))
        logged = training.score(cfg.metrics, holdout.y, pred)
        signature = scorer.metadata.signature or infer_signature(example, pred[:5])
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_params({"estimator": cfg.train.entrypoint, "split": split_label(cfg.split),
                           "train_rows": len(train), "holdout_rows": len(holdout),
                           "engine": "spark"})
        mlflow.log_metrics({m: v for m, v in logged.items() if np.isfinite(v)})
        mlflow.log_metric("fit_seconds", fit_seconds)
        # Training rows are not fingerprinted: the hash split recomputes their side.
        profile = build_profile(train.X, pred, bins=cfg.drift.bins)
        mlflow.log_dict(profile, PROFILE_ARTIFACT)
        mlflow.log_dict({"features": train.features, "target": train.target, "task": task,
                         "labels": None, "metrics": cfg.metrics, "engine": "spark",
                         "profile_rows": len(train.frame)}, "retrainer/training.json")
    return training.TrainedModel(
        model=scorer, task=task, run_id=run.info.run_id, model_uri=info.model_uri,
        model_id=getattr(info, "model_id", None), metrics_as_logged=logged,
        fit_seconds=fit_seconds, signature=signature, labels=None)


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
