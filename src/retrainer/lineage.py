"""The training rows as an MLflow dataset input (lineage), without MLflow's per-cell pass.

`mlflow.log_input(mlflow.data.from_pandas(frame))` infers the dataset's schema by asking,
cell by cell in Python, whether each value is missing (16M calls, ~16 s at 1M x 20
columns) and hashes the frame again for its digest. Everything it needs is known already:
the column types come from a small sample (as the model signature does), whether a column
has missing values is one vectorised `isna` per column, and the digest is an md5 of the
row fingerprints the run logs anyway. The entity logged carries the same fields MLflow's
own `PandasDataset` does (name, digest, source, source type, schema as
``{"mlflow_colspec": ...}``, profile with ``num_rows``), so the MLflow UI and
`provenance.dataset_inputs` read it like any other.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from retrainer.redact import redact

if TYPE_CHECKING:
    import numpy as np

    from retrainer.data import Dataset

#: The input tag MLflow's UI shows as the dataset's context (mlflow.utils.mlflow_tags).
CONTEXT_TAG = "mlflow.data.context"
#: Rows the column types are inferred from (MLflow's own digest looks at 10,000).
SCHEMA_SAMPLE_ROWS = 1_000


def digest(row_fingerprints: np.ndarray, columns: list[str]) -> str:
    """8 hex characters, like MLflow's digests: the same rows in the same order, the same
    digest; any changed, added or dropped row or column changes it."""
    import numpy as np

    md5 = hashlib.md5(usedforsecurity=False)
    md5.update(np.ascontiguousarray(row_fingerprints, dtype=np.uint64).tobytes())
    md5.update(np.int64(len(row_fingerprints)).tobytes())
    for name in columns:
        md5.update(name.encode())
    return md5.hexdigest()[:8]


def schema(frame: Any, columns: list[str]) -> Any:
    """An `mlflow.types.Schema` of `columns`: types from a sample, `required` from every row.

    MLflow marks a column optional when any value is missing; `isna().any()` is one
    vectorised pass per column where MLflow's inference makes a Python call per cell.
    """
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, Schema

    sample = frame[columns].head(SCHEMA_SAMPLE_ROWS)
    inferred = infer_signature(sample).inputs
    has_missing = frame[columns].isna().any()
    return Schema([ColSpec(type=spec.type, name=spec.name,
                           required=not bool(has_missing[spec.name]))
                   for spec in inferred.inputs])


def dataset_entity(train: Dataset, row_fingerprints: np.ndarray) -> Any:
    """The `mlflow.entities.Dataset` for the training rows (what log_input would build)."""
    from mlflow.entities import Dataset as DatasetEntity

    columns = [*train.features, train.target]
    source = _resolved_source(train.source)
    return DatasetEntity(
        name=(redact(train.source) or "")[-200:],
        digest=digest(row_fingerprints, columns),
        source_type=source._get_source_type(),
        source=source.to_json(),
        schema=json.dumps({"mlflow_colspec": schema(train.frame, columns).to_dict()}),
        profile=json.dumps({"num_rows": len(train), "num_elements": len(train) * len(columns)}))


def log_training_dataset(run_id: str, train: Dataset, row_fingerprints: np.ndarray,
                         client: Any = None) -> None:
    """Log the training rows as the run's `training` dataset input."""
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, InputTag

    client = client or MlflowClient()
    entity = dataset_entity(train, row_fingerprints)
    client.log_inputs(run_id, [DatasetInput(dataset=entity,
                                            tags=[InputTag(CONTEXT_TAG, "training")])])


def _resolved_source(source: str) -> Any:
    """A source MLflow can resolve (a URL or an existing path), else the code that ran.

    Redacted: lineage is a record, not a way in, so no credentials go to the store.
    """
    import os

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if "://" in source or os.path.exists(source):
        try:
            return resolve_dataset_source(redact(source) or "")
        except Exception:  # noqa: BLE001 - a scheme no MLflow source type knows
            pass
    from mlflow.tracking.context import registry

    return CodeDatasetSource(tags=registry.resolve_tags())
