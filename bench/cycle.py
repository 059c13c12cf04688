"""A retrain cycle vs the source article's own script, side by side on the same kind of store.

Both start from a fresh, already-created sqlite store (MLflow's table migrations are not
timed) and do the same two steps: deploy the initial model (all rows but the last 20),
then retrain on all rows, compare and promote. retrainer does more in its cycle (fair
clean-holdout scoring, bootstrap intervals, fingerprints, drift profile, journaled alias
moves); the target is to be no slower. Run: `.venv/bin/python bench/cycle.py [--repeats N]`.

`--rows N` runs both on the same N rows x 20 columns of synthetic regression data instead
(HistGradientBoostingRegressor, max_iter 20; retrainer with `split: hash`, the article
with its random split, both holding out 25%), and splits retrainer's retrain cycle into
the team's fit, the team's predictions, and retrainer's own work (everything else). The
target at 1M rows: the cycle faster than the article's, and retrainer's own work at most
the fit time.
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
    import os

    import retrainer

    # The children import the retrainer this process imported (a worktree's, say).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(retrainer.__file__).resolve().parents[1]),
         *filter(None, [os.environ.get("PYTHONPATH")])])}
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True, env=env)
    wall = time.perf_counter() - start
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


SYNTHETIC_CONFIG = """\
model: synthetic-hgb
tracking_uri: sqlite:///mlflow.db
data: {source: data/rows.parquet, target: target}
split: {method: hash, test_size: 0.25, seed: 42}
train:
  estimator: sklearn.ensemble.HistGradientBoostingRegressor
  params: {max_iter: 20}
metrics: [mse, rmse, r2]
"""


def synthetic_rows(n: int, path: Path, columns: int = 20, seed: int = 0) -> None:
    """n rows of a seeded regression problem: linear, one sine, one interaction, noise."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, columns))
    y = X @ rng.normal(size=columns) + 2 * np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] \
        + rng.normal(size=n)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(columns)])
    frame["target"] = y
    frame.to_parquet(path, index=False)


def one_repeat(base: Path, n_rows: int | None, shap: str = "auto") -> tuple[dict, dict]:
    from retrainer.project import write_example

    (base / "article").mkdir()
    proj = base / "retrainer"
    data = None
    if n_rows:
        (proj / "data").mkdir(parents=True)
        data = proj / "data" / "rows.parquet"
        synthetic_rows(n_rows, data)
        (proj / "retrainer.yaml").write_text(SYNTHETIC_CONFIG + f"explain: {{shap: {shap}}}\n")
    else:
        write_example(proj, "diabetes")
    uri = fresh_store(base / "article")
    doc, wall = run_json([sys.executable, str(HERE / "_article_script.py"), uri,
                          *([str(data)] if data else [])], base / "article")
    article = {**doc, "process_wall": wall}
    fresh_store(proj)
    doc, wall = run_json([sys.executable, str(HERE / "_retrainer_cycle.py"), str(proj),
                          *([str(data)] if data else [])], proj)
    return article, {**doc, "process_wall": wall}


def own_work(run: dict) -> dict:
    """The retrain cycle split into the team's fit, its predictions and retrainer's work."""
    secs = run["model_seconds"]
    fit = secs.get("fit", 0.0)
    predict = secs.get("predict", 0.0)
    importance = secs.get("predict_importance", 0.0)
    own = run["retrain_cycle"] - fit - predict - importance
    return {"fit_s": fit, "predict_s": predict, "importance_predict_s": importance,
            "own_s": own, "own_per_fit": own / fit if fit else float("nan"),
            "own_with_importance_per_fit": (own + importance) / fit if fit else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shap", choices=("auto", "off"), default="auto",
                        help="retrainer's explain.shap (the article computes no explanations)")
    parser.add_argument("--rows", type=int, default=None,
                        help="synthetic rows x 20 columns (HistGradientBoosting) instead of "
                             "the diabetes example")
    args = parser.parse_args()
    if args.rows is not None and args.rows < 100:
        parser.error("--rows must be at least 100")
    size = (f"{args.rows:,} rows x 20 columns, HistGradientBoostingRegressor(max_iter=20)"
            if args.rows else "the diabetes example (442 rows x 10 columns, Ridge)")
    if args.rows:
        size += f", explain.shap: {args.shap}"
    print(f"bench/cycle.py: {size}, median of {args.repeats}", file=sys.stderr)

    rows: dict[str, list[dict]] = {"article": [], "retrainer": []}
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            article, ours = one_repeat(Path(tmp), args.rows, args.shap)
            rows["article"].append(article)
            rows["retrainer"].append(ours)
        print(f"repeat {i + 1}/{args.repeats} done", file=sys.stderr)

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[side])

    summary: dict = {"size": size}
    print(size)
    title = f"step (median of {args.repeats})"
    print(f"{title:<28}{'article s':>11}{'retrainer s':>13}"
          f"{'ratio':>9}")
    for key in ("initial_deploy", "retrain_cycle", "process_wall"):
        a, r = med("article", key), med("retrainer", key)
        summary[key] = {"article_s": a, "retrainer_s": r, "speedup": a / r}
        print(f"{key:<28}{a:>11.2f}{r:>13.2f}{a / r:>8.1f}x")
    if args.rows:
        splits = [own_work(r) for r in rows["retrainer"]]
        parts = {k: statistics.median(s[k] for s in splits) for k in splits[0]}
        summary["retrain_cycle_split"] = parts
        print(f"retrainer's retrain cycle: team's fit {parts['fit_s']:.2f} s, team's predict "
              f"{parts['predict_s']:.2f} s, importance predictions "
              f"{parts['importance_predict_s']:.2f} s, retrainer's own work "
              f"{parts['own_s']:.2f} s = {parts['own_per_fit']:.2f}x the fit "
              f"({parts['own_with_importance_per_fit']:.2f}x counting the importance "
              "predictions as its own)")
        first = rows["retrainer"][0]
        print(f"clean holdout {first['clean_rows']:,} rows; bootstrap {first['bootstrap']}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    name = f"cycle_{args.rows}.json" if args.rows else "cycle.json"
    (out / name).write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    print(f"article decisions: promoted={rows['article'][0]['promoted']}; retrainer decisions: "
          f"{rows['retrainer'][0]['decisions']}")


if __name__ == "__main__":
    main()
