"""Every key of retrainer.yaml as a pydantic model, with its default and its checks.

Relative paths (sqlite store, data files, entrypoint files) resolve against the config
file's folder, so a config works from any working directory. `${VAR}` is expanded from
the environment when the file is read; expanded values are never printed back.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from retrainer.config.names import did_you_mean, model_name_problem
from retrainer.events import NOTIFY_EVENTS
from retrainer.where import WhereError, parse_where

DEFAULT_CONFIG = "retrainer.yaml"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

REGRESSION_METRICS = ("mse", "rmse", "mae", "r2", "mape")
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
KNOWN_METRICS = REGRESSION_METRICS + CLASSIFICATION_METRICS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataConfig(_Strict):
    source: str = Field(description="csv/parquet path or glob, SQLAlchemy URL (with query), "
                        "python:module:function, sklearn:<dataset>, spark:<table or path>")
    target: str = "target"
    query: str | None = None
    features: list[str] | None = None
    drop: list[str] = []
    # pandas: rows come to this process. spark (with a spark: source): drift statistics run
    # in Spark and a Spark-DataFrame entrypoint trains in Spark; rows reach the driver only
    # for a pandas entrypoint, and then at most max_rows of them.
    engine: Literal["pandas", "spark"] = "pandas"
    max_rows: int = Field(5_000_000, ge=1, description="most rows collected to one process")
    sample: bool = Field(False, description="above max_rows: a uniform sample of max_rows "
                         "(said in the decision record) instead of an error")

    @model_validator(mode="after")
    def _spark_engine_reads_spark(self) -> DataConfig:
        if self.engine == "spark" and not self.source.startswith("spark:"):
            raise ValueError("data.engine 'spark' needs a spark: source (spark:<table> or "
                             "spark:<path>); other sources are read by pandas")
        return self


class SparkConfig(_Strict):
    """The one Spark session retrainer starts (data sources, drift, batch scoring).

    A cluster is configuration: `master` (local[*], yarn, k8s://…, spark://…) and any
    `spark.*` settings. Where a session is already running (a Databricks job), it is used
    as it is: `master` is ignored and only the runtime-settable `conf` keys are applied.
    """

    master: str = "local[*]"
    app_name: str = "retrainer"
    conf: dict[str, str | int | float | bool] = {}

    @field_validator("master")
    @classmethod
    def _known_master(cls, value: str) -> str:
        value = value.strip()
        if not re.fullmatch(r"local(\[(\*|\d+)(,\s*\d+)?\])?|yarn|(spark|k8s|mesos)://\S+",
                            value):
            raise ValueError(f"{value!r}: expected local[*], local[N], yarn, "
                             "spark://host:port or k8s://…")
        return value

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key.startswith("spark."):
                raise ValueError(f"key {key!r}: Spark settings start with 'spark.'")
        return value


class SplitConfig(_Strict):
    method: Literal["random", "time", "hash"] = "random"
    test_size: float = Field(0.25, gt=0.0, lt=1.0)
    seed: int = 42
    column: str | None = Field(None, description="time column (time) or id column (hash)")

    @model_validator(mode="after")
    def _column_for_time(self) -> SplitConfig:
        if self.method == "time" and not self.column:
            raise ValueError("split.method 'time' needs split.column (the time column)")
        return self


class TrainConfig(_Strict):
    estimator: str | None = None
    entrypoint: str | None = None
    params: dict[str, Any] = {}
    task: Literal["auto", "regression", "classification"] = "auto"

    @model_validator(mode="after")
    def _one_of(self) -> TrainConfig:
        if bool(self.estimator) == bool(self.entrypoint):
            raise ValueError("set exactly one of train.estimator or train.entrypoint")
        return self


class MetricThreshold(_Strict):
    """MLflow MetricThreshold semantics."""

    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool | None = None


class ImportanceShift(_Strict):
    """How far the challenger's feature-importance ranking may move from the champion's."""

    ndcg_min: float = Field(0.9, gt=0.0, le=1.0,
                            description="SageMaker Clarify's attribution-drift bound")
    rank_correlation_min: float | None = Field(None, ge=-1.0, le=1.0)
class SliceSpec(_Strict):
    """One slice definition: every value of `column`, numeric `bins` of it, or a filter."""

    column: str | None = None
    bins: list[float] | None = None
    name: str | None = None
    where: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SliceSpec:
        if bool(self.column) == bool(self.where):
            raise ValueError("a slice needs exactly one of column (every value, or bins) or "
                             "where (a filter expression)")
        if self.bins is not None:
            if not self.column:
                raise ValueError("bins go with column")
            if len(self.bins) < 2 or any(hi <= lo for lo, hi in zip(self.bins, self.bins[1:])):
                raise ValueError(f"bins {self.bins} must be at least two increasing edges")
        if self.where is not None:
            try:
                parse_where(self.where)
            except WhereError as err:
                raise ValueError(f"where {self.where!r}: {err}") from None
        return self

    @property
    def label(self) -> str:
        """How the slice (or, for a column, its values' prefix) is named in records."""
        return self.name or self.column or self.where or ""


class GateConfig(_Strict):
    mode: Literal["enforce", "dry_run", "disabled"] = "enforce"
    thresholds: dict[str, MetricThreshold] = {}
    all_metrics_improve: bool = True
    min_clean_rows: int = Field(30, ge=1)
    confidence: float | None = Field(None, gt=0.0, lt=1.0)
    # superiority: the challenger must beat the champion (the article's rule);
    # non_inferiority: promote unless confidently worse by more than `margin` (relative).
    policy: Literal["superiority", "non_inferiority"] = "superiority"
    margin: float = Field(0.01, ge=0.0, lt=1.0)
    slices: list[SliceSpec] = []
    slice_min_rows: int = Field(30, ge=2)
    max_slice_degradation: float = Field(0.05, ge=0.0)
    unknown_training_rows: Literal["warn", "refuse"] = "warn"
    schema_policy: Literal["enforce", "allow"] = Field("enforce", alias="schema")
    bootstrap: int = Field(1000, ge=100)
    # Off by default; the shift is measured and reported either way.
    max_importance_shift: ImportanceShift | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _slice_names_unique(self) -> GateConfig:
        labels = [s.label for s in self.slices]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ValueError(f"two slice definitions are named {twice[0]!r}: give one a name")
        return self

    @property
    def level(self) -> float:
        """The confidence of the intervals: non-inferiority and slices need one, 0.95 if unset."""
        return self.confidence if self.confidence is not None else 0.95


class PromoteConfig(_Strict):
    alias: str = "champion"
    legacy_stages: bool = False
    lock: str | None = Field(None, description="postgresql://… for an advisory lock")
    lock_timeout: float = 120.0
    # required: a challenger that passes the gate waits for `retrainer approve` instead
    # of becoming champion.
    approval: Literal["none", "required"] = "none"


class ExplainConfig(_Strict):
    # auto: mean |SHAP| in every judgement when the `explain` extra (shap) is installed;
    # off: permutation importance only (shap's import and TreeSHAP cost seconds a cycle).
    shap: Literal["auto", "off"] = "auto"

    @field_validator("shap", mode="before")
    @classmethod
    def _yaml_off_is_false(cls, value: Any) -> Any:
        # YAML reads a bare `off` (and `no`, `false`) as False, `on` as True.
        if isinstance(value, bool):
            return "auto" if value else "off"
        return value


class DriftConfig(_Strict):
    # The dataset drifts when the drifted columns carry this share of the champion's
    # importance, or a key column drifts, or (on_prediction) its predictions drift.
    share: float = Field(0.5, gt=0.0, le=1.0)
    key_columns: list[str] = []
    on_prediction: bool = True
    thresholds: dict[str, float] = {}
    bins: int = Field(10, ge=2, le=100)


class ScheduleTrigger(_Strict):
    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError on odd keys
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. "
                             "Europe/Berlin or UTC)") from None
        return value


class DriftTrigger(_Strict):
    data: str
    query: str | None = None


class NewVersionTrigger(_Strict):
    poll_seconds: float = Field(60.0, gt=0)
    webhook_secret_env: str | None = None


class PerformanceTrigger(_Strict):
    data: str
    query: str | None = None
    max_degradation: float = Field(0.10, ge=0.0)


class TriggersConfig(_Strict):
    schedule: ScheduleTrigger | None = None
    drift: DriftTrigger | None = None
    new_version: NewVersionTrigger | None = None
    performance: PerformanceTrigger | None = None
    # A failed cycle is retried after backoff_seconds, doubling per attempt (capped at
    # max_backoff_seconds), and given up (recorded) after max_attempts.
    backoff_seconds: float = Field(60.0, gt=0)
    max_backoff_seconds: float = Field(6 * 3600.0, gt=0)
    max_attempts: int = Field(5, ge=1)


class ServeConfig(_Strict):
    poll_seconds: float = Field(5.0, gt=0)
    token_env: str | None = None
    inference_log: str | None = None
    shadow: bool = False
    max_body_mb: float = Field(50.0, gt=0)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class NotifyConfig(_Strict):
    """One receiver of notifications: a URL that takes a JSON POST."""

    url: str
    events: list[str] = list(NOTIFY_EVENTS)
    secret_env: str | None = Field(None, description="env var holding the HMAC secret")
    format: Literal["slack", "json"] = "json"
    timeout_seconds: float = Field(3.0, gt=0, le=60)
    attempts: int = Field(3, ge=1, le=10)

    # Messages never echo the value: a webhook URL or a misplaced secret is a credential.
    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL"
                             + (" (is the ${VAR} it names empty?)" if not value.strip() else ""))
        if not parts.hostname:
            raise ValueError("the URL has no host")
        return value.strip()

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one event (or leave `events` out for all)")
        for name in value:
            if name not in NOTIFY_EVENTS:
                raise ValueError(f"unknown event {name!r}{did_you_mean(name, NOTIFY_EVENTS)}; "
                                 f"known: {', '.join(NOTIFY_EVENTS)}")
        return value

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must name an environment variable that holds the secret "
                             "(e.g. RETRAINER_NOTIFY_SECRET), not the secret itself")
        return value


class FeedbackGuardrail(_Strict):
    """Labelled rows that arrive while a version is on trial: both models scored offline."""

    data: str = Field(description="any data source form, with the target column")
    query: str | None = None
    time_column: str | None = Field(None, description="only rows at or after the canary's "
                                    "start (or the promotion) count; default: every row")
    max_degradation: float = Field(0.05, ge=0.0, description="relative, on the primary metric")
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    min_rows: int = Field(30, ge=2)


class GuardrailsConfig(_Strict):
    max_model_error_rate_increase: float | None = Field(0.01, ge=0.0, le=1.0)
    max_latency_p99_ratio: float | None = Field(1.5, gt=0.0)
    max_prediction_psi: float | None = Field(None, gt=0.0)
    feedback: FeedbackGuardrail | None = None


class RolloutConfig(_Strict):
    mode: Literal["instant", "canary"] = "instant"
    canary_share: float = Field(0.1, gt=0.0, lt=1.0)
    sticky_header: str | None = None
    bake_minutes: float = Field(60.0, ge=0.0)
    min_requests: int = Field(500, ge=0)
    guardrails: GuardrailsConfig = GuardrailsConfig()
    guard_after_promotion_minutes: float = Field(1440.0, ge=0.0)

    @field_validator("sticky_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise ValueError(f"not an HTTP header name: {value!r}")
        return value


class Config(_Strict):
    model: str
    experiment: str | None = None
    tracking_uri: str | None = None
    registry_uri: str | None = None
    data: DataConfig
    split: SplitConfig = SplitConfig()
    train: TrainConfig
    metrics: list[str] = ["mse", "rmse", "r2"]
    gate: GateConfig = GateConfig()
    promote: PromoteConfig = PromoteConfig()
    drift: DriftConfig = DriftConfig()
    triggers: TriggersConfig = TriggersConfig()
    serve: ServeConfig = ServeConfig()
    notify: list[NotifyConfig] = []
    rollout: RolloutConfig = RolloutConfig()
    spark: SparkConfig = SparkConfig()
    explain: ExplainConfig = ExplainConfig()

    # Not a config key: the folder relative paths resolve against.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("model")
    @classmethod
    def _registrable_name(cls, value: str) -> str:
        problem = model_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one metric")
        for name in value:
            if name not in KNOWN_METRICS:
                raise ValueError(f"unknown metric {name!r}{did_you_mean(name, KNOWN_METRICS)}; "
                                 f"known: {', '.join(KNOWN_METRICS)}")
        return value

    @model_validator(mode="after")
    def _threshold_metrics_known(self) -> Config:
        for name in self.gate.thresholds:
            if name not in KNOWN_METRICS:
                raise ValueError(f"gate.thresholds: unknown metric {name!r}"
                                 f"{did_you_mean(name, KNOWN_METRICS)}")
        return self

    @model_validator(mode="after")
    def _canary_needs_the_request_log(self) -> Config:
        if self.rollout.mode == "canary" and not self.serve.inference_log:
            raise ValueError("rollout.mode 'canary' needs serve.inference_log: the request "
                             "log the guardrails read (shared by every server)")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.model

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    def resolve_path(self, value: str) -> str:
        """A path relative to the config file's folder; URLs and absolute paths pass through."""
        if "://" in value or os.path.isabs(value):
            return value
        return str(self.base_dir / value)
