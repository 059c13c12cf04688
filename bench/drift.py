"""Drift check, side by side: retrainer vs Evidently's data drift report.

200k and 1M rows x 20 numeric columns; six columns of the current data are changed
(+0.5 sd, +0.1 sd, x1.5 scale, +0.02 sd, exp(), +0.2 sd), fourteen are not. The data
is generated once and shared through parquet files; each tool runs in its own
subprocess so that wall time and peak memory are its own (Evidently 0.7 needs
pandas < 3, so it runs in bench/.venv-evidently, created here when missing).

Two ratios against Evidently's report computed in-process on the same data:
- retrainer's statistics in-process (profile + compare, what the report costs);
- the whole `retrainer drift --data CURRENT --json` process as a user runs it: start-up
  and imports, the champion and its profile from the registry, reading the data, the
  champion's predictions (a 100k-row uniform sample) and the report. Measured twice:
  the first check after a new champion (which reads it through MLflow and fills the local
  champion cache, drift/champion_cache.py) and later checks (the median of 3; who the
  champion is comes from one sqlite query, its profile and model from the cache, so no
  MLflow import) — a scheduled drift check is almost always the latter. Its champion is a
  HistGradientBoostingRegressor (max_iter 20) trained by `retrainer run` on the
  reference rows plus a target (a 5% holdout, so its profile has 95% of them), once per
  size before the measurement.
Also measured: `retrainer --help` (start-up) and the drift command's import time
(`python -X importtime`, the sum over every module it loads).

    .venv/bin/python bench/drift.py [--sizes 200000,1000000] [--skip-evidently]
                                    [--skip-process]

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

ROOT = Path(__file__).resolve().parent.parent
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
    # The champion's target (for the whole-process run): a linear signal plus noise.
    rng = np.random.default_rng(SEED + 1)
    y = np.column_stack(list(ref.values())) @ rng.normal(size=N_COLUMNS) + rng.normal(
        size=max(sizes))
    paths = {}
    for n in sizes:
        p_ref, p_cur = tmp / f"ref_{n}.parquet", tmp / f"cur_{n}.parquet"
        pq.write_table(pa.table({k: v[:n] for k, v in ref.items()}), p_ref)
        pq.write_table(pa.table({k: v[:n] for k, v in cur.items()}), p_cur)
        pq.write_table(pa.table({**{k: v[:n] for k, v in ref.items()}, "y": y[:n]}),
                       tmp / f"train_{n}.parquet")
        paths[n] = (p_ref, p_cur)
    return paths


def cli_env(cache: Path | None = None) -> dict[str, str]:
    """This checkout's retrainer; `retrainer drift`'s champion cache in `cache` (else off)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "RETRAINER_CACHE_DIR": str(cache) if cache else "off"}


def make_project(tmp: Path, n: int) -> Path:
    """A project whose champion was trained by `retrainer run` on the reference rows."""
    project = tmp / f"project_{n}"
    project.mkdir()
    (project / "retrainer.yaml").write_text(
        "model: drift-bench\n"
        "tracking_uri: sqlite:///mlflow.db\n"
        f"data: {{source: {tmp / f'train_{n}.parquet'}, target: y}}\n"
        "split: {method: random, test_size: 0.05, seed: 1}\n"
        "train:\n"
        "  estimator: sklearn.ensemble.HistGradientBoostingRegressor\n"
        "  params: {max_iter: 20, random_state: 0}\n"
        "metrics: [mse]\n"
        "gate: {mode: disabled, bootstrap: 100}\n")
    done = subprocess.run([sys.executable, "-m", "retrainer", "run", "--json"], cwd=project,
                          env=cli_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"retrainer run failed:\n{done.stderr[-3000:]}")
    return project


def drift_process(project: Path, cur: str, repeat: int = 3) -> dict:
    """`retrainer drift --data CUR --json` as a user runs it: the first check after a new
    champion (an empty cache: through MLflow, filling the cache), then the median of
    `repeat` later checks; and later checks on the first 1,000 rows: what does not grow
    with the data (start-up, imports, finding the champion, loading it)."""
    import shutil

    import pyarrow.parquet as pq

    cache = project / "champion-cache"
    shutil.rmtree(cache, ignore_errors=True)
    first = _drift_once(project, cur, cache)
    runs = sorted((_drift_once(project, cur, cache) for _ in range(repeat)),
                  key=lambda r: r["wall_seconds"])
    if any(r["flagged"] != first["flagged"] or r["verdict"] != first["verdict"]
           for r in runs):
        raise RuntimeError("a cached check disagrees with the first one")
    small = project / "first_1000.parquet"
    pq.write_table(pq.read_table(cur).slice(0, 1000), small)
    median = runs[len(runs) // 2]
    median["all_wall_seconds"] = [r["wall_seconds"] for r in runs]
    median["first_check_seconds"] = first["wall_seconds"]
    median["fixed_seconds"] = min(_drift_once(project, str(small), cache)["wall_seconds"]
                                  for _ in range(repeat))
    return median


def _drift_once(project: Path, cur: str, cache: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "retrainer", "drift", "--data", cur, "--json"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=project, env=cli_env(cache), stdout=out, stderr=err,
                                text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"retrainer drift failed:\n{stderr[-3000:]}")
    doc = json.loads(stdout)
    pred = doc["prediction"] or {}
    return {
        "wall_seconds": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "flagged": sorted(c["column"] for c in doc["columns"] if c["drifted"]),
        "verdict": doc["verdict"],
        "prediction_sample_rows": pred.get("sample_rows"),
    }


def startup_seconds(args: list[str], cwd: Path, repeat: int = 3) -> float:
    """Best wall time of `python -m retrainer ARGS` (start-up, no work), of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "retrainer", *args], cwd=cwd, env=cli_env(),
                       capture_output=True, check=False)
        best = min(best, time.perf_counter() - t0)
    return best


def import_seconds(project: Path, cur: str) -> dict:
    """The drift command's imports, from `python -X importtime` (sum of each module's own
    time), and the largest top-level packages among them."""
    import re
    from collections import Counter

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "retrainer", "drift", "--data", cur,
         "--json"], cwd=project, env=cli_env(project / "champion-cache"),
        capture_output=True, text=True)
    per_package: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \| \s*(\S+)", line)
        if found:
            per_package[found.group(2).split(".")[0]] += int(found.group(1))
    return {"total_seconds": sum(per_package.values()) / 1e6,
            "top": {k: v / 1e6 for k, v in per_package.most_common(8)}}


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
    ap.add_argument("--skip-process", action="store_true",
                    help="skip the whole `retrainer drift` process (and its training)")
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
            if not args.skip_process:
                t = time.perf_counter()
                project = make_project(Path(tmp), n)
                print(f"champion trained by `retrainer run` on {n:,} rows in "
                      f"{time.perf_counter() - t:.0f} s")
                run["process"] = drift_process(project, cur)
                if n == max(sizes):
                    results["imports"] = import_seconds(project, cur)
                    results["help_seconds"] = startup_seconds(["--help"], project)
            run["retrainer"] = run_child_rusage([sys.executable, __file__, "--child", ref, cur])
            if not args.skip_evidently:
                script = str(HERE / "_evidently_drift.py")
                run["evidently"] = run_child_rusage([str(EVIDENTLY_PY), script, ref, cur])
                run["speedup"] = (
                    run["evidently"]["check_seconds"] / run["retrainer"]["check_seconds"]
                )
                if "process" in run:
                    run["process_speedup"] = (
                        run["evidently"]["check_seconds"] / run["process"]["wall_seconds"])
                    run["first_check_speedup"] = (run["evidently"]["check_seconds"]
                                                  / run["process"]["first_check_seconds"])
            results["runs"].append(run)
            _print_run(run)
    results["load_average_after"] = os.getloadavg()
    if "imports" in results:
        imp = results["imports"]
        top = ", ".join(f"{k} {v:.2f}" for k, v in imp["top"].items())
        print(f"\n`retrainer drift` imports (python -X importtime, own times summed): "
              f"{imp['total_seconds']:.2f} s ({top})")
        print(f"`retrainer --help`: {results['help_seconds']:.2f} s (best of 3)")
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
            f"speed-up, Evidently / retrainer: statistics in-process {run['speedup']:.0f}x, "
            f"bench child processes {ev['wall_seconds'] / rt['wall_seconds']:.0f}x; peak RSS "
            f"{rt['peak_rss_mib'] / ev['peak_rss_mib']:.2f} of Evidently's"
        )
    if "process" in run:
        p = run["process"]
        print(f"{'retrainer drift (whole process, median)':<40} {'':>9} "
              f"{p['wall_seconds']:>10.2f} {p['peak_rss_mib']:>13.0f}")
        print(f"  later checks: {', '.join(f'{x:.2f}' for x in p['all_wall_seconds'])} s; "
              f"the first check after a new champion (through MLflow, fills the cache): "
              f"{p['first_check_seconds']:.2f} s; later checks on 1,000 rows (start-up, "
              f"finding and loading the champion): {p['fixed_seconds']:.2f} s")
        if "process_speedup" in run:
            print(f"speed-up, Evidently's report in-process / the whole `retrainer drift` "
                  f"process: {run['process_speedup']:.0f}x (target >= 25x); the first check "
                  f"after a new champion: {run['first_check_speedup']:.0f}x")
        sample = p['prediction_sample_rows']
        on = f"a {sample:,}-row uniform sample" if sample else f"all {n:,} rows"
        print(f"  prediction drift on {on}; "
              f"verdict: {p['verdict']}")
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
