"""`retrainer history`: every decision and every alias move of a model, newest first.

MLflow keeps no alias history (mlflow/mlflow#2169), so retrainer writes its own into the
tracking store, as runs of the model's experiment tagged ``retrainer.model``:

- a cycle run (``retrainer.kind=cycle``) per retrain cycle, with ``decision.json``;
- an event run (``retrainer.kind=event``) per manual/forced promotion judgement
  (``retrainer.record=decision``), per alias move (``record=move``: first champion,
  promotion, rollback, approval) and per repair of a half-done move (``record=repair``);
  approvals, rejections and failed notifications are event runs too (``approved``,
  ``rejected``, ``notify_failed``);
- rollout steps (docs/rollout.md): a cycle or promotion decided ``canary_started``; event
  runs ``rollout_aborted`` (a decision), ``rollout_completed`` and ``auto_rollback``
  (a decision joined with its champion move by the decision id).

Each run carries a summary in its tags (see `registry.summary_tags`), so the whole history
is one paged `search_runs`, no artifact downloads. A move made by a decision is shown on
that decision's line (joined by the decision id); a move whose decision record is missing
(the process died after the alias moved) is shown on its own line and says so.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import registry
from retrainer.errors import UserError
from retrainer.redact import redact_all

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config

P = registry.PREFIX
#: Metric prefix of both models' clean-holdout metrics on a decision's run.
JUDGED = "judged."


def model_history(cfg: Config, limit: int | None = None,
                  client: MlflowClient | None = None) -> dict[str, Any]:
    """The history document `retrainer history --json` prints."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    client = client or registry.connect(cfg)
    repaired = registry.repair(client, cfg)
    items = entries(client, cfg)
    total = len(items)
    if limit is not None:
        items = items[:limit]
    champion = registry.current_champion(client, cfg.model, cfg.promote.alias)
    # Records written before redaction existed may quote a URL with its credentials.
    return redact_all({"model": cfg.model, "experiment": cfg.experiment_name, "total": total,
                       "champion": str(champion[0].version) if champion else None,
                       "champion_known_by": champion[1] if champion else None,
                       "repaired": repaired is not None, "entries": items})


def entries(client: MlflowClient, cfg: Config) -> list[dict[str, Any]]:
    """All history entries of the model, newest first."""
    runs = _runs(client, cfg)
    decisions: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    for run in runs:
        entry = _entry(client, run)
        if entry is None:
            continue
        (moves if entry.pop("_record") == "move" else decisions).append(entry)

    by_decision = {e["decision_id"]: e for e in decisions if e.get("decision_id")}
    out = list(decisions)
    for move in moves:
        owner = by_decision.get(move.get("decision_id") or "")
        if owner is not None:
            owner["alias_moved"] = True
            owner["champion_before"] = move["champion_before"]
            owner["champion_after"] = move["champion_after"]
            owner["previous"] = move["champion_before"]
            owner["move_run_id"] = move["run_id"]
            if owner["what"] == "unfinished":  # the cycle died after its alias moved
                owner["what"] = owner["decision"] = move["what"]
                owner["reason"] = move.get("reason")
                owner["note"] = ("the alias moved but the decision record is missing: the "
                                 "process ended after the move")
            continue
        if move["what"] != "rollback" and move.get("decision_id"):
            move["note"] = ("the alias moved but the decision record is missing: the process "
                            "ended after the move")
        out.append(move)
    repairs = {e["decision_id"]: e for e in decisions if e["what"] == "repair"
               and e.get("decision_id")}
    for entry in decisions:
        fix = repairs.get(entry.get("decision_id") or "")
        if entry["what"] == "unfinished" and fix is not None:
            entry["note"] = (f"the process ended during its promotion; the repair at "
                             f"{fix['at']} finished it")
    out.sort(key=lambda e: (e["at_ms"], e["run_id"]), reverse=True)
    return out


def latest_decision(client: MlflowClient, cfg: Config) -> dict[str, Any] | None:
    """The newest entry, for `retrainer status`."""
    for entry in entries(client, cfg):
        # A cycle still running has decided nothing yet; a failed notification decides
        # nothing either.
        if entry["what"] not in ("unfinished", "notify_failed"):
            return entry
    return None


def _runs(client: MlflowClient, cfg: Config) -> list[Any]:
    exp = client.get_experiment_by_name(cfg.experiment_name)
    if exp is None:
        return []
    found: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{P}model` = '{_quote(cfg.model)}'",
            order_by=["attributes.start_time DESC"], max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _entry(client: MlflowClient, run: Any) -> dict[str, Any] | None:
    tags = run.data.tags
    kind = tags.get(f"{P}kind")
    if kind not in ("cycle", "event"):
        return None
    record = tags.get(f"{P}record")
    if kind == "cycle":
        record = "decision"
        what = tags.get(f"{P}decision") or "unfinished"
    else:
        what = tags.get(f"{P}event") or "event"
        if record is None:  # an event written before summary tags existed
            record = "repair" if what == "repair" else "decision"
    at_ms = _int(tags.get(f"{P}at_ms")) or run.info.end_time or run.info.start_time or 0
    entry: dict[str, Any] = {
        "at": _iso(at_ms), "at_ms": at_ms, "what": what,
        "decision": tags.get(f"{P}decision") if kind == "cycle" else
        tags.get(f"{P}decision", what),
        "version": tags.get(f"{P}version"),
        "champion_before": tags.get(f"{P}champion_before"),
        "champion_after": tags.get(f"{P}champion_after"),
        "previous": None, "alias_moved": record in ("move", "repair"),
        "trigger": tags.get(f"{P}trigger"),
        "reason": tags.get(f"{P}reason"),
        "trigger_reason": tags.get(f"{P}trigger_reason"),
        "actor": tags.get(f"{P}actor") or tags.get("mlflow.user"),
        "decision_id": tags.get(f"{P}decision_id") or tags.get(f"{P}cycle_id"),
        "run_id": run.info.run_id, "source": kind, "_record": record,
    }
    # Both models' metrics on the decision's clean holdout, when it logged them (the
    # report's timeline): {"challenger.rmse": ..., "champion.rmse": ...}.
    judged = {k.removeprefix(JUDGED): v for k, v in run.data.metrics.items()
              if k.startswith(JUDGED)}
    if judged:
        entry["judged"] = judged
    if record in ("move", "repair"):
        entry["previous"] = entry["champion_before"]
    if kind == "cycle" and what == "unfinished":
        entry["reason"] = ("no decision recorded: the cycle is still running, or its process "
                           f"ended early (run status {run.info.status})")
    elif f"{P}at_ms" not in tags:  # written before the summary tags existed
        _fill_from_artifact(client, run, kind, entry)
    return entry


def _fill_from_artifact(client: MlflowClient, run: Any, kind: str,
                        entry: dict[str, Any]) -> None:
    """Runs logged before the summary tags existed: read the record itself."""
    name = "decision.json" if kind == "cycle" else "event.json"
    try:
        doc = json.loads(Path(client.download_artifacts(run.info.run_id, name)).read_text())
    except Exception:  # noqa: BLE001 - a record without its artifact still lists
        return
    rec = doc.get("record") if kind == "event" and isinstance(doc.get("record"), dict) else doc
    entry["version"] = (rec.get("challenger") or {}).get("version") or doc.get("champion")
    entry["champion_before"] = (rec.get("champion") or {}).get("version") \
        if isinstance(rec.get("champion"), dict) else doc.get("previous")
    move = rec.get("move") or {}
    entry["champion_after"] = move.get("champion") or entry["champion_before"]
    entry["reason"] = entry["reason"] or doc.get("reason") or rec.get("reason")
    entry["actor"] = doc.get("actor") or rec.get("actor") or entry["actor"]
    entry["trigger"] = entry["trigger"] or rec.get("trigger")
    if move:
        entry["alias_moved"] = True
        entry["previous"] = move.get("previous")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
