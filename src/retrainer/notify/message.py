"""What a notification says: one line for people, and the body each format posts.

The line names the model, the version, what happened and why, the primary metric on the
clean holdout with its bootstrap interval (for a judgement), and a link to the run when
the tracking server has an http(s) URL. Pure functions: no I/O, nothing of MLflow.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MAX_TEXT = 1500  # Slack truncates long texts; a line people read stays far below this


def one_line(model: str, event: str, payload: dict[str, Any]) -> str:
    """What happened, in one line (without the run link)."""
    p = payload
    version = version_of(p)
    actor = p.get("actor") or "someone"
    why = p.get("reason")
    if isinstance(p.get("challenger"), dict):  # a decision record
        text = _decision_line(model, event, p, version)
    elif event == "approved":
        text = f"{model}: {actor} approved version {version}: {_approved_outcome(p)}"
        why = f"reason: {p.get('reason')}"
        if p.get("summary"):
            why += f" | {p['summary']}"
    elif event == "rejected":
        text = f"{model}: {actor} rejected version {version}"
        why = f"reason: {p.get('reason')}" + (f" | {p['summary']}" if p.get("summary") else "")
    elif event in ("rollback", "auto_rollback"):
        who = "rolled back automatically" if event == "auto_rollback" else \
            f"rolled back by {actor}"
        text = (f"{model}: champion {who} to version {p.get('champion') or version} "
                f"(from {p.get('previous') or '?'})")
        why = f"reason: {why}" if why else None
    elif event == "drift":
        text, why = f"{model}: {why or 'data drifted'}", None
    elif event == "cycle_failed":
        attempt = f"attempt {p.get('attempt')} of {p.get('max_attempts')}" \
            if p.get("attempt") else "a cycle"
        end = "; giving up" if p.get("given_up") else (
            f"; retry after {p['retry_at']}" if p.get("retry_at") else "")
        text = (f"{model}: the {p.get('trigger') or 'retrain'} cycle failed ({attempt}{end}): "
                f"{p.get('error') or why}")
        why = None
    elif event == "test":
        text = f"{model}: test message from retrainer, sent by {actor}"
        why = "this receiver gets: " + ", ".join(p.get("events") or [])
    else:  # rollout events and anything newer: the event, the version, the reason
        text = f"{model}: {event.replace('_', ' ')}: version {version or '?'}"
    if why:
        text += f" — {why}"
    return _single_line(text)


def version_of(payload: dict[str, Any]) -> str | None:
    challenger = payload.get("challenger")
    if isinstance(challenger, dict):
        return challenger.get("version")
    value = payload.get("version")
    return None if value is None else str(value)


def _decision_line(model: str, event: str, record: dict[str, Any], version: str | None) -> str:
    champion = (record.get("champion") or {}).get("version")
    move = record.get("move") or {}
    trigger = record.get("trigger")
    head = {
        "first_champion": f"version {version} is the first champion",
        "promoted": f"promoted version {version} (champion was "
                    f"{move.get('previous') or champion})",
        "kept_champion": f"kept champion version {champion}; challenger version {version} "
                         "did not pass",
        "awaiting_approval": f"version {version} passed the gate and awaits approval "
                             f"(champion: {champion or 'none yet'})",
        "dry_run_would_promote": f"dry run: version {version} would be promoted "
                                 f"(champion {champion or 'none yet'})",
        "dry_run_would_keep": f"dry run: version {version} would not replace champion "
                              f"{champion}",
    }.get(event, f"{event.replace('_', ' ')}: version {version}")
    if record.get("kind") in ("manual_promotion", "forced_promotion"):
        head += f" ({record['kind'].replace('_', ' ')} by {record.get('actor') or '?'})"
    elif trigger:
        head += f" (trigger: {trigger})"
    parts = [f"{model}: {head}"]
    summary = metric_summary(record)
    if summary:
        parts.append(summary)
    if record.get("reason"):
        parts.append(f"why: {record['reason']}")
    if event == "awaiting_approval":
        parts.append(f"approve: retrainer approve {version} --reason …")
    return " — ".join(parts)


def _approved_outcome(p: dict[str, Any]) -> str:
    decision = p.get("decision")
    if decision == "first_champion":
        return "now the first champion"
    if decision == "promoted":
        return f"now champion (was {p.get('champion_before')})"
    return f"not promoted: {p.get('outcome') or decision}"


def metric_summary(record: dict[str, Any]) -> str | None:
    """'rmse 56.31 vs champion 56.45 on 67 clean holdout rows, difference -0.13 (95% CI
    -1.9 to 1.6)'; the first champion has no comparison."""
    metric = record.get("primary_metric")
    new = ((record.get("challenger") or {}).get("metrics") or {}).get(metric)
    if metric is None or new is None:
        return None
    holdout = record.get("holdout") or {}
    champion = record.get("champion")
    if not champion:
        return f"{metric} {num(new)} on {holdout.get('rows')} holdout rows"
    old = (champion.get("metrics") or {}).get(metric)
    text = (f"{metric} {num(new)} vs champion {num(old)} on {holdout.get('clean_rows')} "
            "clean holdout rows")
    diff = (record.get("differences") or {}).get(metric) or {}
    if diff.get("delta") is not None:
        text += f", difference {num(diff['delta'], sign=True)}"
        ci = next(((k, v) for k, v in diff.items() if k.startswith("ci") and v), None)
        if ci is not None:
            text += f" ({ci[0][2:]}% CI {num(ci[1][0])} to {num(ci[1][1])})"
    return text


def num(value: Any, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    text = f"{value:.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return f"+{text}" if sign and value > 0 else text


def _single_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def run_url(tracking_uri: str | None, experiment_id: str | None,
            run_id: str | None) -> str | None:
    """The MLflow UI page of a run, for a tracking server with an http(s) URL only.

    Credentials in the URL (user:password@) are dropped: links end up in chat.
    """
    if not (tracking_uri and experiment_id and run_id):
        return None
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def body(fmt: str, event: str, model: str, payload: dict[str, Any], text: str,
         link: str | None, at: str, delivery_id: str) -> bytes:
    """The request body: Slack's {"text", "blocks"}, or the generic JSON envelope."""
    version = version_of(payload)
    line = f"{text} — run: {link}" if link else text
    if fmt == "slack":
        mrkdwn = _slack_escape(text) + (f" — <{link}|run>" if link else "")
        context = f"event `{event}` · model `{_slack_escape(model)}`" + \
            (f" · version {version}" if version else "") + f" · {at}"
        doc: dict[str, Any] = {"text": line, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}]}
    else:
        doc = {"event": event, "model": model, "version": version,
               "decision": payload.get("decision") or event, "text": line,
               "at": at, "actor": payload.get("actor"), "run_url": link,
               "delivery_id": delivery_id, "record": payload}
    return json.dumps(doc, default=str, separators=(",", ":")).encode("utf-8")


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
