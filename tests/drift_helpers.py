"""Seeded synthetic frames shared by the drift tests and bench/drift_calibration.py."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mixed_frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """Ten columns of assorted shapes; `shift` (in sd) moves the first one."""
    cat_levels = np.array(["a", "b", "c", "d", "e", "rare1", "rare2"])
    cat_p = np.array([0.4, 0.25, 0.15, 0.1, 0.094, 0.003, 0.003])
    with_nan = rng.normal(size=n)
    with_nan[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "normal": rng.normal(size=n) + shift,
            "lognormal": rng.lognormal(0.0, 1.0, size=n),
            "uniform": rng.uniform(-1, 1, size=n),
            "poisson": rng.poisson(3.0, size=n),
            "binary": rng.integers(0, 2, size=n).astype(float),
            "bimodal": np.where(rng.random(n) < 0.3, rng.normal(-3, 1, n), rng.normal(2, 0.5, n)),
            "heavy": rng.standard_t(2, size=n),
            "with_nan": with_nan,
            "category": rng.choice(cat_levels, size=n, p=cat_p),
            "flag": rng.random(n) < 0.2,
        }
    )


def ref_frame(n: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Two numeric columns (age, bmi) and a three-level category (city)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(50, 10, n),
            "bmi": rng.normal(26, 4, n),
            "city": rng.choice(["paris", "lyon", "nice"], n, p=[0.5, 0.3, 0.2]),
        }
    )
