"""Write a judgement's report where people find it, and find it again.

Every judgement logs its page on the challenger's run: ``report.html`` for a cycle (the
challenger is the cycle's run), ``reports/<decision id>.html`` when a version registered
earlier is judged (its run may hold its own cycle's report). The record says where
(`record["report"]`). A report is an add-on: failing to write one is a warning, never a
failed judgement.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import history, progress
from retrainer.errors import UserError
from retrainer.report.html import record_entry, render_history, render_report, timeline_points

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config
    from retrainer.data import Dataset
    from retrainer.evaluation import Champion

log = logging.getLogger("retrainer")

CYCLE_ARTIFACT = "report.html"
#: Decisions drawn on the timeline, newest (the chart stays readable and small).
TIMELINE_POINTS = 60
#: Training rows compared with the champion's profile for the drift section, at most.
DRIFT_ROWS = 100_000


def publish(client: MlflowClient, cfg: Config, record: dict[str, Any], *,
            diagnostics: dict[str, Any] | None, champion: Champion | None,
            train_rows: Dataset | None) -> str | None:
    """Render the page and log it on the challenger's run; its `runs:/` URI, or None."""
    run_id = record["challenger"].get("run_id")
    if not run_id:
        return None
    artifact = CYCLE_ARTIFACT if train_rows is not None else \
        f"reports/{record['cycle_id']}.html"
    progress.step("writing the report")
    try:
        page = render_report(
            record, diagnostics=diagnostics,
            timeline=timeline(client, cfg, record),
            drift=training_drift(client, cfg, champion, train_rows))
        client.log_text(run_id, page, artifact)
    except Exception as err:  # noqa: BLE001 - the decision stands without its page
        log.warning("could not write the report of decision %s: %s", record["cycle_id"], err)
        return None
    return f"runs:/{run_id}/{artifact}"


def timeline(client: MlflowClient, cfg: Config,
             record: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Chart points of the newest decisions, this one (not logged yet) included."""
    entries = history.entries(client, cfg)
    if record is not None:
        # Its alias move is already logged and would show as a move without its decision.
        entries = [record_entry(record), *(e for e in entries
                                          if e.get("decision_id") != record.get("cycle_id"))]
    return timeline_points(entries[:TIMELINE_POINTS], cfg.primary_metric)


def training_drift(client: MlflowClient, cfg: Config, champion: Champion | None,
                   train_rows: Dataset | None) -> dict[str, Any] | None:
    """This cycle's training data against the champion's reference profile, when both exist."""
    if champion is None or train_rows is None or not champion.run_id:
        return None
    from retrainer.drift.profile import PROFILE_ARTIFACT, load_profile
    from retrainer.drift.statistics import compare

    with tempfile.TemporaryDirectory() as tmp:
        try:
            profile = load_profile(client.download_artifacts(champion.run_id, PROFILE_ARTIFACT,
                                                             tmp))
        except Exception:  # noqa: BLE001 - a champion logged without a profile
            return {"version": champion.version,
                    "note": f"champion version {champion.version} has no reference profile"}
    frame = train_rows.X
    note = None
    if len(frame) > DRIFT_ROWS:
        frame = frame.sample(DRIFT_ROWS, random_state=cfg.split.seed)
        note = f"a seeded sample of {DRIFT_ROWS:,} of {len(train_rows):,} training rows"
    columns = [c for c in profile["columns"] if c in frame.columns]
    report = compare(profile, frame[columns], share=cfg.drift.share,
                     key_columns=cfg.drift.key_columns, thresholds=cfg.drift.thresholds or None)
    doc = report.to_dict()
    doc.update(version=champion.version, note=note)
    return doc


# --------------------------------------------------------------------------- finding it

def find_record(client: MlflowClient, cfg: Config, *, version: str | None = None,
                run_id: str | None = None) -> tuple[dict[str, Any], str]:
    """The decision record asked for (newest by default) and the run it lives on."""
    if run_id is None:
        # Newest first; alias moves and repairs hold no record and are passed over.
        decisions = [e for e in history.entries(client, cfg) if e["what"] != "unfinished"]
        if version is not None:
            decisions = [e for e in decisions if str(e.get("version")) == str(version)]
        found = next((e for e in decisions if _record_of(client, e["run_id"]) is not None),
                     None)
        if found is None:
            raise UserError(f"no decision recorded for version {version} of {cfg.model!r}"
                            if version is not None else
                            f"no decision recorded for {cfg.model!r} yet: run `retrainer run`")
        run_id = found["run_id"]
    record = _record_of(client, run_id)
    if record is None:
        raise UserError(f"run {run_id} holds no decision record of {cfg.model!r}")
    if record.get("model") not in (None, cfg.model):
        raise UserError(f"run {run_id} is a decision about {record['model']!r}, "
                        f"not {cfg.model!r}")
    return record, run_id


def report_page(client: MlflowClient, cfg: Config, record: dict[str, Any]) -> str:
    """The page logged with the decision, or one rendered now from the record alone."""
    uri = record.get("report") or ""
    if uri.startswith("runs:/"):
        run_id, _, artifact = uri.removeprefix("runs:/").partition("/")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return Path(client.download_artifacts(run_id, artifact, tmp)).read_text(
                    encoding="utf-8")
            except Exception:  # noqa: BLE001 - deleted: render it again below
                pass
    return render_report(record, timeline=timeline(client, cfg))


def history_page(client: MlflowClient, cfg: Config) -> str:
    return render_history(cfg.model, history.entries(client, cfg), cfg.primary_metric)


def _record_of(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    """decision.json of a cycle run, or the record inside a judgement's event.json."""
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - a wrong id is the user's input
        raise UserError(f"no run {run_id!r} in this tracking store") from None
    kind = run.data.tags.get(f"{history.P}kind")
    name = "decision.json" if kind == "cycle" else "event.json" if kind == "event" else None
    if name is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            doc = json.loads(Path(client.download_artifacts(run_id, name, tmp)).read_text())
        except Exception:  # noqa: BLE001 - an unfinished cycle has none
            return None
    if kind == "event":
        doc = doc.get("record") if isinstance(doc.get("record"), dict) else None
    return doc if doc and "challenger" in doc and "decision" in doc else None
