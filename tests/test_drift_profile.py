"""The reference profile: JSON round trip, bounded edge fitting, errors, bin counting."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from drift_helpers import ref_frame
from retrainer.drift.profile import bin_counts, build_profile, load_profile, save_profile
from retrainer.drift.statistics import compare
from retrainer.errors import UserError


def test_profile_round_trips_through_json(tmp_path) -> None:
    rng = np.random.default_rng(11)
    ref = ref_frame()
    ref["when"] = pd.date_range("2024-01-01", periods=len(ref), freq="h")
    ref["small_int"] = rng.integers(0, 3, len(ref))
    ref.loc[:5, "bmi"] = np.nan
    profile = build_profile(ref, predictions=rng.normal(size=len(ref)))
    path = tmp_path / "reference_profile.json"
    save_profile(profile, path)
    loaded = load_profile(path)
    assert loaded == json.loads(json.dumps(profile))
    age = loaded["columns"]["age"]
    assert age["edges"][0] is None and age["edges"][-1] is None
    assert len(age["edges"]) == 11 and sum(age["counts"]) == 2_000
    inner = age["edges"][1:-1]
    assert inner == sorted(inner) and len(set(inner)) == len(inner)
    # Duplicate quantile edges are dropped: three values give at most three edges.
    assert len(loaded["columns"]["small_int"]["edges"]) <= 5
    assert loaded["columns"]["bmi"]["missing"] == 6
    cur = ref.sample(frac=1.0, random_state=1)
    a = compare(profile, cur).to_dict()
    b = compare(loaded, cur).to_dict()
    assert a == b
    assert not any(c["drifted"] for c in a["columns"])


def test_profile_edges_are_fitted_on_a_bounded_sample() -> None:
    rng = np.random.default_rng(12)
    ref = pd.DataFrame({"x": rng.normal(size=30_000)})
    p1 = build_profile(ref, max_rows=1_000, seed=1)
    p2 = build_profile(ref, max_rows=1_000, seed=2)
    assert p1["columns"]["x"]["edges"] != p2["columns"]["x"]["edges"]
    # ...but counts use every row.
    assert sum(p1["columns"]["x"]["counts"]) == 30_000
    with pytest.raises(UserError):
        build_profile(ref, bins=1)


def test_load_profile_errors_are_user_errors(tmp_path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="cannot read drift profile"):
        load_profile(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(UserError):
        load_profile(bad)


def test_bin_counts_fast_path_matches_searchsorted() -> None:
    rng = np.random.default_rng(13)
    x = np.concatenate([rng.poisson(3, 5_000).astype(float), [np.nan] * 7, [np.inf, -np.inf]])
    finite = x[np.isfinite(x)]
    for k in (1, 5, 9, 16, 17, 40):
        inner = np.unique(np.quantile(finite, np.linspace(0, 1, k + 2)[1:-1]))
        valid = x[~np.isnan(x)]
        idx = np.searchsorted(inner, valid, side="right")
        expected = np.bincount(idx, minlength=len(inner) + 1)
        np.testing.assert_array_equal(bin_counts(x, inner, 7), expected)
