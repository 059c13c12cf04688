"""retrainer's side of bench/cycle.py: the same two steps through `run_cycle`. Prints JSON.

`_retrainer_cycle.py PROJECT` runs the diabetes example; `_retrainer_cycle.py PROJECT
ROWS.parquet` runs the project's own config on those rows (version 1 on all but the last
20 rows, then all of them) and times the team's model apart: every `fit` and `predict`
of the configured estimator class is clocked, those inside permutation importance
separately, so the cycle splits into the team's fit, its predictions, and retrainer's
own work.
"""

import json
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

warnings.filterwarnings("ignore")
t_import = time.perf_counter()
import pandas as pd  # noqa: E402

from retrainer import importance  # noqa: E402
from retrainer.config import load  # noqa: E402
from retrainer.cycle import run_cycle  # noqa: E402
from retrainer.registry import connect  # noqa: E402
from retrainer.training import build_estimator  # noqa: E402

imports = time.perf_counter() - t_import
project = Path(sys.argv[1])
rows_file = Path(sys.argv[2]) if len(sys.argv) > 2 else None
cfg = load(project / "retrainer.yaml")
client = connect(cfg)

clock: dict[str, float] = defaultdict(float)
rows: dict[str, int] = defaultdict(int)
in_importance = [False]


def timed(cls: type, name: str) -> None:
    """Clock every call of cls.name (the team's model), by where it was called from."""
    original = getattr(cls, name)

    def wrapper(self, X, *args, **kwargs):  # noqa: ANN001, ANN202 - the model's own API
        key = f"{name}_importance" if in_importance[0] else name
        start = time.perf_counter()
        try:
            return original(self, X, *args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - start
            rows[key] += len(X)

    setattr(cls, name, wrapper)


if rows_file is not None:
    cls = type(build_estimator(cfg.train.estimator, dict(cfg.train.params)))
    timed(cls, "fit")
    timed(cls, "predict")
    measure = importance.permutation_importance

    def flagged(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        in_importance[0] = True
        try:
            return measure(*args, **kwargs)
        finally:
            in_importance[0] = False

    importance.permutation_importance = flagged
    full = pd.read_parquet(rows_file)
    week_ago = project / "data" / "week_ago.parquet"
    full.iloc[:-20].to_parquet(week_ago, index=False)
    del full
else:
    full = pd.read_csv(project / "data" / "diabetes.csv")
    week_ago = project / "data" / "week_ago.csv"
    full.iloc[:-20].to_csv(week_ago, index=False)

t0 = time.perf_counter()
first = run_cycle(cfg, data=str(week_ago), client=client)
step1 = time.perf_counter() - t0
clock.clear()
rows.clear()
t0 = time.perf_counter()
second = run_cycle(cfg, client=client)
step2 = time.perf_counter() - t0
out = {"imports": imports, "initial_deploy": step1, "retrain_cycle": step2,
       "decisions": [first["decision"], second["decision"]]}
if rows_file is not None:
    out["model_seconds"] = dict(clock)
    out["model_rows"] = dict(rows)
    out["clean_rows"] = second["holdout"]["clean_rows"]
    out["bootstrap"] = (second.get("differences") or {}).get(cfg.metrics[0], {}).get("bootstrap")
print(json.dumps(out))
