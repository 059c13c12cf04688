"""What explainability and the cycle report add to a judgement on a big holdout.

A 200k-row clean holdout x 20 numeric columns; champion and challenger are fitted
HistGradientBoosting regressors (a model whose predict is not free). Measured, each part
as retrainer runs it in a judgement:

- permutation importance of both models (`explain.measure`: capped at 2,000 rows,
  5 shuffles per column, the primary metric);
- mean |SHAP| of both models, when the `explain` extra is installed (`shap_values`:
  TreeExplainer on a seeded 1,000-row sample; importing shap is timed apart);
- the report's chart data (`diagnostics.summarise`: a 400-point sample);
- the drift of the training rows against the champion's profile (100k-row sample);
- rendering the page (`report.html.render_report`, 60 points of history);

against the baseline every judgement already pays: both models' predict on the holdout
(what scoring costs before any metric). Ratios, not seconds.

    .venv/bin/python bench/explain.py [--rows 200000]

Prints a table and writes bench/results/explain.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "explain.json"


def _timed(fn):  # noqa: ANN001, ANN202 - a tiny local helper
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    from sklearn.ensemble import HistGradientBoostingRegressor

    from retrainer import diagnostics, explain, shap_values
    from retrainer.drift.profile import build_profile
    from retrainer.drift.statistics import compare
    from retrainer.report.html import render_report

    rng = np.random.default_rng(7)
    n, k = args.rows, 20
    X = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"f{i:02d}" for i in range(k)])
    y = (X.to_numpy() @ rng.normal(size=k)) + rng.normal(scale=0.5, size=n)
    fit_rows = slice(0, 20_000)
    champion = HistGradientBoostingRegressor(max_iter=100, random_state=0).fit(
        X.iloc[fit_rows], y[fit_rows])
    challenger = HistGradientBoostingRegressor(max_iter=150, random_state=1).fit(
        X.iloc[fit_rows], y[fit_rows])

    (cp, ch), t_predict = _timed(lambda: (champion.predict(X), challenger.predict(X)))
    (imp_cp, _), t_imp_cp = _timed(lambda: explain.measure(champion, X, y, "mse", seed=42))
    (imp_ch, _), t_imp_ch = _timed(lambda: explain.measure(challenger, X, y, "mse", seed=42))
    shap_mod, t_shap_import = _timed(shap_values.load_shap)
    shap, t_shap = _timed(lambda: shap_values.shap_section(
        {"challenger": (challenger, X), "champion": (champion, X)}, list(X.columns), seed=42))
    section = explain.importance_section(imp_ch, imp_cp, metric="mse", rows=n, seed=42,
                                         shap=shap)
    diag, t_diag = _timed(lambda: diagnostics.summarise("regression", y, ch, cp, seed=42))
    profile = build_profile(X.iloc[:50_000])
    drift, t_drift = _timed(lambda: compare(profile, X.sample(100_000, random_state=42)))
    record = {
        "model": "bench", "cycle_id": "x", "decision": "promoted", "reason": "bench",
        "primary_metric": "mse", "trigger": "bench", "checks": [],
        "challenger": {"version": "2", "run_id": "r2", "metrics": {"mse": 1.0},
                       "metrics_as_logged": {"mse": 1.0}},
        "champion": {"version": "1", "run_id": "r1", "metrics": {"mse": 1.1},
                     "metrics_as_logged": {"mse": 1.1}},
        "holdout": {"rows": n, "clean_rows": n, "excluded": {}, "notes": []},
        "differences": {"mse": {"delta": -0.1, "ci95": [-0.12, -0.08], "confidence": 0.95}},
        "importance": section}
    timeline = [{"label": f"v{i}", "challenger": 1 + i / 100, "champion": 1.1,
                 "promoted": i % 3 == 0, "rollback": i == 30} for i in range(60)]
    page, t_render = _timed(lambda: render_report(record, diagnostics=diag, timeline=timeline,
                                                  drift=drift.to_dict()))
    added = t_imp_cp + t_imp_ch + t_diag + t_drift + t_render + t_shap_import + t_shap
    result = {
        "rows": n, "columns": k,
        "predict_both_s": round(t_predict, 3),
        "importance_champion_s": round(t_imp_cp, 3),
        "importance_challenger_s": round(t_imp_ch, 3),
        "shap_import_s": round(t_shap_import, 3) if shap_mod else None,
        "shap_both_s": round(t_shap, 3) if shap_mod else None,
        "shap_rows": shap.get("rows_explained") or shap.get("skipped"),
        "diagnostics_s": round(t_diag, 3), "training_drift_s": round(t_drift, 3),
        "render_s": round(t_render, 3), "page_kib": round(len(page.encode()) / 1024, 1),
        "added_s": round(added, 3), "added_over_predict": round(added / t_predict, 2),
        "ndcg": section["shift"]["ndcg"]}
    width = max(len(key) for key in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
