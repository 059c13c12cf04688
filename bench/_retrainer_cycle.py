"""retrainer's side of bench/cycle.py: the same two steps through `run_cycle`. Prints JSON."""

import json
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
t_import = time.perf_counter()
import pandas as pd  # noqa: E402

from retrainer.config import load  # noqa: E402
from retrainer.cycle import run_cycle  # noqa: E402
from retrainer.registry import connect  # noqa: E402

imports = time.perf_counter() - t_import
project = Path(sys.argv[1])
cfg = load(project / "retrainer.yaml")
client = connect(cfg)
full = pd.read_csv(project / "data" / "diabetes.csv")
week_ago = project / "data" / "week_ago.csv"
full.iloc[:-20].to_csv(week_ago, index=False)

t0 = time.perf_counter()
first = run_cycle(cfg, data=str(week_ago), client=client)
step1 = time.perf_counter() - t0
t0 = time.perf_counter()
second = run_cycle(cfg, client=client)
step2 = time.perf_counter() - t0
print(json.dumps({"imports": imports, "initial_deploy": step1, "retrain_cycle": step2,
                  "decisions": [first["decision"], second["decision"]]}))
