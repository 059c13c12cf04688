"""The cycle report: one self-contained HTML page per judgement, and the history page.

Styles inline, charts as inline SVG (`charts`), no scripts and no URL fetched, so the page
opens the same in a browser, in the MLflow UI (as a run artifact) and offline. Everything
shown comes from the decision record, the bounded chart data of the judgement
(`diagnostics`), the history and, when computed, the drift of the training data.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from retrainer.report import charts
from retrainer.report.markdown import comparison_tables, fmt

PROMOTING = ("first_champion", "promoted", "dry_run_would_promote", "canary_started")
ROLLBACKS = ("rollback", "auto_rollback")


def render_report(record: Mapping[str, Any], *, diagnostics: Mapping[str, Any] | None = None,
                  timeline: Sequence[Mapping[str, Any]] = (),
                  drift: Mapping[str, Any] | None = None) -> str:
    """The whole page for one decision record."""
    e = html.escape
    decision = record["decision"]
    good = decision in PROMOTING
    chall, champ = record["challenger"], record.get("champion")
    title = f"{record['model']}: {decision}"
    sections = [
        f"<h1>{e(record['model'])} <small>cycle report</small></h1>",
        f"<p class='verdict {'pass' if good else 'keep'}' id='decision'>{e(decision)}: "
        f"version {e(str(chall['version']))}</p>",
        f"<p class='reason'>{e(record.get('reason') or '')}</p>",
        _facts(record),
        _checks(record),
        _tables(record),
        _differences(record),
        _slices(record),
        _diagnostics(diagnostics, champ is not None),
        _importance(record.get("importance")),
        _timeline_section(timeline, record.get("primary_metric") or ""),
        _drift(drift),
        "<footer>Written by retrainer for decision "
        f"{e(str(record.get('cycle_id') or '-'))} at {e(str(record.get('at') or '-'))}. "
        "A self-contained page: nothing is fetched when it opens.</footer>",
    ]
    return page(title, "\n".join(s for s in sections if s))


def render_history(model: str, entries: Sequence[Mapping[str, Any]], metric: str) -> str:
    """`retrainer history --html`: the timeline chart and every entry, newest first."""
    e = html.escape
    points = timeline_points(entries, metric)
    rows = []
    for entry in entries:
        what = entry.get("what") or "-"
        if entry.get("decision") not in (None, what):
            what = f"{what}: {entry['decision']}"
        before, after = entry.get("champion_before") or "-", entry.get("champion_after") or "-"
        champion = f"{before} -> {after}" if entry.get("alias_moved") else before
        judged = entry.get("judged") or {}
        rows.append(
            f"<tr class='{_row_class(entry)}'><td>{e(str(entry.get('at', '-')))}</td>"
            f"<td>{e(what)}</td><td>{e(str(entry.get('version') or '-'))}</td>"
            f"<td>{e(champion)}</td><td>{fmt(judged.get('challenger.' + metric))}</td>"
            f"<td>{fmt(judged.get('champion.' + metric))}</td>"
            f"<td>{e(str(entry.get('trigger') or '-'))}</td>"
            f"<td>{e(str(entry.get('actor') or '-'))}</td>"
            f"<td>{e(str(entry.get('reason') or ''))}</td></tr>")
    body = (f"<h1>{e(model)} <small>decision history</small></h1>"
            f"<p>{len(entries)} entries, newest first.</p>"
            + _timeline_section(points, metric)
            + "<h2>Every decision and alias move</h2><table class='history'><thead><tr>"
            "<th>when (UTC)</th><th>what</th><th>version</th><th>champion</th>"
            f"<th>challenger {e(metric)}</th><th>champion {e(metric)}</th><th>trigger</th>"
            f"<th>actor</th><th>reason</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return page(f"{model}: history", body)


def timeline_points(entries: Sequence[Mapping[str, Any]], metric: str) -> list[dict]:
    """History entries (newest first) as chart points, oldest first."""
    points = []
    for entry in reversed(list(entries)):
        what = entry.get("what")
        judged = entry.get("judged") or {}
        rollback = what in ROLLBACKS
        if not rollback and not judged and not entry.get("alias_moved"):
            continue  # unfinished cycles, repairs: nothing to plot
        when = str(entry.get("at") or "")[:10]
        version = entry.get("champion_after") if rollback else entry.get("version")
        points.append({
            "label": f"v{version or '?'} {when}".strip(),
            "challenger": judged.get(f"challenger.{metric}"),
            "champion": judged.get(f"champion.{metric}"),
            "promoted": (entry.get("decision") in PROMOTING or what in PROMOTING)
            and not rollback and bool(entry.get("alias_moved") or
                                      entry.get("decision") != "dry_run_would_promote"),
            "rollback": rollback})
    return points


def record_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """The decision being reported, as a history entry (it is logged after the page)."""
    move = record.get("move") or {}
    return {"at": record.get("at"), "what": record["decision"], "decision": record["decision"],
            "version": record["challenger"]["version"], "alias_moved": bool(move),
            "judged": judged_metrics(record)}


def judged_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """{"challenger.rmse": ..., "champion.rmse": ...}: what a decision's run logs."""
    out = {}
    for who in ("challenger", "champion"):
        for metric, value in ((record.get(who) or {}).get("metrics") or {}).items():
            if isinstance(value, int | float):
                out[f"{who}.{metric}"] = float(value)
    return out


def page(title: str, body: str) -> str:
    return _PAGE.format(title=html.escape(title), body=body)


# --------------------------------------------------------------------------- sections

def _facts(record: Mapping[str, Any]) -> str:
    e = html.escape
    chall, champ = record["challenger"], record.get("champion")
    data = record.get("data") or {}
    h = record["holdout"]
    items = [("trigger", record.get("trigger", "-") + (f" ({record['trigger_reason']})"
                                                       if record.get("trigger_reason") else "")),
             ("challenger", f"version {chall['version']} (run {chall.get('run_id') or '-'})"),
             ("champion", f"version {champ['version']} (run {champ.get('run_id') or '-'})"
              if champ else "none yet (first champion)"),
             ("data", f"{data.get('rows', '-')} rows from {data.get('source', '-')}, split "
                      f"{data.get('split', '-')}: {data.get('train_rows') or '-'} train, "
                      f"{data.get('holdout_rows', '-')} holdout"),
             ("gate", f"mode {record.get('gate_mode', '-')}, primary metric "
                      f"{record.get('primary_metric', '-')}"),
             ("when", f"{record.get('at', '-')} by {record.get('actor', '-')}")]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in items)
    excluded = ", ".join(f"{v} rows {k.replace('_', ' ')}" for k, v in h["excluded"].items())
    notes = "".join(f"<li>{e(n)}</li>" for n in h.get("notes") or [])
    return (f"<table class='facts'>{rows}</table>"
            f"<p class='holdout'>Holdout: {h['rows']} rows, <b>{h['clean_rows']} clean</b> "
            "(rows neither model trained on)"
            + (f"; excluded: {e(excluded)}" if excluded else "; none excluded") + "</p>"
            + (f"<ul class='notes'>{notes}</ul>" if notes else ""))


def _checks(record: Mapping[str, Any]) -> str:
    e = html.escape
    items = "".join(
        f"<li class='check {'pass' if c['passed'] else 'fail'}'><b>"
        f"{'pass' if c['passed'] else 'fail'}</b> {e(c['name'])}: {e(c['detail'])}</li>"
        for c in record.get("checks") or [])
    return f"<h2>Gate checks</h2><ul class='checks'>{items or '<li>no checks</li>'}</ul>"


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<div class='card {cls}'><h3>{e(title)}</h3><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _tables(record: Mapping[str, Any]) -> str:
    tables = comparison_tables(record)
    names = ["as-logged", "naive", "fair"] if len(tables) == 3 else \
        ["as-logged", "fair"] if len(tables) == 2 else ["fair"]
    cards = "".join(_table(t, h, r, f"comparison {n}")
                    for (t, h, r), n in zip(tables, names))
    return ("<h2>The comparison</h2><p>The article's table (each run's metrics as it logged "
            "them, on different test splits) beside the fair one (both models on the same "
            f"clean rows).</p><div class='row'>{cards}</div>")


def _differences(record: Mapping[str, Any]) -> str:
    from retrainer.metrics import GREATER_IS_BETTER

    diffs = record.get("differences") or {}
    if not diffs:
        return ""
    rows = []
    for metric, d in diffs.items():
        ci = next((v for k, v in d.items() if k.startswith("ci")), None)
        lo, hi = (ci or [None, None])[:2]
        delta = d.get("delta")
        if delta is None:
            continue
        better = None
        if lo is not None and hi is not None:
            up = GREATER_IS_BETTER.get(metric, True)
            better = True if (lo > 0 if up else hi < 0) else False if (hi < 0 if up else
                                                                       lo > 0) else None
        rows.append((metric, delta, lo, hi, better))
    level = round(next(iter(diffs.values())).get("confidence", 0.95) * 100)
    return (f"<h2>Challenger minus champion, {level}% paired bootstrap intervals</h2>"
            "<p>A dot is the difference on the clean rows, the bar its interval; green: the "
            "whole interval favours the challenger, red: the champion, blue: it straddles "
            f"zero.</p><div class='chart intervals'>{charts.intervals(rows)}</div>")


def _slices(record: Mapping[str, Any]) -> str:
    slices = record.get("slices") or []
    if not slices:
        return ""
    header = ["slice", "rows", "metric", "challenger", "champion", "change", "verdict"]
    rows = []
    for s in slices:
        rel = s.get("relative")
        verdict = {True: "ok", False: "worse than allowed"}.get(s.get("passed"),
                                                               s.get("status") or "")
        rows.append([str(s.get("slice", "-")), str(s.get("rows", "-")), str(s.get("metric", "-")),
                     fmt(s.get("challenger")), fmt(s.get("champion")),
                     f"{rel:+.1%}" if isinstance(rel, int | float) else "-", verdict])
    return "<h2>Slices</h2>" + _table("primary metric per slice, clean holdout", header, rows,
                                      "slices")


def _diagnostics(diag: Mapping[str, Any] | None, has_champion: bool) -> str:
    if not diag or not diag.get("rows"):
        return ("<h2>Predictions</h2><p class='muted'>No prediction data was recorded for this "
                "decision.</p>")
    figures = []
    if diag.get("task") == "regression" and diag.get("sample"):
        s = diag["sample"]
        series = [("challenger", s["actual"], s["challenger"], charts.BLUE)]
        if s.get("champion") is not None:
            series.insert(0, ("champion", s["actual"], s["champion"], charts.GREY))
        figures.append(("predicted vs actual", charts.scatter(
            [(n, a, p, c) for n, a, p, c in series], title="predicted vs actual",
            x_label="actual", y_label="predicted", diagonal=True)))
        figures.append(("residuals", charts.scatter(
            [(n, p, [x - y for x, y in zip(a, p)], c) for n, a, p, c in series],
            title="residuals (actual - predicted) vs predicted", x_label="predicted",
            y_label="residual", zero_line=True)))
        note = f"{s['rows']} of {diag['rows']} clean rows (a seeded sample)"
    else:
        labels = [str(v) for v in diag.get("labels") or []]
        for who, colour in (("champion", charts.GREY), ("challenger", charts.BLUE)):
            matrix = (diag.get("confusion") or {}).get(who)
            if matrix is not None:
                figures.append((f"{who} confusion matrix", charts.heatmap(
                    matrix, labels, title=f"{who} confusion matrix", colour=colour)))
        roc = diag.get("roc") or {}
        curves = [(f"{who} (AUC {r['auc']:.3f})", r["fpr"], r["tpr"], colour)
                  for who, colour in (("champion", charts.GREY), ("challenger", charts.BLUE))
                  if (r := roc.get(who))]
        if curves:
            figures.append(("ROC curves", charts.curves(
                curves, title="ROC curves", x_label="false positive rate",
                y_label="true positive rate")))
        elif "roc" not in diag:
            figures.append(("ROC curves", "<p class='muted'>ROC curves are drawn for two "
                                          "classes only.</p>"))
        note = f"all {diag['rows']} clean rows"
    legend = _legend(("champion", charts.GREY), ("challenger", charts.BLUE)) \
        if has_champion else _legend(("challenger", charts.BLUE))
    cards = "".join(f"<figure class='chart'><figcaption>{html.escape(t)}</figcaption>{svg}"
                    "</figure>" for t, svg in figures)
    return (f"<h2>Predictions on the clean holdout</h2><p>{html.escape(note)}.</p>{legend}"
            f"<div class='row'>{cards}</div>")


def _importance(section: Mapping[str, Any] | None) -> str:
    from retrainer.explain import moved_text, shares

    e = html.escape
    if not section or not (section.get("challenger") or section.get("champion")):
        notes = "; ".join((section or {}).get("notes") or []) or "not measured"
        return f"<h2>What the models rely on</h2><p class='muted'>{e(notes)}</p>"
    chall, champ = section.get("challenger") or {}, section.get("champion") or {}
    features = sorted(set(chall) | set(champ),
                      key=lambda f: -max(chall.get(f, 0.0), champ.get(f, 0.0)))
    sc, sp = shares(chall), shares(champ)
    series = ([("champion", [sp.get(f, 0.0) for f in features], charts.GREY)] if champ else [])
    series.append(("challenger", [sc.get(f, 0.0) for f in features], charts.BLUE))
    bars = charts.grouped_bars(features, series, title="share of permutation importance")
    rows = [[f, fmt(champ.get(f)) if champ else "-", f"{sp.get(f, 0):.1%}" if champ else "-",
             fmt(chall.get(f)), f"{sc.get(f, 0):.1%}"] for f in features]
    shift = section.get("shift") or {}
    line = ""
    if shift:
        nd, rc = shift.get("ndcg"), shift.get("rank_correlation")
        line = (f"<p class='shift'>Ranking shift: nDCG <b>{fmt(nd)}</b> (1 = same order; "
                f"SageMaker Clarify flags below 0.9), rank correlation <b>{fmt(rc)}</b>; "
                f"moved most: {e(moved_text(section))}.</p>")
    notes = "".join(f"<li>{e(n)}</li>" for n in section.get("notes") or [])
    how = (f"Permutation importance: how much {section.get('metric')} worsens when one input "
           f"is shuffled, on {section.get('rows')} of {section.get('clean_rows')} clean rows "
           f"(cap {section.get('max_rows')}), {section.get('repeats')} shuffles, seed "
           f"{section.get('seed')}.")
    legend = _legend(*(("champion", charts.GREY),) * bool(champ), ("challenger", charts.BLUE))
    return ("<h2>What the models rely on</h2>" + line + f"<p>{e(how)}</p>{legend}"
            f"<div class='row'><figure class='chart importance'>{bars}</figure>"
            + _table("importance", ["feature", "champion", "share", "challenger", "share"],
                     rows, "importance") + "</div>"
            + (f"<ul class='notes'>{notes}</ul>" if notes else "")
            + _shap(section.get("shap")))


def _shap(section: Mapping[str, Any] | None) -> str:
    """Mean |SHAP| beside permutation importance, or why there is none (older records: '')."""
    from retrainer.explain import shares

    e = html.escape
    if not section:
        return ""
    if section.get("skipped"):
        return (f"<h3 id='shap'>Mean |SHAP| per feature</h3><p class='muted shap'>Not computed: "
                f"{e(str(section['skipped']))}.</p>")
    chall, champ = section.get("challenger") or {}, section.get("champion") or {}
    features = sorted(set(chall) | set(champ),
                      key=lambda f: -max(chall.get(f, 0.0), champ.get(f, 0.0)))
    sc, sp = shares(chall), shares(champ)
    series = ([("champion", [sp.get(f, 0.0) for f in features], charts.GREY)] if champ else [])
    if chall:
        series.append(("challenger", [sc.get(f, 0.0) for f in features], charts.BLUE))
    bars = charts.grouped_bars(features, series, title="share of mean |SHAP|")
    rows = [[f, fmt(champ.get(f)) if champ else "-", f"{sp.get(f, 0):.1%}" if champ else "-",
             fmt(chall.get(f)) if chall else "-", f"{sc.get(f, 0):.1%}" if chall else "-"]
            for f in features]
    used = section.get("explainer") or {}
    kinds = (f"shap's {next(iter(used.values()))} explainer" if len(set(used.values())) == 1
             else "shap's explainers: " + ", ".join(f"{w} {used[w]}" for w in
                                                     ("champion", "challenger") if w in used))
    how = (f"Mean |SHAP| ({kinds}): how far each input moves the model's "
           f"output on average, in the output's units, on {section.get('rows')} clean rows "
           f"(cap {section.get('max_rows')}, seed {section.get('seed')}).")
    notes = "".join(f"<li>{e(n)}</li>" for n in section.get("notes") or [])
    return (f"<h3 id='shap'>Mean |SHAP| per feature</h3><p>{e(how)}</p>"
            f"<div class='row'><figure class='chart shap'>{bars}</figure>"
            + _table("mean |SHAP|", ["feature", "champion", "share", "challenger", "share"],
                     rows, "shap") + "</div>"
            + (f"<ul class='notes'>{notes}</ul>" if notes else ""))


def _timeline_section(timeline: Sequence[Mapping[str, Any]], metric: str) -> str:
    points = list(timeline)
    if not points:
        return ""
    svg = charts.timeline(points, title=f"{metric} across decisions", metric=metric)
    legend = _legend(("champion", charts.GREY), ("challenger", charts.BLUE))
    return (f"<h2>{html.escape(metric)} across decisions</h2><p>Oldest left. Each decision's "
            "clean holdout differs, so compare shapes, not decimals; green rings: promotions, "
            f"red dashed lines: rollbacks.</p>{legend}<div class='chart timeline'>{svg}</div>")


def _drift(drift: Mapping[str, Any] | None) -> str:
    e = html.escape
    if not drift:
        return ""
    if drift.get("note") and not drift.get("columns"):
        return f"<h2>Drift of the training data</h2><p class='muted'>{e(drift['note'])}</p>"
    cols = drift.get("columns") or []
    drifted = [c for c in cols if c.get("drifted")]
    verdict = "dataset drift" if drift.get("dataset_drift") else "no dataset drift"
    rows = [[c["column"], str(c.get("statistic") or "-"), fmt(c.get("value")),
             fmt(c.get("threshold")), "yes" if c.get("drifted") else "no"]
            for c in sorted(cols, key=lambda c: (not c.get("drifted"), c["column"]))]
    rows_info = drift.get("rows") or {}
    return (f"<h2>Drift of the training data against champion version "
            f"{e(str(drift.get('version', '?')))}'s profile</h2>"
            f"<p class='{'keep' if drift.get('dataset_drift') else 'ok'}'><b>{verdict}</b>: "
            f"{len(drifted)} of {len(cols)} columns drifted; reference "
            f"{rows_info.get('reference', '-')} rows, training {rows_info.get('current', '-')} "
            f"rows{e(drift.get('note') and '; ' + drift['note'] or '')}.</p>"
            + _table("columns", ["column", "statistic", "value", "threshold", "drifted"], rows,
                     "drift"))


def _legend(*items: tuple[str, str]) -> str:
    spans = "".join(f"<span style='background:{c}'></span>{html.escape(n)} " for n, c in items)
    return f"<p class='legend'>{spans}</p>"


def _row_class(entry: Mapping[str, Any]) -> str:
    if entry.get("what") in ROLLBACKS:
        return "rollback"
    return "moved" if entry.get("alias_moved") else "kept"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#101828;max-width:1200px}}
h1 small{{color:#667085;font-weight:normal;font-size:.6em}}
h2{{margin-top:1.6em;border-bottom:1px solid #eaecf0;padding-bottom:.2em}}
.verdict{{padding:.6em 1em;color:#fff;border-radius:6px;display:inline-block;font-size:1.3em;
margin:0}}.verdict.pass{{background:#027a48}}.verdict.keep{{background:#b54708}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #d0d5dd;padding:.3em .6em;
font-size:.9em;text-align:left}}table.facts th{{background:#f9fafb}}
.row{{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}}
.card h3{{font-size:.95em;margin:.2em 0;max-width:28em}}.comparison.fair h3{{color:#027a48}}
ul.checks{{list-style:none;padding:0}}li.check{{margin:.2em 0}}li.check b{{display:inline-block;
width:3em;border-radius:4px;text-align:center;color:#fff;margin-right:.4em}}
li.pass b{{background:#027a48}}li.fail b{{background:#b42318}}
.muted{{color:#667085}}.keep{{color:#b54708}}.ok{{color:#027a48}}
figure{{margin:0}}figcaption{{font-size:.9em;color:#475467}}
.legend span{{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em}}
tr.rollback td{{background:#fef3f2}}tr.moved td{{background:#ecfdf3}}
footer{{margin-top:2em;color:#667085;font-size:.8em}}
</style></head><body>
{body}
</body></html>
"""
