"""The validation gate: every check with its human-readable reason, then one decision.

Thresholds follow MLflow's ``MetricThreshold``: ``threshold`` is an absolute floor (or
ceiling when lower is better), ``min_absolute_change`` / ``min_relative_change`` say by
how much the challenger must beat the champion. ``all_metrics_improve`` is the article's
rule: every metric strictly better.

``policy: superiority`` (the default) asks the challenger to beat the champion; without
``confidence`` a win inside the noise is still taken (the article's rule) but the decision
says so. ``policy: non_inferiority`` promotes the fresher model unless the primary metric's
interval reaches past ``margin`` (relative): it replaces the comparative checks, floors stay.
Slices fail the gate when one is confidently worse than ``max_slice_degradation``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer.metrics import GREATER_IS_BETTER
from retrainer.provenance import UNKNOWN
from retrainer.slices import JUDGED

if TYPE_CHECKING:
    from retrainer.config import GateConfig
    from retrainer.evaluation import Scores
    from retrainer.slices import SliceScore

FIRST_CHAMPION = "first_champion"
PROMOTED = "promoted"
KEPT = "kept_champion"
DRY_PROMOTE = "dry_run_would_promote"
DRY_KEEP = "dry_run_would_keep"
PROMOTING = {FIRST_CHAMPION, PROMOTED}
_HOUSEKEEPING = {"enough clean holdout rows", "schema compatible", "slices",
                 "importance shift"}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Verdict:
    decision: str
    passed: bool
    reason: str
    checks: list[Check] = field(default_factory=list)
    # Said on the decision line whatever the outcome: promoted on noise, unknown rows.
    notes: list[str] = field(default_factory=list)

    @property
    def promotes(self) -> bool:
        return self.decision in PROMOTING

    def checks_dict(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.checks]


def _fmt(value: float) -> str:
    if value is None or math.isnan(value):
        return "nan"
    mag = abs(value)
    if mag >= 100:
        return f"{value:.2f}"
    if mag >= 1:
        return f"{value:.3f}".rstrip("0").rstrip(".") if mag < 10 else f"{value:.2f}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"


def _gib(metric: str, override: bool | None) -> bool:
    return GREATER_IS_BETTER[metric] if override is None else override


def checks_for(scores: Scores, gate: GateConfig, metrics: list[str]) -> list[Check]:
    """Every check the gate makes, with its detail line."""
    checks: list[Check] = []
    new = scores.challenger
    old = scores.champion
    has_champion = old is not None

    superiority = gate.policy == "superiority"

    if has_champion:
        ok = scores.clean_rows >= gate.min_clean_rows
        checks.append(Check("enough clean holdout rows", ok,
                            f"{scores.clean_rows} clean rows "
                            f"{'>=' if ok else '<'} min_clean_rows {gate.min_clean_rows}"))
    if scores.training_rows.get("challenger") == "unknown" and \
            gate.unknown_training_rows == "refuse":
        checks.append(Check("candidate training rows known", False,
                            f"{UNKNOWN} (gate.unknown_training_rows: refuse)"))

    for metric, t in gate.thresholds.items():
        value = new.get(metric, float("nan"))
        gib = _gib(metric, t.greater_is_better)
        if t.threshold is not None:
            ok = (value >= t.threshold) if gib else (value <= t.threshold)
            op = (">=" if ok else "<") if gib else ("<=" if ok else ">")
            checks.append(Check(f"{metric} {'floor' if gib else 'ceiling'}",
                                ok and not math.isnan(value),
                                f"{metric} {_fmt(value)} {op} {_fmt(t.threshold)}"))
        if not has_champion or old is None or not superiority:
            continue  # non_inferiority replaces the "must beat" checks; floors stay
        base = old.get(metric, float("nan"))
        gain = (value - base) if gib else (base - value)
        if t.min_absolute_change is not None:
            ok = gain >= t.min_absolute_change
            verb = "beats" if gain > 0 else ("ties" if gain == 0 else "trails")
            checks.append(Check(f"{metric} beats champion", ok and not math.isnan(gain),
                                f"{metric} {_fmt(value)} {verb} champion {_fmt(base)} by "
                                f"{_fmt(abs(gain))} ({'>=' if ok else '<'} "
                                f"{_fmt(t.min_absolute_change)} required)"))
        if t.min_relative_change is not None:
            rel = gain / abs(base) if base else float("nan")
            ok = rel >= t.min_relative_change
            checks.append(Check(f"{metric} relative gain", ok and not math.isnan(rel),
                                f"{metric} {_fmt(value)} vs champion {_fmt(base)}: "
                                f"{rel:+.2%} ({'>=' if ok else '<'} "
                                f"{t.min_relative_change:.2%} required)"))

    if has_champion and old is not None and gate.all_metrics_improve and superiority:
        for metric in metrics:
            value, base = new.get(metric, float("nan")), old.get(metric, float("nan"))
            gib = GREATER_IS_BETTER[metric]
            ok = (value > base) if gib else (value < base)
            op = (">" if ok else "<=") if gib else ("<" if ok else ">=")
            checks.append(Check(f"{metric} improves", ok,
                                f"{metric} {_fmt(value)} {op} {_fmt(base)}"))

    if has_champion and metrics and not superiority:
        checks.append(_non_inferiority(scores, gate, metrics[0]))
    elif has_champion and gate.confidence is not None and metrics:
        primary = metrics[0]
        diff = scores.differences.get(primary)
        key = f"ci{round(gate.confidence * 100):d}"
        if diff and key in diff and not _nan(*diff[key]):
            lo, hi = diff[key]
            gib = GREATER_IS_BETTER[primary]
            ok = (lo > 0) if gib else (hi < 0)
            worse = (hi < 0) if gib else (lo > 0)
            said = " clears 0" if ok else (": the challenger is confidently worse" if worse
                                            else " includes 0")
            checks.append(Check(f"{primary} interval clears 0", ok,
                                f"{primary} difference {_fmt(diff['delta'])}, "
                                f"{round(gate.confidence * 100)}% CI [{_fmt(lo)}, {_fmt(hi)}]"
                                f"{said}"))
        else:
            checks.append(Check(f"{primary} interval clears 0", False,
                                "no bootstrap interval (too few clean rows)"))

    if has_champion and gate.slices and metrics:
        checks.append(_slice_check(scores, gate))
    if has_champion and gate.max_importance_shift is not None:
        checks.append(_importance_check(scores.importance, gate.max_importance_shift))

    if scores.schema:
        compatible = bool(scores.schema.get("compatible", True))
        allowed = gate.schema_policy == "allow"
        detail = _schema_detail(scores.schema)
        checks.append(Check("schema compatible", compatible or allowed,
                            detail + (" (allowed by gate.schema: allow)"
                                      if not compatible and allowed else "")))
    return checks


def _importance_check(section: dict[str, Any], bound: Any) -> Check:
    """The challenger's reasons must stay close to the champion's (nDCG, rank correlation)."""
    from retrainer.explain import moved_text

    shift = (section or {}).get("shift") or {}
    ndcg, rho = shift.get("ndcg"), shift.get("rank_correlation")
    if ndcg is None:
        # A gate that cannot measure what it guards keeps the champion.
        why = "; ".join((section or {}).get("notes") or []) or "no importance to compare"
        return Check("importance shift", False, f"importance shift not measured: {why}")
    parts, ok = [], ndcg >= bound.ndcg_min
    parts.append(f"importance nDCG {ndcg:.2f} {'>=' if ok else '<'} {bound.ndcg_min:g}")
    if bound.rank_correlation_min is not None:
        rho_ok = rho is not None and rho >= bound.rank_correlation_min
        parts.append(f"rank correlation {_fmt(rho) if rho is not None else 'n/a'} "
                     f"{'>=' if rho_ok else '<'} {bound.rank_correlation_min:g}")
        ok = ok and rho_ok
    return Check("importance shift", ok,
                 ", ".join(parts) + f" (moved most: {moved_text(section)})")


def _schema_detail(schema: dict[str, Any]) -> str:
    parts = []
    if schema.get("removed"):
        parts.append("removed " + ", ".join(schema["removed"]))
    if schema.get("changed"):
        parts.append("retyped " + ", ".join(f"{c['column']} {c['from']}->{c['to']}"
                                            for c in schema["changed"]))
    if schema.get("added"):
        parts.append("added " + ", ".join(schema["added"]))
    if not parts:
        return "same input columns and types"
    return ("breaking: " if not schema.get("compatible", True) else "compatible: ") + \
        "; ".join(parts)


def _nan(*values: float | None) -> bool:
    return any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values)


def _rel(x: float, base: float) -> float:
    """`x` relative to the champion's value (a zero base makes any change infinite)."""
    if base:
        return x / abs(base)
    return 0.0 if x == 0 else math.copysign(math.inf, x)


def _share(x: float) -> str:
    """A margin or limit as a percentage, e.g. 0.05 -> 5%, 0.005 -> 0.5%."""
    return f"{x * 100:g}%"


def _signed(x: float) -> str:
    """An interval end, as rounded as its size allows: -76, +4.3, +0.0123."""
    mag = abs(x)
    return f"{x:+.0f}" if mag >= 10 else (f"{x:+.1f}" if mag >= 1 else f"{x:+.3g}")


def _versus(metric: str, value: float, base: float, delta: float, lo: float, hi: float,
            level: float) -> str:
    """`rmse 61.2 vs champion 55.0 (+11.3%, 95% [+4.1%, +18.9%])`: relative to the champion."""
    return (f"{metric} {_fmt(value)} vs champion {_fmt(base)} ({_rel(delta, base):+.1%}, "
            f"{round(level * 100)}% [{_rel(lo, base):+.1%}, {_rel(hi, base):+.1%}])")


def _worsening(metric: str, lo: float, hi: float) -> tuple[float, float]:
    """An interval of challenger - champion turned into "how much worse", low end first."""
    return (-hi, -lo) if GREATER_IS_BETTER[metric] else (lo, hi)


def _non_inferiority(scores: Scores, gate: GateConfig, metric: str) -> Check:
    """Promote unless the challenger may be worse than `margin`; say why when it may be."""
    name = f"{metric} within the {_share(gate.margin)} margin"
    diff = scores.differences.get(metric) or {}
    interval = diff.get(f"ci{round(gate.level * 100):d}")
    old = scores.champion or {}
    if not interval or _nan(*interval, diff.get("delta"), old.get(metric)):
        return Check(name, False, "no bootstrap interval (too few clean rows)")
    lo, hi = interval
    delta, base = diff["delta"], old[metric]
    head = _versus(metric, scores.challenger[metric], base, delta, lo, hi, gate.level)
    w_lo, w_hi = _worsening(metric, lo, hi)
    w = _worsening(metric, delta, delta)[0]
    limit = gate.margin * abs(base)
    if w_hi <= limit:
        return Check(name, True, f"{head}: at worst within the {_share(gate.margin)} margin")
    if w_lo > limit:
        return Check(name, False, f"{head}: the challenger is confidently worse, beyond the "
                                  f"{_share(gate.margin)} margin")
    if w >= limit:
        return Check(name, False, f"{head}: worse than the {_share(gate.margin)} margin on "
                                  "these rows, though not confidently")
    # The interval's half-width shrinks as 1/sqrt(rows): how many rows bring its worse end
    # inside the margin, if the difference stays what it is here.
    needed = math.ceil(scores.clean_rows * ((w_hi - w) / (limit - w)) ** 2)
    return Check(name, False, f"{head}: the evidence is too thin for the "
                              f"{_share(gate.margin)} margin: about {needed} clean rows would "
                              f"be needed ({scores.clean_rows} here)")


def judge_slice(s: SliceScore, gate: GateConfig) -> bool | None:
    """False when the slice is confidently worse than allowed; None when not judged."""
    if s.status != JUDGED or s.interval is None or _nan(*s.interval, s.champion):
        return None
    w_lo, _ = _worsening(s.metric, *s.interval)
    return not _rel(w_lo, s.champion or 0.0) > gate.max_slice_degradation


def _slice_line(s: SliceScore, gate: GateConfig) -> str:
    assert s.interval is not None and s.champion is not None and s.delta is not None
    op = "<" if GREATER_IS_BETTER[s.metric] else ">"
    sign = "-" if GREATER_IS_BETTER[s.metric] else ""
    return (f"slice {s.slice}: "
            f"{_versus(s.metric, s.challenger, s.champion, s.delta, *s.interval, s.confidence)}"
            f" {op} {sign}{_share(gate.max_slice_degradation)} allowed")


def _slice_check(scores: Scores, gate: GateConfig) -> Check:
    judged = [(s, judge_slice(s, gate)) for s in scores.slices]
    failed = [s for s, ok in judged if ok is False]
    small = [s for s, ok in judged if ok is None]
    if failed:
        return Check("slices", False, "; ".join(_slice_line(s, gate) for s in failed))
    n_ok = sum(1 for _, ok in judged if ok)
    metric = scores.slices[0].metric if scores.slices else ""
    detail = (f"no slice confidently worse than {_share(gate.max_slice_degradation)} on "
              f"{metric} ({n_ok} judged)")
    if small:
        detail += (f"; too small to judge (under {gate.slice_min_rows} clean rows): "
                   + ", ".join(f"{s.slice} ({s.rows})" for s in small))
    return Check("slices", True, detail)


def _notes(scores: Scores, gate: GateConfig, metrics: list[str], passed: bool) -> list[str]:
    """What the decision line must say beside the checks."""
    notes: list[str] = []
    if scores.training_rows.get("challenger") == "unknown" and \
            gate.unknown_training_rows == "warn":
        notes.append(UNKNOWN)
    notes.extend(scores.leakage_signs)
    if passed and scores.champion is not None and metrics and gate.policy == "superiority" \
            and gate.confidence is None:
        diff = scores.differences.get(metrics[0]) or {}
        key = next((k for k in diff if k.startswith("ci")), None)
        if key and not _nan(*diff[key]) and diff[key][0] < 0 < diff[key][1]:
            lo, hi = diff[key]
            notes.append(f"the difference is within noise: "
                         f"{round(diff.get('confidence', 0.95) * 100)}% interval "
                         f"{_signed(lo)}..{_signed(hi)} crosses 0")
    return notes


def judge(scores: Scores, gate: GateConfig, metrics: list[str]) -> Verdict:
    """The decision for a scored challenger (champion may be absent on the first cycle)."""
    checks = checks_for(scores, gate, metrics)
    failed = [c for c in checks if not c.passed]
    passed = not failed
    first = scores.champion is None
    notes = _notes(scores, gate, metrics, passed)
    if passed:
        # The metric checks say why it passed; row counts and schema are in `checks`.
        said = [c.detail for c in checks if c.name not in _HOUSEKEEPING] or \
            [c.detail for c in checks]
        reason = "; ".join(notes + said) or "no checks configured"
    else:
        reason = "; ".join(notes + [c.detail for c in failed])
    if first:
        reason = ("no champion yet" + (f": {reason}" if checks or notes else "")) if passed \
            else f"no champion yet, and the first model fails: {reason}"

    if gate.mode == "disabled":
        return Verdict(FIRST_CHAMPION if first else PROMOTED, True,
                       f"gate disabled; {reason}", checks, notes)
    if gate.mode == "dry_run":
        return Verdict(DRY_PROMOTE if passed else DRY_KEEP, passed, f"dry run: {reason}",
                       checks, notes)
    if passed:
        return Verdict(FIRST_CHAMPION if first else PROMOTED, True, reason, checks, notes)
    return Verdict(KEPT, False, reason, checks, notes)


def extend_record(record: dict[str, Any], verdict: Verdict, scores: Scores,
                  gate: GateConfig) -> None:
    """The decision record's policy, decision notes, per-slice table and training-row facts."""
    record["policy"] = {"name": gate.policy,
                        "margin": gate.margin if gate.policy == "non_inferiority" else None,
                        "confidence": gate.confidence, "interval_confidence": gate.level}
    record["decision_notes"] = list(verdict.notes)
    record["slices"] = [slice_row(s, gate) for s in scores.slices]
    holdout = record.setdefault("holdout", {})
    holdout["training_rows"] = dict(scores.training_rows)
    if scores.candidate_inputs is not None:
        holdout["candidate_inputs"] = scores.candidate_inputs


def slice_row(s: SliceScore, gate: GateConfig) -> dict[str, Any]:
    """One row of the record's slice table: values, relative change and the gate's verdict."""
    row = s.as_dict()
    base = s.champion
    ok = judge_slice(s, gate)
    row["relative"] = _rel(s.delta, base) if not _nan(s.delta, base) else None
    row["relative_interval"] = ([_rel(v, base) for v in s.interval]
                                if s.interval is not None and not _nan(base) else None)
    row["passed"] = ok
    row["allowed"] = gate.max_slice_degradation
    return row
