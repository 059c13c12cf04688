"""Calibrated drift thresholds, and the user's overrides (``drift.thresholds``).

Calibration. A fixed PSI cut-off false-alarms on small samples (at 200 rows and no
drift PSI averages ~0.09, so ``PSI > 0.1`` fires about a third of the time) while
p-value tests flag meaningless shifts at a million rows. Under no drift,
``PSI / (1/n + 1/m)`` is approximately chi-square with ``B - 1`` degrees of freedom
(PSI is the symmetric KL divergence, whose second-order expansion is Pearson's
statistic for the 2 x B table). The applied threshold is therefore

    max(chi2.isf(alpha, B - 1) * (1/n + 1/m),  min_psi)

with alpha = 0.001 per column (so even "any of 20 columns" stays near 2 %) and a
minimum practical effect min_psi = 0.02 (about a 0.15 sd mean shift): a 0.5 sd shift
(PSI ~0.25) is flagged from ~1k rows and a 0.2 sd shift (PSI ~0.04) from ~10k rows,
while a 0.02 sd shift at 1M rows is not. Categorical columns use Pearson's chi-square
on the same terms, and the missing rate a two-proportion test with a 1 point floor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# scipy.special, not scipy.stats: the same distribution functions without importing all
# of scipy.stats (about 1 s of `retrainer drift`'s start-up).
from scipy import special

from retrainer.errors import UserError

DEFAULT_ALPHA = 1e-3
MIN_PSI = 0.02
MIN_MISSING_CHANGE = 0.01

#: thresholds keys: fixed cut-offs replacing the calibrated ones (psi, chi2,
#: missing_rate), extra rules (js, wasserstein, ks) or calibration knobs.
THRESHOLD_KEYS = frozenset(
    {"psi", "chi2", "missing_rate", "js", "wasserstein", "ks", "alpha", "min_psi"}
)
#: Extra rules: threshold key -> the statistic (in ColumnResult.stats) it bounds.
EXTRA_RULES = (("js", "js_distance"), ("wasserstein", "wasserstein_norm"), ("ks", "ks"))


def check_thresholds(
    thresholds: Mapping[str, float] | None,
    share: float,
    key_columns: Sequence[str],
    profile: Mapping,
) -> dict[str, float]:
    """The overrides as a dict, after a UserError for anything invalid in the settings."""
    th = dict(thresholds or {})
    unknown = sorted(set(th) - THRESHOLD_KEYS)
    if unknown:
        raise UserError(
            f"unknown drift threshold {unknown[0]!r} (known: {', '.join(sorted(THRESHOLD_KEYS))})"
        )
    for k, v in th.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise UserError(f"drift threshold {k!r} must be a non-negative number, got {v!r}")
    if "alpha" in th and not 0 < th["alpha"] < 1:
        raise UserError(f"drift threshold 'alpha' must be in (0, 1), got {th['alpha']}")
    if not 0 < share <= 1:
        raise UserError(f"drift.share must be in (0, 1], got {share}")
    missing_keys = [k for k in key_columns if k not in profile["columns"]]
    if missing_keys:
        raise UserError(f"drift key column {missing_keys[0]!r} is not in the reference profile")
    return th


def chi2_isf(q: float, df: int) -> float:
    """The chi-square quantile with upper-tail probability `q` (scipy.stats.chi2.isf)."""
    return float(special.chdtri(df, q))


def chi2_sf(x: float, df: int) -> float:
    """The chi-square upper-tail probability of `x` (scipy.stats.chi2.sf)."""
    return float(special.chdtrc(df, x))


def alpha_of(th: Mapping[str, float]) -> float:
    """The per-column false-alarm rate the calibrated thresholds are set for."""
    return float(th.get("alpha", DEFAULT_ALPHA))


def psi_threshold(th: Mapping[str, float], df: int, n_eff_inv: float) -> float:
    """PSI cut-off for `df` degrees of freedom; `n_eff_inv` is 1/n + 1/m."""
    if "psi" in th:
        return float(th["psi"])
    min_psi = float(th.get("min_psi", MIN_PSI))
    return max(chi2_isf(alpha_of(th), df) * n_eff_inv, min_psi)


def chi2_threshold(th: Mapping[str, float], df: int, n_eff_inv: float) -> float:
    """Pearson chi-square cut-off for `df` degrees of freedom; `n_eff_inv` is 1/n + 1/m."""
    if "chi2" in th:
        return float(th["chi2"])
    min_psi = float(th.get("min_psi", MIN_PSI))
    # Same practical floor as PSI: chi2 * (1/n + 1/m) is on the PSI scale.
    return max(chi2_isf(alpha_of(th), df), min_psi / n_eff_inv)


def missing_rate_threshold(
    th: Mapping[str, float], ref_missing: int, ref_rows: int, cur_missing: int, cur_rows: int
) -> float:
    """Largest change of the missing rate that is not drift (two-proportion test)."""
    if "missing_rate" in th:
        return float(th["missing_rate"])
    pooled = (ref_missing + cur_missing) / max(ref_rows + cur_rows, 1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / max(ref_rows, 1) + 1 / max(cur_rows, 1)))
    return max(-float(special.ndtri(alpha_of(th) / 2)) * se, MIN_MISSING_CHANGE)
