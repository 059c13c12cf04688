"""Imported by the CLI fork server (`cli_runner.PRELOAD`): do once, in the server, the
per-process work every forked command would otherwise repeat.

- MLflow maps every installed distribution to its modules (~0.4 s each time a model is
  logged): filled here once.
- Modules the commands import lazily, on their way (measured: a forked `retrainer run`
  imported 174 more modules, ~0.15 CPU-s; `status`, `history`, `watch` ~70 each): GitPython
  (MLflow records the source's git commit; importing it also runs `git version`), the
  sqlite dialect, alembic's command module (store set-up), filelock, OpenTelemetry's
  metrics SDK (MLflow's tracing), narwhals' pandas backend (the report's charts), and
  retrainer's own report, history, explain and serving modules. Importing is all this
  does: no store, engine, thread or atexit handler is created in the server.
"""

import contextlib
import importlib

from mlflow.utils.requirements_utils import _init_modules_to_packages_map

_init_modules_to_packages_map()

LAZY = [
    "git", "sqlalchemy.dialects.sqlite", "alembic.command", "alembic.config", "filelock",
    "opentelemetry.sdk.metrics", "opentelemetry.sdk.metrics.export",
    "narwhals._pandas_like.namespace", "pyarrow.pandas_compat", "pandas.core.methods.to_dict",
    "rich.panel", "rich._emoji_codes", "typer._adapters",
    "mlflow.store.tracking.sqlalchemy_workspace_store",
    "mlflow.store.model_registry.sqlalchemy_workspace_store",
    "mlflow.tracing.processor.otel", "mlflow.tracing.export.utils",
    "mlflow.utils.search_logged_model_utils", "mlflow.models.display_utils",
    "mlflow.pyfunc.scoring_server",
    "retrainer.diagnostics", "retrainer.explain", "retrainer.history", "retrainer.importance",
    "retrainer.lineage", "retrainer.report.html", "retrainer.report.charts",
    "retrainer.report.markdown", "retrainer.report.publish", "retrainer.shap_values",
    "retrainer.status", "retrainer.serving.server",
]
for _name in LAZY:
    # A module an optional extra brings, or one a library version renamed: not needed.
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)
