"""Batch scoring on one machine: `retrainer predict --engine pandas` vs raw `model.predict`.

A Parquet file of ROWS x 20 float64 columns (default 10M rows, 1.6 GB in memory) is
scored by the registered champion, a HistGradientBoostingRegressor (max_iter 20, fitted
on 100k rows; `--model ridge` for a model whose predict is almost free). Measured, each
tool in its own process so that peak RSS is its own (os.wait4's rusage):

- `retrainer predict --json` as a user runs it: peak RSS, and the scoring time apart
  from the I/O (its summary's `timings`: reading, scoring = Arrow -> array + predict +
  the output columns, writing);
- the baseline: the same rows read into memory at once, then `model.predict` on them
  (the fitted estimator itself, no MLflow), timed alone.

Both run with OMP_WAIT_POLICY=PASSIVE (`retrainer predict` sets it unless the user did):
OpenMP threads left spinning after each chunk's predict take the CPU from the reading and
writing between chunks; on this 2-core machine, 3M rows in 100k chunks took 5.2-6.8 s
of predict with PASSIVE, 9.0-11.2 s unset and 12.8-18.7 s with ACTIVE (a busy host).

The ratio is retrainer's scoring throughput over raw predict's (target >= 0.8); a second
`retrainer predict` on a tenth of the rows shows peak memory does not grow with the file.

    .venv/bin/python bench/batch.py [--rows 10000000] [--chunk-rows 100000] [--model hgb]

Prints a table and writes bench/results/batch.json.
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
RESULTS = HERE / "results" / "batch.json"
N_COLUMNS = 20
PIECE = 1_000_000  # rows generated and written at a time (one Parquet row group each)
MODEL = "bench-batch"


def columns() -> list[str]:
    return [f"f{i:02d}" for i in range(N_COLUMNS)]


def write_data(path: Path, rows: int, seed: int = 7) -> None:
    """ROWS x 20 standard normals, written a piece at a time (the generator stays small)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, PIECE):
            n = min(PIECE, rows - start)
            x = rng.standard_normal((n, N_COLUMNS))
            table = pa.table({c: x[:, i] for i, c in enumerate(columns())})
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def register_model(root: Path, kind: str) -> Path:
    """Fit the model on 100k fresh rows, log and register it as champion; the config path."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    rng = np.random.default_rng(11)
    X = pd.DataFrame(rng.standard_normal((100_000, N_COLUMNS)), columns=columns())
    y = X.to_numpy() @ rng.normal(size=N_COLUMNS) + np.sin(3 * X["f00"]) + rng.normal(
        scale=0.3, size=len(X))
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        model = Ridge().fit(X, y)
    else:
        from sklearn.ensemble import HistGradientBoostingRegressor

        model = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(X, y)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-batch")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(X.head(100), model.predict(X.head(100))),
            input_example=X.head(5), pip_requirements=["scikit-learn", "skops"],
            # skops, as retrainer's training logs it; the bench made this tree itself.
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
            registered_model_name=MODEL)
    MlflowClient(uri).set_registered_model_alias(MODEL, "champion", info.registered_model_version)
    config = root / "retrainer.yaml"
    config.write_text(
        f"model: {MODEL}\ntracking_uri: {uri}\n"
        "data: {source: in.parquet, target: y}\n"
        "train: {estimator: sklearn.linear_model.Ridge}\n")
    return config


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run one subprocess; its last stdout line is JSON; add wall time and peak RSS."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({code}):\n{stderr[-3000:]}")
    doc = json.loads(stdout[stdout.index("{"):]) if stdout.lstrip().startswith("{") else \
        json.loads(stdout.strip().splitlines()[-1])
    doc["wall_seconds"] = wall
    doc["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return doc


def raw_child(data: str, config: str) -> None:
    """The baseline, run as `bench/batch.py --raw-child DATA CONFIG`: predict in memory."""
    t_start = time.perf_counter()
    import mlflow
    import pyarrow.parquet as pq
    from mlflow import MlflowClient

    uri = next(line.split(": ", 1)[1] for line in Path(config).read_text().splitlines()
               if line.startswith("tracking_uri"))
    mv = MlflowClient(uri).get_model_version_by_alias(MODEL, "champion")
    mlflow.set_tracking_uri(uri)
    model = mlflow.sklearn.load_model(f"models:/{MODEL}/{mv.version}")
    t0 = time.perf_counter()
    table = pq.read_table(data)
    x = np.column_stack([table.column(c).to_numpy() for c in columns()])
    del table
    t1 = time.perf_counter()
    pred = model.predict(x)
    t2 = time.perf_counter()
    print(json.dumps({"rows": len(pred), "read_seconds": t1 - t0, "predict_seconds": t2 - t1,
                      "process_seconds": time.perf_counter() - t_start}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--chunk-rows", type=int, default=None,
                    help="retrainer's chunk size (default: predict's own)")
    ap.add_argument("--model", choices=("hgb", "ridge"), default="hgb")
    ap.add_argument("--raw-child", nargs=2, metavar=("DATA", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_child:
        raw_child(*args.raw_child)
        return
    results: dict = {"rows": args.rows, "columns": N_COLUMNS, "model": args.model,
                     "cores": os.cpu_count(), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="retrainer-bench-batch-") as tmp:
        root = Path(tmp)
        small = max(args.rows // 10, 1)
        t = time.perf_counter()
        write_data(root / "in.parquet", args.rows)
        write_data(root / "small.parquet", small)
        config = register_model(root, args.model)
        results["setup_seconds"] = time.perf_counter() - t
        results["input_mib"] = (root / "in.parquet").stat().st_size / 2**20
        print(f"data and model ready in {results['setup_seconds']:.1f} s "
              f"({args.rows:,} rows x {N_COLUMNS}, {results['input_mib']:.0f} MiB Parquet)")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
        chunk = ["--chunk-rows", str(args.chunk_rows)] if args.chunk_rows else []

        def predict(data: str, out: str) -> dict:
            return run_measured([sys.executable, "-m", "retrainer", "predict", "-c", str(config),
                                 "--data", data, "--output", out, "--json", *chunk],
                                env=env)

        runs = {
            "retrainer": predict(str(root / "in.parquet"), str(root / "out.parquet")),
            "retrainer_tenth": predict(str(root / "small.parquet"),
                                       str(root / "small_out.parquet")),
            # The baseline under the same thread policy `retrainer predict` sets for itself.
            "raw": run_measured([sys.executable, __file__, "--raw-child",
                                 str(root / "in.parquet"), str(config)],
                                env={"OMP_WAIT_POLICY": "PASSIVE", **env}),
        }
    results.update(runs)
    rt, raw = runs["retrainer"], runs["raw"]
    timings = rt["timings"]
    results["score_ratio"] = raw["predict_seconds"] / timings["score"]
    results["end_to_end_ratio"] = raw["predict_seconds"] / (
        timings["read"] + timings["score"] + timings["write"])
    results["load_average_after"] = os.getloadavg()
    _print(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"\nwritten {RESULTS.relative_to(HERE.parent)}")


def _print(r: dict) -> None:
    rt, tenth, raw = r["retrainer"], r["retrainer_tenth"], r["raw"]
    t = rt["timings"]
    n = r["rows"]
    print(f"\n{n:,} rows x {r['columns']} float64 columns, model {r['model']}, "
          f"chunks of {rt['chunk_rows']:,} rows, {r['cores']} cores")
    print(f"{'':<34} {'seconds':>8} {'rows/s':>12} {'peak RSS MiB':>13}")
    print(f"{'raw model.predict, in memory':<34} {raw['predict_seconds']:>8.2f} "
          f"{n / raw['predict_seconds']:>12,.0f} {raw['peak_rss_mib']:>13.0f}")
    print(f"{'  (its read into memory)':<34} {raw['read_seconds']:>8.2f}")
    print(f"{'retrainer predict: scoring':<34} {t['score']:>8.2f} {n / t['score']:>12,.0f} "
          f"{rt['peak_rss_mib']:>13.0f}")
    print(f"{'  reading (Arrow, streamed)':<34} {t['read']:>8.2f}")
    print(f"{'  writing (Parquet)':<34} {t['write']:>8.2f}")
    print(f"{'  loading the model':<34} {t['load_model']:>8.2f}")
    print(f"{'  whole process':<34} {rt['wall_seconds']:>8.2f}")
    print(f"throughput, retrainer scoring / raw predict: {r['score_ratio']:.2f}x "
          f"(read + score + write: {r['end_to_end_ratio']:.2f}x)")
    print(f"peak RSS: {rt['peak_rss_mib']:.0f} MiB on {n:,} rows, {tenth['peak_rss_mib']:.0f} MiB "
          f"on {tenth['rows']:,} rows (raw in memory: {raw['peak_rss_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
