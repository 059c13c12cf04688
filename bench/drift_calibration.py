"""Calibration of the drift defaults: false alarms on undrifted data, detection of shifts.

    .venv/bin/python bench/drift_calibration.py [--quick]

False alarms: reference and current drawn from the same ten-column generator the
tests use (normal, lognormal, uniform, Poisson, binary, bimodal, t(2), 5 % missing,
categorical with rare levels, boolean); every flagged column is a false alarm.
Detection: one N(0, 1) column, current shifted by 0.2 or 0.5 sd. Writes
bench/results/drift_calibration.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from drift_helpers import mixed_frame  # noqa: E402
from retrainer.drift.profile import build_profile  # noqa: E402
from retrainer.drift.statistics import compare  # noqa: E402


def false_alarms(n: int, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    flagged = checks = any_flagged = dataset = 0
    for _ in range(reps):
        ref, cur = mixed_frame(rng, n), mixed_frame(rng, n)
        report = compare(build_profile(ref), cur)
        k = len(report.drifted_columns)
        flagged += k
        checks += len(report.columns)
        any_flagged += k > 0
        dataset += report.dataset_drift
    return {
        "rows": n,
        "repetitions": reps,
        "column_checks": checks,
        "column_false_alarm_rate": flagged / checks,
        "any_column_false_alarm_rate": any_flagged / reps,
        "dataset_false_alarm_rate": dataset / reps,
    }


def detection(n: int, shift: float, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        ref = pd.DataFrame({"x": rng.normal(size=n)})
        cur = pd.DataFrame({"x": rng.normal(size=n) + shift})
        hits += compare(build_profile(ref), cur).columns[0].drifted
    return {"rows": n, "shift_sd": shift, "repetitions": reps, "detection_rate": hits / reps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    q = 5 if args.quick else 1
    plan_fa = [(200, 2000 // q), (1_000, 1000 // q), (10_000, 300 // q), (1_000_000, 3)]
    plan_det = [
        (200, 0.5, 500 // q),
        (1_000, 0.2, 500 // q),
        (1_000, 0.5, 500 // q),
        (10_000, 0.2, 300 // q),
        (10_000, 0.5, 100 // q),
        (1_000_000, 0.2, 3),
        (1_000_000, 0.1, 3),
        (1_000_000, 0.02, 3),
    ]
    out: dict = {"false_alarms": [], "detection": []}
    t0 = time.perf_counter()
    for n, reps in plan_fa:
        row = false_alarms(n, reps, seed=n)
        out["false_alarms"].append(row)
        print(
            f"no drift  n={n:>9,}  reps={reps:>5}  per column {row['column_false_alarm_rate']:.4f}"
            f"  any of 10 {row['any_column_false_alarm_rate']:.4f}"
            f"  dataset {row['dataset_false_alarm_rate']:.4f}",
            flush=True,
        )
    for n, shift, reps in plan_det:
        row = detection(n, shift, reps, seed=int(n * shift) + 1)
        out["detection"].append(row)
        print(
            f"shift {shift:>4} sd  n={n:>9,}  reps={reps:>4}  detected {row['detection_rate']:.3f}",
            flush=True,
        )
    out["seconds"] = time.perf_counter() - t0
    path = HERE / "results" / "drift_calibration.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"written {path.relative_to(HERE.parent)} in {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
