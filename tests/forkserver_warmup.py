"""Imported by the CLI fork server (`cli_runner.PRELOAD`): fill MLflow's lazy per-process
caches once, so each forked command does not rebuild them (~0.4 s each, every time a
model is logged: MLflow maps every installed distribution to its modules)."""

from mlflow.utils.requirements_utils import _init_modules_to_packages_map

_init_modules_to_packages_map()
