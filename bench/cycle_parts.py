"""The steps of a cycle that grew with the data, before and after, on N rows x 20 columns.

Each step is timed as retrainer did it before issue 14 and as it does it now, on the same
synthetic rows bench/cycle.py --rows uses (75% training rows, 25% holdout):
- the training dataset as an MLflow input: `mlflow.log_input(mlflow.data.from_pandas(...))`
  vs `retrainer.lineage` (a real sqlite store in a temp folder);
- the paired bootstrap of mse, rmse and r2 (1,000 resamples of the holdout): every
  resample drawing every row vs `metrics.bootstrap_intervals`;
- the clean-holdout join: `np.isin` vs `evaluation.among`;
- permutation importance of a 20-tree boosted model (2,000 rows, 5 repeats):
  scikit-learn's `permutation_importance` vs retrainer's stacked predictions.
Run: `.venv/bin/python bench/cycle_parts.py [--rows 1000000]`. Prints seconds and ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cycle import synthetic_rows  # noqa: E402


def clock(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def old_bootstrap(metric: str, y: np.ndarray, a: np.ndarray, b: np.ndarray,
                  resamples: int = 1000) -> None:
    """The vectorised row bootstrap retrainer used before: n rows drawn per resample."""
    rng = np.random.default_rng(0)
    n = len(y)

    def value(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
        if metric == "r2":
            yy = y[idx]
            ss_res = ((yy - p[idx]) ** 2).sum(axis=1)
            return 1 - ss_res / ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        mse = ((y - p) ** 2)[idx].mean(axis=1)
        return np.sqrt(mse) if metric == "rmse" else mse

    for start in range(0, resamples, 256):
        idx = rng.integers(0, n, size=(min(256, resamples - start), n))
        value(b, idx) - value(a, idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    from retrainer import lineage
    from retrainer import metrics as mx
    from retrainer.data import Dataset, fingerprints
    from retrainer.evaluation import among
    from retrainer.importance import permutation_importance

    size = f"{args.rows:,} rows x 20 columns (75% train, 25% holdout)"
    print(size)
    results: dict[str, Any] = {"size": size}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        synthetic_rows(args.rows, path)
        frame = pd.read_parquet(path)
        features = [c for c in frame.columns if c != "target"]
        cut = int(len(frame) * 0.75)
        train = Dataset(frame.iloc[:cut].reset_index(drop=True), "target", features, str(path))
        hold = Dataset(frame.iloc[cut:].reset_index(drop=True), "target", features, str(path))
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        fps = fingerprints(train)
        with mlflow.start_run() as run:
            before = clock(lambda: mlflow.log_input(
                mlflow.data.from_pandas(train.frame, source=str(path), targets="target"),
                context="training"))
            after = clock(lambda: lineage.log_training_dataset(run.info.run_id, train, fps,
                                                               client=client))
        results["log_input"] = (before, after)

        model = HistGradientBoostingRegressor(max_iter=20).fit(train.X, train.y)
        y = hold.y.to_numpy()
        champion = model.predict(hold.X)
        challenger = champion + np.random.default_rng(1).normal(scale=0.1, size=len(y))
        metrics = ["mse", "rmse", "r2"]
        results["bootstrap"] = (
            clock(lambda: [old_bootstrap(m, y, champion, challenger) for m in metrics]),
            clock(lambda: mx.bootstrap_intervals(metrics, y, champion, challenger)))

        hold_fp = fingerprints(hold)
        results["clean_holdout_join"] = (clock(lambda: np.isin(hold_fp, fps)),
                                         clock(lambda: among(hold_fp, fps)))

        sample = hold.X.iloc[:2000]
        y_sample = y[:2000]
        from threadpoolctl import threadpool_limits

        def sklearn_importance() -> None:
            class Fitted:
                def fit(self, *_: Any) -> Fitted:
                    return self

            def score(_: Any, X_: Any, y_: Any) -> float:
                return -mx.compute("mse", np.asarray(y_), model.predict(X_))

            with threadpool_limits(limits=1):  # as retrainer ran it (explain.measure)
                sk_permutation_importance(Fitted(), sample, y_sample, scoring=score,
                                          n_repeats=5, random_state=0)

        results["permutation_importance"] = (
            clock(sklearn_importance),
            clock(lambda: permutation_importance(model, sample, y_sample, "mse")))

    print(f"{'step':<26}{'before s':>10}{'after s':>10}{'speedup':>10}")
    for key in ("log_input", "bootstrap", "clean_holdout_join", "permutation_importance"):
        b, a = results[key]
        print(f"{key:<26}{b:>10.2f}{a:>10.3f}{b / a:>9.0f}x")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"cycle_parts_{args.rows}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
