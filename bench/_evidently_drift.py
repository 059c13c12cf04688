"""Evidently's data drift report on the bench data (runs in bench/.venv-evidently).

evidently 0.7.x needs pandas < 3, so bench/drift.py runs this file with the
interpreter of its own virtual environment and reads one JSON line from stdout.
Usage: python _evidently_drift.py REFERENCE.parquet CURRENT.parquet
"""

from __future__ import annotations

import json
import sys
import time


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ref_path, cur_path = sys.argv[1], sys.argv[2]
    t_start = time.perf_counter()
    import evidently
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    # Reset the peak-RSS mark so the compute phase is measured on its own.
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    rss_before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    doc = snapshot.dict()
    t1 = time.perf_counter()
    hwm = _status_kib("VmHWM")
    flagged = []
    for metric in doc["metrics"]:
        cfg = metric.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift") and metric["value"] >= cfg["threshold"]:
            flagged.append(cfg["column"])
    print(
        json.dumps(
            {
                "tool": f"evidently {evidently.__version__} (pandas {pd.__version__})",
                "check_seconds": t1 - t0,
                "process_seconds": time.perf_counter() - t_start,
                "compute_peak_mib": max(hwm - rss_before, 0) / 1024,
                "flagged": sorted(flagged),
                "values": {
                    m["config"]["column"]: m["value"]
                    for m in doc["metrics"]
                    if m.get("config", {}).get("type", "").endswith("ValueDrift")
                },
            }
        )
    )


if __name__ == "__main__":
    main()
