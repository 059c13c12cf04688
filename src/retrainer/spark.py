"""The one Spark session of the process, built from the config's `spark:` section.

Every place retrainer starts Spark (spark: data sources, drift statistics, batch scoring,
Spark training) asks here, so a cluster (Databricks, YARN, Kubernetes) is configuration,
not code. pyspark is imported only when a session is wanted: the CLI starts fast.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError

if TYPE_CHECKING:
    from retrainer.config import SparkConfig

log = logging.getLogger("retrainer")

# Settings every session gets unless the config says otherwise: no web UI to bind a port
# for, Arrow for the few bounded transfers to the driver.
_DEFAULT_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
# Local mode only: the driver must not bind to the machine's other interfaces.
_LOCAL_CONF: dict[str, str] = {
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
}


def get_spark(cfg: SparkConfig | None = None, app_name: str | None = None) -> Any:
    """The running SparkSession, or a new one as `cfg` says (default: ``local[*]``).

    A session already running (a Databricks job, a notebook, a test's shared session) is
    used as it is: its master cannot change, so only the runtime-settable `conf` keys are
    applied and any other is named in one warning.
    """
    from retrainer.config import SparkConfig

    cfg = cfg or SparkConfig()
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError("Spark support needs the spark extra: pip install 'retrainer[spark]'") \
            from None
    # Local workers must run this interpreter (it has pandas and the model's libraries).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None:
        _apply_runtime_conf(active, cfg.conf)
        return active
    conf = {**_DEFAULT_CONF, **(_LOCAL_CONF if cfg.master.startswith("local") else {}),
            **{k: _text(v) for k, v in cfg.conf.items()}}
    builder = SparkSession.builder.appName(app_name or cfg.app_name).master(cfg.master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as err:  # noqa: BLE001 - no Java, an unreachable master: the setup's fault
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UserError(f"cannot start Spark (spark.master {cfg.master!r}): {first}") from None


def _apply_runtime_conf(session: Any, conf: dict[str, Any]) -> None:
    static = []
    for key, value in conf.items():
        try:
            if session.conf.isModifiable(key):
                session.conf.set(key, _text(value))
                continue
        except Exception:  # noqa: BLE001 - an unknown key on this Spark version
            pass
        if session.conf.get(key, None) != _text(value):
            static.append(key)
    if static:
        log.warning("Spark is already running: %s cannot change now (set it on the cluster)",
                    ", ".join(static))


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
