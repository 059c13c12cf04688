"""The paired bootstrap whose cost does not grow with the holdout, against the exact one.

`exact` below is the row bootstrap retrainer used before (every resample draws n rows and
recomputes the metric): the reference the faster forms must agree with.
"""

from __future__ import annotations

import numpy as np
import pytest

from retrainer import metrics as mx
from retrainer.report.markdown import bootstrap_notes


def exact(metric: str, y: np.ndarray, champion: np.ndarray, challenger: np.ndarray,
          champion_proba: np.ndarray | None = None, challenger_proba: np.ndarray | None = None,
          *, resamples: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    n = len(y)
    diffs = []
    for start in range(0, resamples, 256):
        for idx in rng.integers(0, n, size=(min(256, resamples - start), n)):
            cp = champion_proba[idx] if champion_proba is not None else None
            hp = challenger_proba[idx] if challenger_proba is not None else None
            diffs.append(mx.compute(metric, y[idx], challenger[idx], hp)
                         - mx.compute(metric, y[idx], champion[idx], cp))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(np.asarray(diffs), [alpha, 1 - alpha])
    return float(lo), float(hi)


def regression(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Far from zero and heavy-tailed errors: what breaks a naive sum of squares.
    y = 1_000.0 + rng.normal(scale=3.0, size=n)
    champion = y + rng.standard_t(df=4, size=n)
    challenger = y + 0.95 * rng.standard_t(df=4, size=n) + 0.05
    return y, champion, challenger


@pytest.mark.parametrize("metric", ["mse", "rmse", "mae", "mape", "r2", "accuracy"])
def test_small_holdouts_get_the_exact_row_bootstrap(metric: str) -> None:
    y, champion, challenger = regression(300)
    if metric == "accuracy":
        y, champion, challenger = (np.round(a / 3) for a in (y, champion, challenger))
    found = mx.bootstrap_interval(metric, y, champion, challenger, resamples=600, seed=7)
    assert found.method["unit"] == "row"
    # The same draws as the exact bootstrap: the same interval, to rounding.
    assert [found.lo, found.hi] == pytest.approx(
        exact(metric, y, champion, challenger, resamples=600, seed=7), rel=1e-9, abs=1e-12)
    assert found.delta == pytest.approx(mx.compute(metric, y, challenger)
                                        - mx.compute(metric, y, champion))


@pytest.mark.parametrize("metric", ["mse", "rmse", "mae", "r2", "accuracy"])
def test_grouped_bootstrap_agrees_with_the_exact_one(metric: str) -> None:
    y, champion, challenger = regression(20_000, seed=1)
    if metric == "accuracy":
        y, champion, challenger = (np.round(a / 3) for a in (y, champion, challenger))
    # The exact row bootstrap (units = rows: the draws of `exact`, as the test above shows).
    reference = mx.bootstrap_interval(metric, y, champion, challenger, resamples=1000, seed=3,
                                      max_units=len(y))
    assert reference.method["unit"] == "row"
    lo, hi = reference.lo, reference.hi
    # 2,000 groups of 10 rows: coarser than a real holdout's 10,000 groups.
    found = mx.bootstrap_interval(metric, y, champion, challenger, resamples=1000, seed=3,
                                  max_units=2_000)
    assert found.method == {"method": "paired_percentile_bootstrap", "rows": 20_000,
                            "resamples": 1000, "unit": "group", "groups": 2_000,
                            "rows_per_group": 10.0}
    # Within the Monte Carlo noise of 1,000 resamples (two exact runs with different
    # seeds differ by a few percent of the width too).
    width = hi - lo
    assert found.lo == pytest.approx(lo, abs=0.1 * width)
    assert found.hi == pytest.approx(hi, abs=0.1 * width)
    assert found.hi - found.lo == pytest.approx(width, rel=0.1)


def test_capped_rows_for_a_metric_of_no_row_sums_agree_with_the_exact_one() -> None:
    rng = np.random.default_rng(2)
    n = 2_000
    y = rng.integers(0, 2, size=n)
    score_cp = np.clip(0.5 * y + rng.normal(scale=0.45, size=n), 0, 1)
    score_ch = np.clip(0.5 * y + rng.normal(scale=0.40, size=n), 0, 1)
    proba_cp, proba_ch = (np.column_stack([1 - s, s]) for s in (score_cp, score_ch))
    pred_cp, pred_ch = (score_cp > 0.5).astype(int), (score_ch > 0.5).astype(int)
    lo, hi = exact("roc_auc", y, pred_cp, pred_ch, proba_cp, proba_ch, resamples=200, seed=4)
    found = mx.bootstrap_interval("roc_auc", y, pred_cp, pred_ch, proba_cp, proba_ch,
                                  resamples=1000, seed=4, max_units=500)
    assert found.method["rows_per_resample"] == 500
    assert found.method["scaled_by"] == pytest.approx(0.5)
    width = hi - lo
    assert found.lo == pytest.approx(lo, abs=0.2 * width)
    assert found.hi == pytest.approx(hi, abs=0.2 * width)


def test_seeded_and_said_in_the_record() -> None:
    y, champion, challenger = regression(30_000, seed=5)
    one = mx.bootstrap_interval("mse", y, champion, challenger, seed=1)
    assert one == mx.bootstrap_interval("mse", y, champion, challenger, seed=1)
    assert (one.lo, one.hi) != (lambda o: (o.lo, o.hi))(
        mx.bootstrap_interval("mse", y, champion, challenger, seed=2))
    assert one.method["groups"] == mx.MAX_UNITS
    assert mx.bootstrap_difference("mse", y, champion, challenger, seed=1) == \
        (one.delta, one.lo, one.hi)
    record = {"differences": {"mse": {"delta": one.delta, "ci95": [one.lo, one.hi],
                                      "bootstrap": one.method}}}
    [note] = bootstrap_notes(record)
    assert "10,000 random groups of the 30,000 rows (about 3 rows each" in note


def test_metrics_asked_together_get_the_intervals_each_gets_alone() -> None:
    y, champion, challenger = regression(15_000, seed=6)
    together = mx.bootstrap_intervals(["mse", "r2", "mae"], y, champion, challenger,
                                      resamples=300, seed=9)
    for metric, interval in together.items():
        alone = mx.bootstrap_interval(metric, y, champion, challenger, resamples=300, seed=9)
        assert (interval.lo, interval.hi) == pytest.approx((alone.lo, alone.hi), rel=1e-9)
        assert interval.method == alone.method


def test_clean_holdout_membership_matches_numpy_isin() -> None:
    from retrainer.evaluation import among

    rng = np.random.default_rng(0)
    hold = rng.integers(0, 2**64 - 1, 3_000, dtype=np.uint64, endpoint=True)
    # Duplicated training rows, and values past 2**63 (fingerprints are uint64).
    train = np.concatenate([rng.integers(0, 2**64 - 1, 9_000, dtype=np.uint64), hold[:700],
                            hold[:700]])
    found = among(hold, train)
    assert found.dtype == bool and found.sum() == 700
    assert (found == np.isin(hold, train)).all()
    assert not among(hold, train[:0]).any()
