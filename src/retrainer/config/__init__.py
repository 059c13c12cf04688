"""The retrainer.yaml config.

`schema` holds every key as a pydantic model, `loading` reads and validates the file with
one-line errors, `uris` says which MLflow stores it means, `names` checks model names.
"""

from retrainer.config.loading import load, parse
from retrainer.config.names import MAX_NAME_LENGTH, model_name_problem
from retrainer.config.schema import (
    CLASSIFICATION_METRICS,
    DEFAULT_CONFIG,
    DEFAULT_TRACKING_URI,
    KNOWN_METRICS,
    REGRESSION_METRICS,
    Config,
    DataConfig,
    DriftConfig,
    DriftTrigger,
    ExplainConfig,
    FeedbackGuardrail,
    GateConfig,
    GuardrailsConfig,
    ImportanceShift,
    MetricThreshold,
    NewVersionTrigger,
    NotifyConfig,
    PerformanceTrigger,
    PromoteConfig,
    RolloutConfig,
    ScheduleTrigger,
    ServeConfig,
    SliceSpec,
    SparkConfig,
    SplitConfig,
    TrainConfig,
    TriggersConfig,
)
from retrainer.config.uris import (
    absolutize_uri,
    artifact_root,
    default_registry_uri,
    resolve_registry_uri,
    resolve_tracking_uri,
)

__all__ = [
    "CLASSIFICATION_METRICS", "DEFAULT_CONFIG", "DEFAULT_TRACKING_URI", "KNOWN_METRICS",
    "MAX_NAME_LENGTH", "REGRESSION_METRICS", "Config", "DataConfig", "DriftConfig",
    "DriftTrigger", "ExplainConfig", "FeedbackGuardrail", "GateConfig", "GuardrailsConfig",
    "ImportanceShift",
    "MetricThreshold", "NewVersionTrigger", "NotifyConfig", "PerformanceTrigger",
    "PromoteConfig", "RolloutConfig", "ScheduleTrigger", "ServeConfig", "SliceSpec",
    "SparkConfig", "SplitConfig", "TrainConfig", "TriggersConfig", "absolutize_uri",
    "artifact_root", "default_registry_uri", "load", "model_name_problem", "parse",
    "resolve_registry_uri", "resolve_tracking_uri",
]
