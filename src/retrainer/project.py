"""Example projects: `retrainer init` writes one, `retrainer demo` runs the article on it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from retrainer.errors import UserError
from retrainer.redact import redact

EXAMPLES = ("diabetes",)
WEEK_AGO_ROWS = 20  # the article's production model never saw the last 20 rows
REPORT = "report.html"  # the demo's last judgement, written into the demo folder


def write_example(directory: Path, example: str = "diabetes", force: bool = False) -> list[Path]:
    """Copy the example's config and entrypoint into `directory` and write its data."""
    if example not in EXAMPLES:
        raise UserError(f"unknown example {example!r}; available: {', '.join(EXAMPLES)}")
    directory.mkdir(parents=True, exist_ok=True)
    source = resources.files("retrainer") / "examples" / example
    targets = [directory / "retrainer.yaml", directory / "train.py",
               directory / "data" / "diabetes.csv"]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise UserError(f"{existing[0]} already exists (use --force to overwrite)")
    for name in ("retrainer.yaml", "train.py"):
        with resources.as_file(source / name) as src:
            shutil.copyfile(src, directory / name)
    (directory / "data").mkdir(exist_ok=True)
    _diabetes_frame().to_csv(targets[2], index=False)
    return targets


def _diabetes_frame() -> Any:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True).frame


def run_demo(directory: Path, progress: Callable[[str], None] | None = None) -> list[dict]:
    """The article's scenario: v1 on all rows but the last 20, then retrain on all rows."""
    from retrainer.config import load
    from retrainer.cycle import run_cycle
    from retrainer.registry import connect

    say = progress or (lambda _text: None)
    directory = directory.resolve()
    if (directory / "mlflow.db").exists():
        raise UserError(f"{directory} already holds a demo store; remove it or pick another "
                        "folder")
    write_example(directory, "diabetes", force=True)
    full = _diabetes_frame()
    week_ago = directory / "data" / "diabetes_week_ago.csv"
    full.iloc[:-WEEK_AGO_ROWS].to_csv(week_ago, index=False)

    cfg = load(directory / "retrainer.yaml")
    client = connect(cfg)
    say(f"[1/2] a week ago: training version 1 on {len(full) - WEEK_AGO_ROWS} rows "
        f"(store: {redact(cfg.tracking_uri)})")
    first = run_cycle(cfg, data=str(week_ago), trigger="demo", client=client,
                      reason="the production model, trained a week ago")
    say(f"[2/2] today: retraining on all {len(full)} rows and judging against version "
        f"{first['challenger']['version']}")
    second = run_cycle(cfg, trigger="demo", client=client, reason="new data arrived")
    # The page a person would open: the second judgement, as logged on its run.
    from retrainer.report.publish import report_page

    (directory / REPORT).write_text(report_page(client, cfg, second), encoding="utf-8")
    return [first, second]


# The policies the demo compares on the article's data: (label, gate keys).
DEMO_POLICIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("superiority, no confidence (the article's rule)", {}),
    ("superiority, confidence 0.95", {"confidence": 0.95}),
    ("non_inferiority, margin 1%", {"policy": "non_inferiority", "margin": 0.01}),
    ("non_inferiority, margin 5%", {"policy": "non_inferiority", "margin": 0.05}),
)


def compare_policies(directory: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's last cycle judged again under each policy, with the gate's own code.

    Nothing is retrained or written: the record's clean-holdout scores and intervals are
    judged as `retrainer run` would judge them with those gate keys.
    """
    from retrainer.config import load
    from retrainer.evaluation import Scores
    from retrainer.gate import judge

    cfg = load(directory.resolve() / "retrainer.yaml")
    h = record["holdout"]
    scores = Scores(challenger=record["challenger"]["metrics"],
                    champion=(record.get("champion") or {}).get("metrics"),
                    naive=record.get("naive") or {}, holdout_rows=h["rows"],
                    clean_rows=h["clean_rows"], excluded=h["excluded"], notes=h["notes"],
                    differences=record.get("differences") or {},
                    schema=record.get("schema") or {},
                    training_rows=h.get("training_rows") or {})
    out = []
    for label, keys in DEMO_POLICIES:
        gate = cfg.gate.model_copy(update=keys)
        verdict = judge(scores, gate, cfg.metrics)
        out.append({"policy": label, "gate": keys, "decision": verdict.decision,
                    "reason": verdict.reason, "notes": verdict.notes})
    return out
