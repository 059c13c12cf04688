"""The HTML drift page: it states the verdict the data was built to have, column by column."""

from __future__ import annotations

import dataclasses
import html
import re

import numpy as np
import pandas as pd
import pytest

from drift_helpers import ref_frame
from retrainer.drift.html import render_html
from retrainer.drift.profile import build_profile
from retrainer.drift.statistics import compare

# Table row: class, column, kind, statistic, value, threshold, drifted (yes/no).
ROW = re.compile(r"<tr class='(\w+)'><td>([^<]*)</td>(?:<td>[^<]*</td>){4}<td>(yes|no)</td>")
CHART = re.compile(
    r"<section class='chart'><h3>(.*?) <span class='(\w+)'>(\w+)</span></h3>(.*?)</section>"
)


def _verdict(page: str) -> str:
    found = re.findall(r'<p class="verdict">([^<]*)</p>', page)
    assert len(found) == 1
    return found[0]


def _table(page: str) -> dict[str, tuple[str, str]]:
    """column -> (row class, drifted cell)."""
    rows = ROW.findall(page)
    table = {name: (cls, drifted) for cls, name, drifted in rows}
    assert len(table) == len(rows)  # one row per column
    return table


def _charts(page: str) -> dict[str, tuple[str, str, str]]:
    """column -> (span class, label, chart body); every column appears once."""
    found = CHART.findall(page)
    charts = {name: (cls, label, body) for name, cls, label, body in found}
    assert len(charts) == len(found)
    return charts


def _assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    # The only URL allowed is the SVG namespace *name* on inline <svg>: an identifier
    # that browsers never fetch. Anything else would reach out when the page opens.
    urls = set(re.findall(r"https?://[^\s'\"<>)]*", page, flags=re.IGNORECASE))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    lowered = page.lower()
    for fetching in ("<script", "src=", "<link", "@import", "url(", "<iframe", "<img"):
        assert fetching not in lowered, fetching


@pytest.fixture(scope="module")
def shifted() -> tuple[dict, pd.DataFrame, np.ndarray]:
    """Reference profile and current data where only `age` moved, by one sd (10)."""
    rng = np.random.default_rng(15)
    ref = ref_frame()
    profile = build_profile(ref, predictions=rng.normal(size=len(ref)))
    cur = ref_frame(seed=1)
    cur["age"] += 10
    return profile, cur, rng.normal(size=len(cur))


@pytest.mark.parametrize(
    ("key_columns", "verdict"),
    # One drifted column of three is under drift.share 0.5; as a key column it decides.
    [(["age"], "Data drift detected"), ([], "No dataset drift")],
)
def test_page_states_the_verdict_and_which_columns_drifted(
    shifted: tuple[dict, pd.DataFrame, np.ndarray], key_columns: list[str], verdict: str
) -> None:
    profile, cur, predictions = shifted
    report = compare(profile, cur, predictions, key_columns=key_columns)
    assert report.drifted_columns == ["age"]  # the data is what the test says it is
    page = render_html(report, profile, cur)
    _assert_self_contained(page)
    assert _verdict(page) == verdict
    # The summary is the report's verdict: every rule with its numbers.
    assert "1 of 3 columns drifted (33%, equal weights; " in page
    assert html.escape(report.verdict) in page
    expected = {"age": True, "bmi": False, "city": False, "prediction": False}
    table = _table(page)
    assert set(table) == set(expected)
    charts = _charts(page)
    assert set(charts) == set(expected)
    for name, drifted in expected.items():
        assert table[name] == (("drift", "yes") if drifted else ("ok", "no")), name
        cls, label, body = charts[name]
        assert (cls, label) == (("drift", "drifted") if drifted else ("ok", "stable")), name
        # One chart per column: one <svg> with a reference and a current bar per bin.
        assert body.count("<svg") == 1, name
        col = profile["prediction"] if name == "prediction" else profile["columns"][name]
        assert body.count("<rect") == 2 * len(col["counts"]), name
    # The shifted column's current bars sit higher in the top bins than the reference's.
    age = next(c for c in report.columns if c.column == "age")
    assert sum(age.current_shares[-3:]) > 2 * sum(age.reference_shares[-3:])


def test_page_without_drift_says_so_for_every_column(
    shifted: tuple[dict, pd.DataFrame, np.ndarray],
) -> None:
    profile, _, predictions = shifted
    cur = ref_frame(seed=1)
    page = render_html(compare(profile, cur, predictions), profile, cur)
    _assert_self_contained(page)
    assert _verdict(page) == "No dataset drift"
    assert all(v == ("ok", "no") for v in _table(page).values())
    charts = _charts(page)
    assert len(charts) == 4
    assert all(label == "stable" for _, label, _ in charts.values())


def test_names_are_escaped_and_a_missing_column_gets_a_note_not_a_chart() -> None:
    rng = np.random.default_rng(15)
    ref = ref_frame().rename(columns={"bmi": "bmi<script>"})
    profile = build_profile(ref, predictions=rng.normal(size=len(ref)))
    cur = ref_frame(seed=1).rename(columns={"bmi": "bmi<script>"}).drop(columns="city")
    report = compare(profile, cur, predictions=rng.normal(size=len(cur)))
    page = render_html(report, profile, cur)
    _assert_self_contained(page)
    assert "bmi&lt;script&gt;" in page
    charts = _charts(page)
    assert set(charts) == {"age", "bmi&lt;script&gt;", "city", "prediction"}
    assert charts["city"][:2] == ("drift", "drifted")
    assert "<svg" not in charts["city"][2] and "no data to plot" in charts["city"][2]
    assert "column missing from the current data" in page
    assert page.count("<svg") == 3


def test_histograms_are_recounted_from_current_data_when_the_report_has_none(
    shifted: tuple[dict, pd.DataFrame, np.ndarray],
) -> None:
    # A report rebuilt without its histograms (e.g. from JSON) still gets its charts.
    profile, cur, predictions = shifted
    report = compare(profile, cur, predictions)
    bare = dataclasses.replace(
        report,
        columns=[
            dataclasses.replace(c, labels=[], reference_shares=[], current_shares=[])
            for c in report.columns
        ],
    )
    assert render_html(bare, profile, cur) == render_html(report, profile, cur)
    assert "no data to plot" in render_html(bare, profile, None)
