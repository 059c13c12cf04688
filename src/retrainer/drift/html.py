"""The drift report as one self-contained HTML page (inline CSS and SVG, no scripts)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from retrainer.drift.observe import observe_categorical, observe_numeric
from retrainer.drift.statistics import DriftReport, bin_labels, cell, explain, shares
from retrainer.report.charts import BLUE, GREY, grouped_bars


def render_html(report: DriftReport, profile: dict, current: pd.DataFrame | None = None) -> str:
    """A self-contained HTML page: verdict, table, reference-vs-current histograms.

    Histograms come from the report; `current` is only needed for reports whose
    columns carry no histogram (then the counts are recomputed from it).
    """
    results = list(report.columns) + ([report.prediction] if report.prediction else [])
    verdict = "Data drift detected" if report.dataset_drift else "No dataset drift"
    colour = "#b42318" if report.dataset_drift else "#027a48"
    rows_html = []
    for r in results:
        rows_html.append(
            "<tr class='{cls}'><td>{c}</td><td>{k}</td><td>{s}</td><td>{v}</td><td>{t}</td>"
            "<td>{d}</td><td>{mr}</td><td>{note}</td></tr>".format(
                cls="drift" if r.drifted else "ok",
                c=html.escape(r.column),
                k=html.escape(r.kind),
                s=html.escape(r.statistic or "-"),
                v=cell(r.value),
                t=cell(r.threshold),
                d="yes" if r.drifted else "no",
                mr=cell(r.missing_rate_change, pct=True),
                note=html.escape(explain(r)),
            )
        )
    charts = []
    for r in results:
        labels, ref, cur = r.labels, r.reference_shares, r.current_shares
        if not labels and current is not None and r.column in current.columns:
            col = profile["columns"].get(r.column)
            if col is not None:
                labels = bin_labels(col)
                ref = shares(np.asarray(col["counts"])).tolist()
                obs = (
                    observe_numeric(current[r.column], col, None)
                    if col["kind"] == "numeric"
                    else observe_categorical(current[r.column], col)
                )
                cur = shares(obs.counts).tolist()
        charts.append(
            _CHART.format(
                c=html.escape(r.column),
                cls="drift" if r.drifted else "ok",
                d="drifted" if r.drifted else "stable",
                svg=_svg_histogram(labels, ref, cur) if labels else "<p>no data to plot</p>",
            )
        )
    return _PAGE.format(
        colour=colour,
        verdict=html.escape(verdict),
        summary=html.escape(
            f"{report.verdict}; reference {report.rows_reference:,} rows, "
            f"current {report.rows_current:,} rows"
        ),
        rows="\n".join(rows_html),
        charts="\n".join(charts),
    )


_CHART = "<section class='chart'><h3>{c} <span class='{cls}'>{d}</span></h3>{svg}</section>"


def _svg_histogram(labels: list[str], ref: list[float], cur: list[float]) -> str:
    """Grouped bars, reference (grey) beside current (blue), shares on one scale."""
    return grouped_bars(labels, [("reference", ref, GREY), ("current", cur, BLUE)],
                        title="reference vs current shares")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>retrainer drift report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#101828}}
.verdict{{padding:.6em 1em;color:#fff;background:{colour};border-radius:6px;display:inline-block}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #d0d5dd;padding:.3em .6em;
font-size:.9em}}tr.drift td{{background:#fef3f2}}span.drift{{color:#b42318}}span.ok{{color:#027a48}}
.charts{{display:flex;flex-wrap:wrap;gap:1.5em}}.legend span{{display:inline-block;width:1em;
height:1em;vertical-align:middle;margin:0 .3em}}
</style></head><body>
<h1>Drift report</h1>
<p class="verdict">{verdict}</p>
<p>{summary}</p>
<table><thead><tr><th>column</th><th>kind</th><th>statistic</th><th>value</th><th>threshold</th>
<th>drifted</th><th>missing rate change</th><th>note</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<p class="legend"><span style="background:#98a2b3"></span>reference
<span style="background:#1570ef"></span>current (share of non-missing rows per bin)</p>
<div class="charts">
{charts}
</div>
</body></html>
"""
