"""A decision record as Markdown (logged as decision.md) and the comparison tables."""

from __future__ import annotations

from typing import Any


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 100 else f"{value:.4f}"
    return str(value)


def comparison_tables(record: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for each comparison the record holds, the fair one last."""
    metrics = list((record.get("challenger") or {}).get("metrics", {}).keys())
    champ = record.get("champion")
    chall = record["challenger"]
    tables = []
    header = ["model", "version", *metrics]

    def row(label: str, version: str, values: dict[str, Any] | None) -> list[str]:
        values = values or {}
        return [label, version, *(fmt(values.get(m)) for m in metrics)]

    if champ is not None:
        tables.append((
            "As each run logged it (the article's comparison: two different test splits)",
            header,
            [row("challenger (new)", chall["version"], chall.get("metrics_as_logged")),
             row("champion (prod)", champ["version"], champ.get("metrics_as_logged"))]))
        if record.get("naive"):
            h = record["holdout"]
            leaked = h["excluded"].get("champion_trained_on", 0)
            tables.append((
                f"Both on this cycle's full holdout ({h['rows']} rows; the champion trained "
                f"on {leaked} of them)", header,
                [row("challenger", chall["version"], record["naive"].get("challenger")),
                 row("champion", champ["version"], record["naive"].get("champion"))]))
        h = record["holdout"]
        tables.append((
            f"Fair: both on the clean holdout ({h['clean_rows']} rows neither model trained on)",
            header,
            [row("challenger", chall["version"], chall.get("metrics")),
             row("champion", champ["version"], champ.get("metrics"))]))
    else:
        tables.append((f"Challenger on its holdout ({record['holdout']['clean_rows']} rows)",
                       header, [row("challenger", chall["version"], chall.get("metrics"))]))
    return tables


def differences_rows(record: dict[str, Any]) -> list[list[str]]:
    rows = []
    for metric, d in (record.get("differences") or {}).items():
        ci = next((v for k, v in d.items() if k.startswith("ci")), None)
        level = d.get("confidence", 0.95)
        interval = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "-"
        rows.append([metric, fmt(d.get("delta")), f"{round(level * 100)}% {interval}"])
    return rows


def bootstrap_notes(record: dict[str, Any]) -> list[str]:
    """How a large holdout was resampled (rows in groups, or capped rows), said once."""
    notes = []
    for metric, d in (record.get("differences") or {}).items():
        how = d.get("bootstrap") or {}
        if how.get("unit") == "group":
            notes.append(f"{metric}: {how.get('resamples', 0):,} resamples of "
                         f"{how['groups']:,} random groups of the {how.get('rows', 0):,} rows "
                         f"(about {how['rows_per_group']:.0f} rows each; the sums of a "
                         "group bootstrap have the row bootstrap's spread)")
        elif how.get("rows_per_resample"):
            notes.append(f"{metric}: {how.get('resamples', 0):,} resamples of "
                         f"{how['rows_per_resample']:,} of the {how.get('rows', 0):,} rows, "
                         f"the spread scaled by {how['scaled_by']:.3f} (m-out-of-n bootstrap)")
    return notes


SLICE_HEADER = ["slice", "rows", "challenger", "champion", "change", "interval", "verdict"]


def slice_rows(record: dict[str, Any]) -> list[list[str]]:
    """The per-slice table: both models' primary metric, relative change and the verdict."""
    rows = []
    for s in record.get("slices") or []:
        rel, ival = s.get("relative"), s.get("relative_interval")
        level = round((s.get("confidence") or 0.95) * 100)
        allowed = f"{(s.get('allowed') or 0) * 100:g}%"
        verdict = {True: "ok", False: f"worse than the {allowed} allowed"}.get(
            s.get("passed"), "")
        if s.get("status") == "too_small":
            verdict = "too small to judge"
        elif s.get("status") == "no_champion":
            verdict = "no champion to compare"
        rows.append([s["slice"], str(s["rows"]), f"{s['metric']} {fmt(s.get('challenger'))}",
                     fmt(s.get("champion")), f"{rel:+.1%}" if rel is not None else "-",
                     f"{level}% [{ival[0]:+.1%}, {ival[1]:+.1%}]" if ival else "-", verdict])
    return rows


def decision_head(record: dict[str, Any]) -> tuple[str, str]:
    """The decision with its notes in brackets, and the reason without them repeated."""
    notes = record.get("decision_notes") or []
    reason = record.get("reason") or ""
    if not notes:
        return record["decision"], reason
    joined = "; ".join(notes)
    if reason != joined:
        reason = reason.replace(joined + "; ", "", 1)
    return f"{record['decision']} ({joined})", reason


def to_markdown(record: dict[str, Any]) -> str:
    decision, reason = decision_head(record)
    policy = record.get("policy") or {}
    lines = [f"# {record['model']}: {decision}", "",
             f"- trigger: {record['trigger']}"
             + (f" ({record['trigger_reason']})" if record.get("trigger_reason") else ""),
             f"- reason: {reason}",
             f"- challenger: version {record['challenger']['version']} "
             f"(run {record['challenger']['run_id']})"]
    if record.get("champion"):
        lines.append(f"- champion: version {record['champion']['version']} "
                     f"(run {record['champion']['run_id']})")
    h = record["holdout"]
    excluded = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in h["excluded"].items())
    lines.append(f"- holdout: {h['rows']} rows, {h['clean_rows']} clean"
                 + (f" (excluded: {excluded})" if excluded else ""))
    for note in h.get("notes", []):
        lines.append(f"- note: {note}")
    if policy.get("name"):
        margin = policy.get("margin")
        lines.append(f"- policy: {policy['name']}"
                     + (f" (margin {margin * 100:g}%)" if margin is not None else "")
                     + (f", confidence {policy['confidence']}" if policy.get("confidence")
                        else ""))
    for title, header, rows in comparison_tables(record):
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    diffs = differences_rows(record)
    if diffs:
        lines += ["", "## Challenger minus champion (paired bootstrap)", "",
                  "| metric | delta | interval |", "|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in diffs]
        lines += [f"\n{how}" for how in bootstrap_notes(record)]
    slices = slice_rows(record)
    if slices:
        lines += ["", "## Slices (primary metric on the clean holdout)", "",
                  "| " + " | ".join(SLICE_HEADER) + " |", "|" + "---|" * len(SLICE_HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in slices]
    lines += ["", "## Checks", ""]
    lines += [f"- [{'x' if c['passed'] else ' '}] {c['name']}: {c['detail']}"
              for c in record.get("checks", [])]
    return "\n".join(lines) + "\n"
