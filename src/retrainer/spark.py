"""One local Spark session for the process (the `spark` extra)."""

from __future__ import annotations

import os
import sys
from typing import Any

from retrainer.errors import UserError


def get_spark(app_name: str = "retrainer") -> Any:
    """The active SparkSession, or a new local one.

    Spark's workers must run this interpreter (it has pandas and the model's libraries),
    so PYSPARK_PYTHON is set before the session starts.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError("Spark support needs the spark extra: pip install 'retrainer[spark]'") \
            from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    return (SparkSession.builder.appName(app_name)
            .master(os.environ.get("RETRAINER_SPARK_MASTER", "local[2]"))
            .config("spark.ui.enabled", "false")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .getOrCreate())
