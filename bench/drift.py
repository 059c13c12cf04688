"""Drift check, side by side: retrainer vs Evidently's data drift report.

200k and 1M rows x 20 numeric columns; six columns of the current data are changed
(+0.5 sd, +0.1 sd, x1.5 scale, +0.02 sd, exp(), +0.2 sd), fourteen are not. The data
is generated once and shared through parquet files; each tool runs in its own
subprocess so that wall time and peak memory are its own (Evidently 0.7 needs
pandas < 3, so it runs in bench/.venv-evidently, created here when missing).

    .venv/bin/python bench/drift.py [--sizes 200000,1000000] [--skip-evidently]

Prints a table and writes bench/results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_PY = EVIDENTLY_VENV / "bin" / "python"
RESULTS = HERE / "results" / "drift.json"
N_COLUMNS = 20
SEED = 20240601

#: column -> (what was done to the current data, transform of the standardised values)
CHANGES = {
    "f00": "+0.5 sd",
    "f01": "+0.1 sd",
    "f02": "x1.5 scale",
    "f03": "+0.02 sd",
    "f04": "exp()",
    "f05": "+0.2 sd",
}


def make_data(n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reference and current columns; column i ~ N(mu_i, sd_i) before the change."""
    rng = np.random.default_rng(SEED)
    mu = rng.uniform(-2, 2, N_COLUMNS)
    sd = rng.uniform(0.5, 2.0, N_COLUMNS)
    ref, cur = {}, {}
    for i in range(N_COLUMNS):
        name = f"f{i:02d}"
        z_ref = rng.standard_normal(n)
        z_cur = rng.standard_normal(n)
        ref[name] = mu[i] + sd[i] * z_ref
        change = CHANGES.get(name)
        if change == "x1.5 scale":
            z_cur = z_cur * 1.5
        elif change and change.endswith(" sd"):
            z_cur = z_cur + float(change.split()[0])
        x = mu[i] + sd[i] * z_cur
        cur[name] = np.exp(x) if change == "exp()" else x
    return ref, cur


def write_data(tmp: Path, sizes: list[int]) -> dict[int, tuple[Path, Path]]:
    """One draw at the largest size; smaller sizes are its first rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref, cur = make_data(max(sizes))
    paths = {}
    for n in sizes:
        p_ref, p_cur = tmp / f"ref_{n}.parquet", tmp / f"cur_{n}.parquet"
        pq.write_table(pa.table({k: v[:n] for k, v in ref.items()}), p_ref)
        pq.write_table(pa.table({k: v[:n] for k, v in cur.items()}), p_cur)
        paths[n] = (p_ref, p_cur)
    return paths


def ensure_evidently() -> None:
    if EVIDENTLY_PY.exists():
        return
    print("creating bench/.venv-evidently (evidently 0.7 needs pandas < 3) ...", file=sys.stderr)
    # The system python3, not this venv's: a venv made from a venv python works too,
    # but would tie the bench environment to this one's lifetime.
    subprocess.run(["python3", "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run(
        [
            str(EVIDENTLY_PY),
            "-m",
            "pip",
            "install",
            "--quiet",
            "evidently==0.7.*",
            "pandas<3",
            "pyarrow",
        ],
        check=True,
    )


def run_child_rusage(cmd: list[str]) -> dict:
    """Run one measured subprocess; its own peak RSS comes from os.wait4's rusage."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({proc.returncode}):\n{stderr[-3000:]}")
    doc = json.loads(stdout.strip().splitlines()[-1])
    doc["wall_seconds"] = wall
    doc["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return doc


def retrainer_child(ref_path: str, cur_path: str) -> None:
    """The retrainer side, run as `bench/drift.py --child REF CUR`."""
    t_start = time.perf_counter()
    import pandas as pd

    from retrainer.drift.profile import build_profile
    from retrainer.drift.statistics import compare

    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    rss_before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    profile = build_profile(ref)
    t1 = time.perf_counter()
    report = compare(profile, cur)
    doc = report.to_dict()
    t2 = time.perf_counter()
    hwm = _status_kib("VmHWM")
    print(
        json.dumps(
            {
                "tool": f"retrainer (pandas {pd.__version__})",
                "check_seconds": t2 - t0,
                "profile_seconds": t1 - t0,
                "compare_seconds": t2 - t1,
                "process_seconds": time.perf_counter() - t_start,
                "compute_peak_mib": max(hwm - rss_before, 0) / 1024,
                "flagged": sorted(report.drifted_columns),
                "values": {c["column"]: c["value"] for c in doc["columns"]},
                "thresholds": {c["column"]: c["threshold"] for c in doc["columns"]},
            }
        )
    )


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200000,1000000")
    ap.add_argument("--skip-evidently", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("REF", "CUR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        retrainer_child(*args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    if not args.skip_evidently:
        ensure_evidently()
    results: dict = {
        "columns": N_COLUMNS,
        "changes": CHANGES,
        "runs": [],
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="retrainer-bench-drift-") as tmp:
        t = time.perf_counter()
        paths = write_data(Path(tmp), sizes)
        results["data_seconds"] = time.perf_counter() - t
        print(f"data generated and written once in {results['data_seconds']:.1f} s")
        for n in sizes:
            ref, cur = (str(p) for p in paths[n])
            run = {"rows": n}
            run["retrainer"] = run_child_rusage([sys.executable, __file__, "--child", ref, cur])
            if not args.skip_evidently:
                script = str(HERE / "_evidently_drift.py")
                run["evidently"] = run_child_rusage([str(EVIDENTLY_PY), script, ref, cur])
                run["speedup"] = (
                    run["evidently"]["check_seconds"] / run["retrainer"]["check_seconds"]
                )
            results["runs"].append(run)
            _print_run(run)
    results["load_average_after"] = os.getloadavg()
    print(
        f"load average before/after (2 cores; other work inflates both tools' times): "
        f"{results['load_average_before'][0]:.1f} / {results['load_average_after'][0]:.1f}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"\nwritten {RESULTS.relative_to(HERE.parent)}")


def _print_run(run: dict) -> None:
    n = run["rows"]
    print(f"\n{n:,} rows x {N_COLUMNS} columns")
    head = (
        f"{'tool':<40} {'check s':>9} {'process s':>10} {'peak RSS MiB':>13} {'compute +MiB':>13}"
    )
    print(head)
    print("-" * len(head))
    for key in ("retrainer", "evidently"):
        r = run.get(key)
        if not r:
            continue
        print(
            f"{r['tool']:<40} {r['check_seconds']:>9.3f} {r['wall_seconds']:>10.2f} "
            f"{r['peak_rss_mib']:>13.0f} {r['compute_peak_mib']:>13.0f}"
        )
    if "speedup" in run:
        ev, rt = run["evidently"], run["retrainer"]
        print(
            f"speed-up, Evidently / retrainer: check {run['speedup']:.0f}x, whole process "
            f"{ev['wall_seconds'] / rt['wall_seconds']:.0f}x; peak RSS "
            f"{rt['peak_rss_mib'] / ev['peak_rss_mib']:.2f} of Evidently's"
        )
    for key in ("retrainer", "evidently"):
        r = run.get(key)
        if r:
            flagged = ", ".join(f"{c} ({CHANGES.get(c, 'unchanged')})" for c in r["flagged"])
            print(f"  {key} flagged: {flagged or 'nothing'}")
    if "evidently" in run:
        a, b = set(run["retrainer"]["flagged"]), set(run["evidently"]["flagged"])
        print(
            f"  flagged by both: {sorted(a & b)}; only retrainer: {sorted(a - b)}; "
            f"only Evidently: {sorted(b - a)}"
        )


if __name__ == "__main__":
    main()
