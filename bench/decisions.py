"""Are retrainer's decisions right? Simulated retrains whose right answer is known.

Each scenario is a team's retrain: a champion trained by the previous cycle on the old
table, a new batch arrives, the cycle retrains on the current table and judges the
challenger on the clean holdout. The truth is each model's error on a large fresh sample
of the *current* process (20,000 rows, and per segment), which no policy sees.

- harmful: the challenger was promoted and is truly worse by more than `margin` overall;
- harmful on a segment: promoted, and truly worse by more than `max_slice_degradation` on
  one segment (whatever its average says);
- missed: the challenger was kept and is truly better overall without harming a segment.

Scenarios: no change at all; concept drift of four sizes; an upstream table truncated to a
part of its rows; the new batch duplicated by a bad join; a feature broken in the new batch
only (a unit change, or filled with zeros); a challenger better on average but worse on one
segment (two segments drift, the third does not, and the team's model shares slopes).

The judging is retrainer's own code, in process: `data.split`, `evaluation.score_both`
(fingerprints, clean holdout, paired bootstrap, slices) and `gate.judge`, on in-memory
scikit-learn models instead of full MLflow cycles, so 48 scenarios take about a minute.
Run: `.venv/bin/python bench/decisions.py [--seeds N]`; writes bench/results/decisions.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
N_OLD, N_NEW, N_TRUTH = 6000, 2000, 20_000
INFORMATIVE, NOISE_FEATURES = 6, 14
SEGMENTS, SEGMENT_P = ["A", "B", "C"], [0.4, 0.35, 0.25]
MARGIN, MAX_SLICE = 0.01, 0.05

# (label, gate keys): the article's rule, superiority with confidence, non-inferiority with
# and without slices. Every policy sees the same clean holdout and min_clean_rows.
POLICIES: list[tuple[str, dict[str, Any]]] = [
    ("article's rule (superiority, all metrics improve)",
     {"all_metrics_improve": True, "thresholds": {"rmse": {"min_absolute_change": 0.0}}}),
    ("superiority + confidence 0.95",
     {"all_metrics_improve": True, "confidence": 0.95,
      "thresholds": {"rmse": {"min_absolute_change": 0.0}}}),
    ("non_inferiority 1%, no slices", {"policy": "non_inferiority", "margin": MARGIN}),
    ("non_inferiority 1% + slices",
     {"policy": "non_inferiority", "margin": MARGIN, "max_slice_degradation": MAX_SLICE,
      "slices": [{"column": "segment"}, {"column": "batch"}]}),
]


@dataclass
class Process:
    """y = X beta + per-segment extra slope on x0 + noise; only the first features matter."""

    beta: np.ndarray
    seg_slope: dict[str, float]
    noise: float = 1.0

    def sample(self, n: int, rng: np.random.Generator, batch: str) -> pd.DataFrame:
        p = len(self.beta)
        X = rng.normal(size=(n, p))
        seg = rng.choice(SEGMENTS, size=n, p=SEGMENT_P)
        extra = np.array([self.seg_slope[s] for s in seg]) * X[:, 0]
        y = X @ self.beta + extra + rng.normal(scale=self.noise, size=n)
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(p)])
        frame["segment"], frame["batch"], frame["target"] = seg, batch, y
        return frame

    def shifted(self, size: float, rng: np.random.Generator) -> Process:
        """Concept drift: the informative slopes move by `size` times their norm."""
        direction = np.zeros_like(self.beta)
        direction[:INFORMATIVE] = rng.normal(size=INFORMATIVE)
        direction *= np.linalg.norm(self.beta) / np.linalg.norm(direction)
        return Process(self.beta + size * direction, dict(self.seg_slope), self.noise)


def base_process(rng: np.random.Generator) -> Process:
    beta = np.zeros(INFORMATIVE + NOISE_FEATURES)
    beta[:INFORMATIVE] = rng.normal(scale=0.6, size=INFORMATIVE)
    beta[0] = 1.0  # x0 carries the segment effects below
    return Process(beta, dict.fromkeys(SEGMENTS, 0.0))


# A scenario: (rng) -> (old table, current table, current process).
Scenario = Callable[[np.random.Generator], tuple[pd.DataFrame, pd.DataFrame, Process]]


def no_change(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, Process]:
    p0 = base_process(rng)
    old = p0.sample(N_OLD, rng, "old")
    return old, pd.concat([old, p0.sample(N_NEW, rng, "new")], ignore_index=True), p0


def drift(size: float) -> Scenario:
    def make(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, Process]:
        p0 = base_process(rng)
        p1 = p0.shifted(size, rng)
        old = p0.sample(N_OLD, rng, "old")
        return old, pd.concat([old, p1.sample(N_NEW, rng, "new")], ignore_index=True), p1
    return make


def truncated(share: float) -> Scenario:
    """The upstream table arrived with only `share` of its rows (a lost partition)."""
    def make(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, Process]:
        p0 = base_process(rng)
        p1 = p0.shifted(0.1, rng)
        old = p0.sample(N_OLD, rng, "old")
        full = pd.concat([old, p1.sample(N_NEW, rng, "new")], ignore_index=True)
        return old, full.sample(frac=share, random_state=int(rng.integers(1 << 31))), p1
    return make


def duplicated(times: int) -> Scenario:
    """A bad join repeats every row of the new batch `times` times."""
    def make(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, Process]:
        p0 = base_process(rng)
        old = p0.sample(N_OLD, rng, "old")
        new = p0.sample(N_NEW, rng, "new")
        return old, pd.concat([old, *[new] * times], ignore_index=True), p0
    return make


def broken_feature(kind: str) -> Scenario:
    """x0 is broken in the new batch only; the process the model will serve is unchanged."""
    def make(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, Process]:
        p0 = base_process(rng)
        old = p0.sample(N_OLD, rng, "old")
        new = p0.sample(N_NEW, rng, "new")
        new["x0"] = new["x0"] * 100.0 if kind == "unit" else 0.0
        return old, pd.concat([old, new], ignore_index=True), p0
    return make


def slice_harm(size: float) -> Scenario:
    """Segments A and B change their slope on x0; C does not. One shared slope is fitted."""
    def make(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, Process]:
        p0 = base_process(rng)
        p1 = Process(p0.beta.copy(), {"A": size, "B": size, "C": 0.0}, p0.noise)
        old = p0.sample(N_OLD, rng, "old")
        # The new batch is bigger: the business grew in A and B.
        new = p1.sample(2 * N_NEW, rng, "new")
        return old, pd.concat([old, new], ignore_index=True), p1
    return make


SCENARIOS: list[tuple[str, Scenario]] = [
    ("no change", no_change),
    ("drift 0.05", drift(0.05)), ("drift 0.1", drift(0.1)), ("drift 0.2", drift(0.2)),
    ("drift 0.4", drift(0.4)),
    ("truncated to 25%", truncated(0.25)), ("truncated to 10%", truncated(0.10)),
    ("new batch duplicated x5", duplicated(5)),
    ("broken x0: unit x100", broken_feature("unit")), ("broken x0: zeros", broken_feature("zero")),
    ("better on average, C slightly worse", slice_harm(0.5)),
    ("better on average, C worse", slice_harm(1.0)),
    ("better on average, C much worse", slice_harm(2.0)),
]


def make_config(gate: dict[str, Any], seed: int) -> Any:
    from retrainer.config import parse

    return parse({"model": "bench", "data": {"source": "bench.csv", "target": "target",
                                             "drop": ["segment", "batch"]},
                  "split": {"method": "random", "test_size": 0.25, "seed": seed},
                  "train": {"estimator": "sklearn.linear_model.Ridge", "params": {"alpha": 1.0}},
                  "metrics": ["mse", "rmse", "r2"], "gate": gate}, HERE, "bench")


def run_scenario(name: str, make: Scenario, seed: int) -> dict[str, Any]:
    from sklearn.linear_model import Ridge

    from retrainer import data as data_mod
    from retrainer.evaluation import Champion, check_slices, score_both
    from retrainer.gate import judge
    from retrainer.training import TrainedModel

    rng = np.random.default_rng(seed)
    old, current, process = make(rng)
    truth = process.sample(N_TRUTH, rng, "truth")
    base_cfg = make_config({}, seed)

    # The previous cycle: the champion trained on the old table's training side.
    old_rows = data_mod.validate(old, base_cfg.data, "old")
    champ_train, _ = data_mod.split(old_rows, base_cfg.split)
    champion_model = Ridge(alpha=1.0).fit(champ_train.X, champ_train.y)
    # This cycle: the current table, split the same way, the challenger on its training side.
    rows = data_mod.validate(current, base_cfg.data, "current")
    train_rows, holdout = data_mod.split(rows, base_cfg.split)
    challenger_model = Ridge(alpha=1.0).fit(train_rows.X, train_rows.y)

    features = rows.features
    true = {}
    for who, model in (("champion", champion_model), ("challenger", challenger_model)):
        err = (truth["target"].to_numpy() - model.predict(truth[features])) ** 2
        true[who] = {"all": float(err.mean()),
                     **{s: float(err[truth["segment"].to_numpy() == s].mean()) for s in SEGMENTS}}
    rel = {k: true["challenger"][k] / true["champion"][k] - 1 for k in true["champion"]}
    slice_harmed = any(rel[s] > MAX_SLICE for s in SEGMENTS)
    better = rel["all"] < 0 and not slice_harmed

    decisions = {}
    for label, keys in POLICIES:
        cfg = make_config(keys, seed)
        check_slices(cfg, rows)
        champion = Champion(version="1", run_id=None, model=champion_model, input_columns=None,
                            tensor_input=False,
                            train_fingerprints=data_mod.fingerprints(champ_train),
                            metrics_as_logged={})
        challenger = TrainedModel(model=challenger_model, task="regression", run_id="",
                                  model_uri="", model_id=None, metrics_as_logged={},
                                  fit_seconds=0.0)
        scores = score_both(cfg, champion, challenger, holdout,
                            data_mod.fingerprints(train_rows))
        verdict = judge(scores, cfg.gate, cfg.metrics)
        decisions[label] = {"promoted": verdict.promotes, "reason": verdict.reason,
                            "clean_rows": scores.clean_rows}
    return {"scenario": name, "seed": seed, "true_relative": rel,
            "worse_than_margin": rel["all"] > MARGIN, "harms_a_segment": slice_harmed,
            "truly_better": better, "decisions": decisions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per scenario kind")
    args = parser.parse_args()
    start = time.perf_counter()
    results = []
    for k, (name, make) in enumerate(SCENARIOS):
        for s in range(args.seeds):
            results.append(run_scenario(name, make, seed=1000 * k + s))
        print(f"{name}: done", file=sys.stderr)

    n = len(results)
    print(f"\n{n} scenarios: {sum(r['worse_than_margin'] for r in results)} challengers truly "
          f"worse than the {MARGIN:.0%} margin, {sum(r['harms_a_segment'] for r in results)} "
          f"truly worse by > {MAX_SLICE:.0%} on a segment, "
          f"{sum(r['truly_better'] for r in results)} truly better\n")
    print(f"{'policy':<52}{'promoted':>9}{'harmful':>9}{'on a segment':>14}{'missed':>8}")
    summary = {}
    for label, _ in POLICIES:
        promoted = [r for r in results if r["decisions"][label]["promoted"]]
        row = {"promoted": len(promoted),
               "harmful": sum(r["worse_than_margin"] for r in promoted),
               "harmful_on_a_segment": sum(r["harms_a_segment"] for r in promoted),
               "missed": sum(r["truly_better"] and not r["decisions"][label]["promoted"]
                             for r in results)}
        summary[label] = row
        print(f"{label:<52}{row['promoted']:>9}{row['harmful']:>9}"
              f"{row['harmful_on_a_segment']:>14}{row['missed']:>8}")

    labels = [lab for lab, _ in POLICIES]
    print("\nper scenario kind, each policy: harmful + harmful on a segment / missed")
    print(f"{'scenario (worse / segment-harming / better)':<50}"
          + "".join(f"{i + 1:>8}" for i in range(len(labels))))
    for name, _ in SCENARIOS:
        group = [r for r in results if r["scenario"] == name]
        cells = []
        for lab in labels:
            got = [r for r in group if r["decisions"][lab]["promoted"]]
            harm = sum(r["worse_than_margin"] or r["harms_a_segment"] for r in got)
            missed = sum(r["truly_better"] and not r["decisions"][lab]["promoted"]
                         for r in group)
            cells.append(f"{harm}/{missed}")
        truth = (f"({sum(r['worse_than_margin'] for r in group)}/"
                 f"{sum(r['harms_a_segment'] for r in group)}/"
                 f"{sum(r['truly_better'] for r in group)})")
        print(f"{name + ' ' + truth:<50}" + "".join(f"{c:>8}" for c in cells))
    print("columns: " + "; ".join(f"{i + 1} = {lab}" for i, lab in enumerate(labels)))
    print(f"\n{time.perf_counter() - start:.0f} s")

    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "decisions.json").write_text(json.dumps(
        {"margin": MARGIN, "max_slice_degradation": MAX_SLICE, "summary": summary,
         "scenarios": results}, indent=2))


if __name__ == "__main__":
    main()
