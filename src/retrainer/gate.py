"""The validation gate: every check with its human-readable reason, then one decision.

Thresholds follow MLflow's ``MetricThreshold``: ``threshold`` is an absolute floor (or
ceiling when lower is better), ``min_absolute_change`` / ``min_relative_change`` say by
how much the challenger must beat the champion. ``all_metrics_improve`` is the article's
rule: every metric strictly better.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer.metrics import GREATER_IS_BETTER

if TYPE_CHECKING:
    from retrainer.config import GateConfig
    from retrainer.evaluation import Scores

FIRST_CHAMPION = "first_champion"
PROMOTED = "promoted"
KEPT = "kept_champion"
DRY_PROMOTE = "dry_run_would_promote"
DRY_KEEP = "dry_run_would_keep"
PROMOTING = {FIRST_CHAMPION, PROMOTED}
_HOUSEKEEPING = {"enough clean holdout rows", "schema compatible", "importance shift"}


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

    if has_champion:
        ok = scores.clean_rows >= gate.min_clean_rows
        checks.append(Check("enough clean holdout rows", ok,
                            f"{scores.clean_rows} clean rows "
                            f"{'>=' if ok else '<'} min_clean_rows {gate.min_clean_rows}"))

    for metric, t in gate.thresholds.items():
        value = new.get(metric, float("nan"))
        gib = _gib(metric, t.greater_is_better)
        if t.threshold is not None:
            ok = (value >= t.threshold) if gib else (value <= t.threshold)
            op = (">=" if ok else "<") if gib else ("<=" if ok else ">")
            checks.append(Check(f"{metric} {'floor' if gib else 'ceiling'}",
                                ok and not math.isnan(value),
                                f"{metric} {_fmt(value)} {op} {_fmt(t.threshold)}"))
        if not has_champion or old is None:
            continue
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

    if has_champion and old is not None and gate.all_metrics_improve:
        for metric in metrics:
            value, base = new.get(metric, float("nan")), old.get(metric, float("nan"))
            gib = GREATER_IS_BETTER[metric]
            ok = (value > base) if gib else (value < base)
            op = (">" if ok else "<=") if gib else ("<" if ok else ">=")
            checks.append(Check(f"{metric} improves", ok,
                                f"{metric} {_fmt(value)} {op} {_fmt(base)}"))

    if has_champion and gate.confidence is not None and metrics:
        primary = metrics[0]
        diff = scores.differences.get(primary)
        key = f"ci{round(gate.confidence * 100):d}"
        if diff and key in diff:
            lo, hi = diff[key]
            gib = GREATER_IS_BETTER[primary]
            ok = (lo > 0) if gib else (hi < 0)
            checks.append(Check(f"{primary} interval clears 0", ok,
                                f"{primary} difference {_fmt(diff['delta'])}, "
                                f"{round(gate.confidence * 100)}% CI [{_fmt(lo)}, {_fmt(hi)}]"
                                f"{' clears 0' if ok else ' includes 0'}"))
        else:
            checks.append(Check(f"{primary} interval clears 0", False,
                                "no bootstrap interval (too few clean rows)"))

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


def judge(scores: Scores, gate: GateConfig, metrics: list[str]) -> Verdict:
    """The decision for a scored challenger (champion may be absent on the first cycle)."""
    checks = checks_for(scores, gate, metrics)
    failed = [c for c in checks if not c.passed]
    passed = not failed
    first = scores.champion is None
    if passed:
        # The metric checks say why it passed; row counts and schema are in `checks`.
        said = [c.detail for c in checks if c.name not in _HOUSEKEEPING] or \
            [c.detail for c in checks]
        reason = "; ".join(said) or "no checks configured"
    else:
        reason = "; ".join(c.detail for c in failed)
    if first:
        reason = ("no champion yet" + (f": {reason}" if checks else "")) if passed else \
            f"no champion yet, and the first model fails: {reason}"

    if gate.mode == "disabled":
        return Verdict(FIRST_CHAMPION if first else PROMOTED, True,
                       f"gate disabled; {reason}", checks)
    if gate.mode == "dry_run":
        return Verdict(DRY_PROMOTE if passed else DRY_KEEP, passed, f"dry run: {reason}", checks)
    if passed:
        return Verdict(FIRST_CHAMPION if first else PROMOTED, True, reason, checks)
    return Verdict(KEPT, False, reason, checks)
