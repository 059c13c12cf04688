"""A retrain cycle vs the source article's own script, side by side on the same kind of store.

Both start from a fresh, already-created sqlite store (MLflow's table migrations are not
timed) and do the same two steps: deploy the initial model (all rows but the last 20),
then retrain on all rows, compare and promote. retrainer does more in its cycle (fair
clean-holdout scoring, bootstrap intervals, fingerprints, drift profile, journaled alias
moves); the target is to be no slower. Run: `.venv/bin/python bench/cycle.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fresh_store(folder: Path) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # run the migrations, untimed
    return uri


def run_json(cmd: list[str], cwd: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from retrainer.project import write_example

    rows: dict[str, list[dict]] = {"article": [], "retrainer": []}
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            (base / "article").mkdir()
            uri = fresh_store(base / "article")
            doc, wall = run_json([sys.executable, str(HERE / "_article_script.py"), uri],
                                 base / "article")
            rows["article"].append({**doc, "process_wall": wall})
            proj = base / "retrainer"
            write_example(proj, "diabetes")
            fresh_store(proj)
            doc, wall = run_json([sys.executable, str(HERE / "_retrainer_cycle.py"), str(proj)],
                                 proj)
            rows["retrainer"].append({**doc, "process_wall": wall})
        print(f"repeat {i + 1}/{args.repeats} done", file=sys.stderr)

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[side])

    summary = {}
    title = f"step (median of {args.repeats})"
    print(f"{title:<28}{'article s':>11}{'retrainer s':>13}"
          f"{'ratio':>9}")
    for key in ("initial_deploy", "retrain_cycle", "process_wall"):
        a, r = med("article", key), med("retrainer", key)
        summary[key] = {"article_s": a, "retrainer_s": r, "speedup": a / r}
        print(f"{key:<28}{a:>11.2f}{r:>13.2f}{a / r:>8.1f}x")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "cycle.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    print(f"article decisions: promoted={rows['article'][0]['promoted']}; retrainer decisions: "
          f"{rows['retrainer'][0]['decisions']}")


if __name__ == "__main__":
    main()
