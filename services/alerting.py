"""Alerting: failure-rate windows, error-signature incidents and missed schedules to PagerDuty; DLQ to Slack."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services import notify
from services.links import failures_path

OVERALL = "*"
WINDOW = timedelta(hours=1)
SLACK_BATCH = 20  # events per Slack message: a burst becomes several messages, none dropped
DLQ_CURSOR = "alerting.slack-dlq"


@dataclass(frozen=True)
class AlertConfig:
    """Thresholds and where links point."""

    threshold: float = 0.05
    min_executions: int = 20
    routing_key: str = ""
    public_url: str = ""
    incident_quiet: timedelta = timedelta(hours=1)
    incident_min_failures: int = 3


def failure_rates(conn: Connection, *, since: datetime, until: datetime, bucket: str = "hour") -> list[dict]:
    """Failure rate per workflow and overall per hour or day (the daily metric and its hourly detail)."""
    if bucket not in ("hour", "day"):
        raise ValueError("bucket must be hour or day")
    rows = conn.execute(sa.text(
        "SELECT date_trunc(:b, completed_at) AS bucket, COALESCE(workflow_id, '*') AS workflow_id, count(*) AS total, "
        "count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failed FROM execution_state "
        "WHERE completed_at >= :s AND completed_at < :u GROUP BY GROUPING SETS ((1, workflow_id), (1)) ORDER BY 1, 2"),
        {"b": bucket, "s": since, "u": until}).mappings()
    return [{**dict(r), "rate": r["failed"] / r["total"] if r["total"] else 0.0} for r in rows]


def window_rates(conn: Connection, *, now: datetime) -> dict[str, tuple[int, int]]:
    """(failed, total) per workflow and overall over the sliding hour ending now."""
    rows = conn.execute(sa.text(
        "SELECT COALESCE(workflow_id, '*') AS w, count(*) AS total, "
        "count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failed FROM execution_state "
        "WHERE completed_at > :s AND completed_at <= :now GROUP BY GROUPING SETS ((workflow_id), ())"),
        {"s": now - WINDOW, "now": now}).all()
    return {r.w: (r.failed, r.total) for r in rows}


def open_alerts(conn: Connection, kind: str) -> dict[str, dict[str, Any]]:
    """Alerts of a kind whose last recorded action is a trigger, by dedup key."""
    rows = conn.execute(sa.text(
        "SELECT DISTINCT ON (dedup_key) dedup_key, action, detail, created_at FROM alert_history "
        "WHERE kind = :k AND channel = 'pagerduty' ORDER BY dedup_key, id DESC"), {"k": kind}).mappings()
    return {r["dedup_key"]: dict(r) for r in rows if r["action"] == "trigger"}


def check_failure_rate(conn: Connection, cfg: AlertConfig, *, now: datetime) -> list[dict]:
    """Trigger when a sliding hour crosses the threshold (with enough executions); resolve when it falls back."""
    actions = []
    rates = window_rates(conn, now=now)
    opened = {a["detail"]["workflow_id"]: key for key, a in open_alerts(conn, "failure_rate").items()}
    crossing = {w for w, (failed, total) in rates.items()
                if total >= cfg.min_executions and total and failed / total > cfg.threshold}
    # The overall rate pages only when no single workflow's alert already explains it.
    if crossing - {OVERALL} or set(opened) - {OVERALL}:
        crossing.discard(OVERALL)
    for workflow_id, (failed, total) in sorted(rates.items()):
        rate = failed / total if total else 0.0
        if workflow_id in crossing and workflow_id not in opened:
            key = f"flowledger/failure-rate/{workflow_id}/{now:%Y-%m-%dT%H}"
            scope = "all workflows" if workflow_id == OVERALL else f"workflow {workflow_id}"
            summary = f"{rate:.1%} of executions failed in the last hour ({failed}/{total}) in {scope}"
            detail = {"workflow_id": workflow_id, "failed": failed, "total": total, "rate": rate,
                      "window_end": now.isoformat()}
            actions.append(_page(conn, cfg, "failure_rate", key, "trigger", summary, "critical", detail, now,
                                 link=_link(cfg, failures_path(
                                     since=now - WINDOW, until=now,
                                     workflow_id=None if workflow_id == OVERALL else workflow_id))))
    for workflow_id, key in opened.items():
        failed, total = rates.get(workflow_id, (0, 0))
        if total == 0 or failed / total <= cfg.threshold:
            detail = {"workflow_id": workflow_id, "failed": failed, "total": total, "window_end": now.isoformat()}
            actions.append(_page(conn, cfg, "failure_rate", key, "resolve", "failure rate back under threshold",
                                 "info", detail, now))
    return actions


def signature(workflow_id: str, step: str | None, message: str | None) -> str:
    """An error signature: workflow, step and the message with ids, numbers and quoted values normalised."""
    text = (message or "").lower()
    for pattern, repl in ((r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>"),
                          (r"[\w.+-]+@[\w-]+\.[\w.]+", "<email>"), (r"'[^']*'|\"[^\"]*\"", "<v>"),
                          (r"\b[0-9a-f]{16,}\b", "<hex>"), (r"\d+", "#"), (r"\s+", " ")):
        text = re.sub(pattern, repl, text)
    return f"{workflow_id}|{step or '-'}|{text.strip()[:300]}"


def check_incidents(conn: Connection, cfg: AlertConfig, *, now: datetime) -> list[dict]:
    """One alert per open incident (failures sharing a signature), resolved once it stops recurring."""
    rows = conn.execute(sa.text(
        "SELECT workflow_id, failed_step, error_message, completed_at FROM execution_state "
        "WHERE status IN ('failed', 'timed_out') AND completed_at > :s AND completed_at <= :now"),
        {"s": now - max(WINDOW, cfg.incident_quiet), "now": now}).all()
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(signature(row.workflow_id, row.failed_step, row.error_message), []).append(row)
    opened = open_alerts(conn, "incident")
    actions = []
    for sig, failures in groups.items():
        key = "flowledger/incident/" + hashlib.sha256(sig.encode()).hexdigest()[:24]
        if key in opened or len(failures) < cfg.incident_min_failures:
            continue
        first = failures[0]
        detail = {"signature": sig, "workflow_id": first.workflow_id, "step": first.failed_step,
                  "count": len(failures), "example": (first.error_message or "")[:500]}
        actions.append(_page(conn, cfg, "incident", key, "trigger",
                             f"{first.workflow_id}: {first.failed_step or 'execution'} failing: "
                             f"{(first.error_message or 'no message')[:120]} ({len(failures)}x)", "error",
                             detail, now, link=_link(cfg, failures_path(
                                 since=now - max(WINDOW, cfg.incident_quiet), until=now,
                                 workflow_id=first.workflow_id))))
    for key, alert in opened.items():
        sig = alert["detail"].get("signature")
        recent = [r for r in groups.get(sig, []) if r.completed_at > now - cfg.incident_quiet]
        if not recent:
            actions.append(_page(conn, cfg, "incident", key, "resolve", "incident stopped recurring", "info",
                                 {"signature": sig}, now))
    return actions


def check_missed_runs(conn: Connection, cfg: AlertConfig, *, now: datetime, grace: timedelta) -> list[dict]:
    """A workflow whose cron trigger should have fired (more than grace ago) without a scheduled run."""
    from apscheduler.triggers.cron import CronTrigger

    actions = []
    rows = conn.execute(sa.text(
        "SELECT DISTINCT ON (workflow_id) workflow_id, definition->'trigger' AS trig FROM workflow_versions "
        "ORDER BY workflow_id, version DESC")).all()
    for row in rows:
        cron = row.trig.get("cron") if isinstance(row.trig, dict) else None
        if not cron:
            continue
        trigger = CronTrigger.from_crontab(cron, timezone=UTC)
        due, probe = None, trigger.get_next_fire_time(None, now - timedelta(days=2))
        while probe is not None and probe <= now - grace:
            due, probe = probe, trigger.get_next_fire_time(probe, probe + timedelta(seconds=1))
        if due is None:
            continue
        ran = conn.execute(sa.text(
            "SELECT EXISTS (SELECT 1 FROM execution_state WHERE workflow_id = :w AND trigger_source = 'schedule' "
            "AND created_at >= :due)"), {"w": row.workflow_id, "due": due}).scalar()
        key = f"flowledger/missed-run/{row.workflow_id}/{due:%Y-%m-%dT%H:%M}"
        recorded = conn.execute(sa.text("SELECT 1 FROM alert_history WHERE dedup_key = :k"), {"k": key}).scalar()
        if not ran and not recorded:
            actions.append(_page(conn, cfg, "missed_run", key, "trigger",
                                 f"scheduled workflow {row.workflow_id} did not run at {due:%Y-%m-%d %H:%M} UTC",
                                 "warning", {"workflow_id": row.workflow_id, "due": due.isoformat(), "cron": cron},
                                 now))
    return actions


def post_dead_letters(conn: Connection, cfg: AlertConfig, *, now: datetime) -> int:
    """Queue Slack messages for every event dead-lettered since the last run; bursts grouped per message."""
    last = conn.execute(sa.text("SELECT last_id FROM search_progress WHERE consumer = :c"),
                        {"c": DLQ_CURSOR}).scalar() or 0
    rows = conn.execute(sa.text(
        "SELECT h.id, h.event_id, h.detail, e.event_type, e.source_system, x.workflow_id, x.error_message, "
        "x.execution_id, (SELECT max(attempt) FROM steps s WHERE s.execution_id = x.execution_id) AS attempts "
        "FROM event_status_history h JOIN event_state e ON e.event_id = h.event_id LEFT JOIN LATERAL "
        "(SELECT workflow_id, error_message, execution_id FROM execution_state WHERE event_id = h.event_id "
        "ORDER BY created_at DESC LIMIT 1) x ON true WHERE h.status = 'dead_lettered' AND h.id > :last "
        "ORDER BY h.id"), {"last": last}).all()
    for start in range(0, len(rows), SLACK_BATCH):
        chunk = rows[start:start + SLACK_BATCH]
        lines = [_dlq_line(cfg, r) for r in chunk]
        title = f"{len(chunk)} event(s) dead-lettered" + (f" (part {start // SLACK_BATCH + 1})" if len(rows) >
                                                          SLACK_BATCH else "")
        payload = {"text": title + "\n" + "\n".join(lines),
                   "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}}] +
                   [{"type": "section", "text": {"type": "mrkdwn", "text": line}} for line in lines]}
        notify.enqueue(conn, channel="slack", payload=payload, now=now)
        conn.execute(sa.text(
            "INSERT INTO alert_history (created_at, channel, kind, dedup_key, action, detail) VALUES (:now, 'slack', "
            "'dead_letter', NULL, 'post', CAST(:d AS jsonb))"),
            {"now": now, "d": json.dumps({"events": [str(r.event_id) for r in chunk]})})
    if rows:
        conn.execute(sa.text(
            "INSERT INTO search_progress (consumer, last_id, updated_at) VALUES (:c, :id, :now) "
            "ON CONFLICT (consumer) DO UPDATE SET last_id = EXCLUDED.last_id, updated_at = EXCLUDED.updated_at"),
            {"c": DLQ_CURSOR, "id": rows[-1].id, "now": now})
    return len(rows)


def _dlq_line(cfg: AlertConfig, row: Any) -> str:
    detail = row.detail or {}
    workflow = row.workflow_id or detail.get("workflow_id") or "-"
    error = (detail.get("error") or row.error_message or "no error recorded")[:300]
    attempts = detail.get("attempts") or row.attempts or "?"
    link = _link(cfg, f"/executions/{row.execution_id}" if row.execution_id else f"/events/{row.event_id}")
    return (f"• workflow `{workflow}` · event `{row.event_type or '-'}` from {row.source_system} · "
            f"{attempts} attempt(s) · {error} · <{link}|timeline>")


def _page(conn: Connection, cfg: AlertConfig, kind: str, key: str, action: str, summary: str, severity: str,
          detail: dict[str, Any], now: datetime, link: str = "") -> dict:
    """Queue a PagerDuty Events API v2 message and record it in alert_history, in one transaction."""
    event: dict[str, Any] = {"routing_key": cfg.routing_key, "event_action": action, "dedup_key": key}
    if action == "trigger":
        event["payload"] = {"summary": summary[:1024], "source": "flowledger", "severity": severity,
                            "component": detail.get("workflow_id", "flowledger"), "group": kind,
                            "class": kind, "timestamp": now.isoformat(), "custom_details": detail}
        if link:
            event["links"] = [{"href": link, "text": "Open in Flowledger"}]
    notify.enqueue(conn, channel="pagerduty", payload=event, now=now)
    conn.execute(sa.text(
        "INSERT INTO alert_history (created_at, channel, kind, dedup_key, action, detail) VALUES (:now, 'pagerduty', "
        ":k, :key, :a, CAST(:d AS jsonb))"),
        {"now": now, "k": kind, "key": key, "a": action, "d": json.dumps({**detail, "summary": summary}, default=str)})
    return {"kind": kind, "dedup_key": key, "action": action, "summary": summary}


def _link(cfg: AlertConfig, path: str) -> str:
    return (cfg.public_url.rstrip("/") or "http://localhost:8050") + path
