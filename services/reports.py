"""The weekly summary email: totals, success rate and its change, top failures, replays, slow steps, retention."""
from __future__ import annotations

import html
import struct
import zlib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services.links import failures_path

TERMINAL_SQL = "status IN ('completed', 'failed', 'timed_out', 'cancelled')"
FAILED_SQL = "status IN ('failed', 'timed_out')"


def week_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The seven days ending at the start of today (UTC)."""
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=7), end


def _outcomes(conn: Connection, start: datetime, end: datetime) -> dict[str, int]:
    row = conn.execute(sa.text(
        f"SELECT count(*) FILTER (WHERE {TERMINAL_SQL}) AS finished, count(*) FILTER (WHERE status = 'completed') "
        f"AS completed, count(*) FILTER (WHERE {FAILED_SQL}) AS failed FROM execution_state "
        "WHERE completed_at >= :s AND completed_at < :e"), {"s": start, "e": end}).one()
    return {"finished": row.finished, "completed": row.completed, "failed": row.failed}


def weekly_summary(conn: Connection, *, now: datetime, public_url: str = "", near_days: int = 14) -> dict[str, Any]:
    """Everything the weekly email shows, as plain data."""
    start, end = week_bounds(now)
    p = {"s": start, "e": end}
    this, previous = _outcomes(conn, start, end), _outcomes(conn, start - timedelta(days=7), start)
    rate = this["completed"] / this["finished"] if this["finished"] else None
    prev_rate = previous["completed"] / previous["finished"] if previous["finished"] else None
    failures = (f"FROM execution_state x LEFT JOIN event_state v ON v.event_id = x.event_id WHERE x.{FAILED_SQL} "
                "AND x.completed_at >= :s AND x.completed_at < :e AND x.execution_id NOT IN "
                "(SELECT execution_id FROM executions WHERE replay_of IS NOT NULL AND created_at >= :s)")
    by_type = conn.execute(sa.text(
        f"SELECT COALESCE(v.event_type, '(' || x.trigger_source || ')') AS k, count(*) AS n {failures} "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5"), p).all()
    by_workflow = conn.execute(sa.text(
        f"SELECT x.workflow_id AS k, count(*) AS n {failures} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5"), p).all()
    fixed = conn.execute(sa.text(
        f"SELECT count(*) FILTER (WHERE fixed) AS fixed, count(*) FILTER (WHERE NOT fixed) AS failing FROM ("
        f"SELECT EXISTS (SELECT 1 FROM executions r JOIN execution_state rs ON rs.execution_id = r.execution_id "
        f"WHERE (r.replay_of = x.execution_id OR (r.event_id = x.event_id AND r.replay_of IS NOT NULL)) "
        f"AND rs.status = 'completed') AS fixed {failures}) f"), p).one()
    slowest = conn.execute(sa.text(
        "SELECT x.workflow_id, s.step_name, count(*) AS runs, round(avg(s.duration_ms)) AS avg_ms, "
        "percentile_disc(0.95) WITHIN GROUP (ORDER BY s.duration_ms) AS p95_ms FROM steps s "
        "JOIN execution_state x ON x.execution_id = s.execution_id WHERE s.created_at >= :s AND s.created_at < :e "
        "AND s.duration_ms IS NOT NULL GROUP BY 1, 2 ORDER BY p95_ms DESC, avg_ms DESC LIMIT 5"), p).mappings().all()
    retention = conn.execute(sa.text(
        "WITH pol AS (SELECT DISTINCT ON (workflow_id) workflow_id, retention_days, legal_hold FROM workflow_versions "
        "ORDER BY workflow_id, version DESC) SELECT pol.workflow_id, pol.retention_days, pol.legal_hold, "
        "count(x.execution_id) FILTER (WHERE pol.retention_days IS NOT NULL AND x.completed_at < "
        ":now - make_interval(days => pol.retention_days - :near)) AS expiring, count(x.execution_id) AS executions "
        "FROM pol LEFT JOIN execution_state x ON x.workflow_id = pol.workflow_id GROUP BY 1, 2, 3 "
        "HAVING pol.legal_hold OR count(x.execution_id) FILTER (WHERE pol.retention_days IS NOT NULL AND "
        "x.completed_at < :now - make_interval(days => pol.retention_days - :near)) > 0 ORDER BY 1"),
        {"now": now, "near": near_days}).mappings().all()
    daily = conn.execute(sa.text(
        f"SELECT d::date AS day, count(x.*) FILTER (WHERE x.{FAILED_SQL}) AS failed, count(x.*) AS finished "
        "FROM generate_series(:s, :e - interval '1 day', interval '1 day') d LEFT JOIN execution_state x "
        f"ON x.completed_at >= d AND x.completed_at < d + interval '1 day' AND x.{TERMINAL_SQL} GROUP BY 1 ORDER BY 1"),
        p).all()
    events = conn.execute(sa.text("SELECT count(*) FROM event_state WHERE received_at >= :s AND received_at < :e"),
                          p).scalar_one()
    base = (public_url or "http://localhost:8050").rstrip("/")
    return {
        "start": start, "end": end, "events_processed": events, **this,
        "success_rate": rate, "previous_success_rate": prev_rate,
        "change_points": (rate - prev_rate) * 100 if rate is not None and prev_rate is not None else None,
        "top_failures_by_event_type": [(r.k, r.n) for r in by_type],
        "top_failures_by_workflow": [(r.k, r.n) for r in by_workflow],
        "fixed_by_replay": fixed.fixed, "still_failing": fixed.failing,
        "slowest_steps": [dict(r) for r in slowest], "retention": [dict(r) for r in retention],
        "daily_failure_rate": [(r.day, r.failed / r.finished if r.finished else 0.0) for r in daily],
        # the week's failures as the summary counts them (failed or timed out, by when they finished), and the
        # dead letters page, where replays start (there is no /replay page)
        "links": {"overview": base + "/",
                  "failures": base + failures_path(since=start, until=end),
                  "replay": base + "/dlq"},
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def render_text(summary: dict[str, Any]) -> str:
    """The plain-text part."""
    change = summary["change_points"]
    lines = [
        f"Flowledger weekly summary {summary['start']:%Y-%m-%d} to {summary['end']:%Y-%m-%d}", "",
        f"Events processed: {summary['events_processed']}",
        f"Executions finished: {summary['finished']} (failed: {summary['failed']})",
        f"Success rate: {_pct(summary['success_rate'])}"
        + (f" ({change:+.1f} points vs previous week)" if change is not None else ""),
        f"Failures fixed by replay: {summary['fixed_by_replay']}; still failing: {summary['still_failing']}", "",
        "Top failures by event type:", *[f"  {k}: {n}" for k, n in summary["top_failures_by_event_type"]],
        "Top failures by workflow:", *[f"  {k}: {n}" for k, n in summary["top_failures_by_workflow"]],
        "Slowest steps (p95):",
        *[f"  {s['workflow_id']} / {s['step_name']}: p95 {s['p95_ms']} ms, avg {s['avg_ms']} ms"
          for s in summary["slowest_steps"]],
        "Retention:",
        *[f"  {r['workflow_id']}: " + ("LEGAL HOLD" if r["legal_hold"] else f"{r['expiring']} execution(s) reach "
          f"the end of their {r['retention_days']}-day retention within 14 days") for r in summary["retention"]],
        "", f"Dashboard: {summary['links']['overview']}", f"Failures: {summary['links']['failures']}",
    ]
    return "\n".join(lines) + "\n"


def render_html(summary: dict[str, Any], chart_cid: str) -> str:
    """The HTML part; the chart is an inline image referenced by Content-ID."""
    def rows(pairs: list) -> str:
        return "".join(f"<tr><td>{html.escape(str(k))}</td><td>{n}</td></tr>" for k, n in pairs) or \
            "<tr><td colspan=2>none</td></tr>"
    change = summary["change_points"]
    slow = "".join(f"<tr><td>{html.escape(s['workflow_id'])}</td><td>{html.escape(s['step_name'])}</td>"
                   f"<td>{s['p95_ms']}</td><td>{s['avg_ms']}</td></tr>" for s in summary["slowest_steps"])
    kept = "".join(f"<li>{html.escape(r['workflow_id'])}: " + ("legal hold" if r["legal_hold"] else
                   f"{r['expiring']} execution(s) near the end of retention") + "</li>" for r in summary["retention"])
    links = summary["links"]
    return (
        f"<html><body><h2>Flowledger weekly summary {summary['start']:%Y-%m-%d} – {summary['end']:%Y-%m-%d}</h2>"
        f"<p>Events processed: <b>{summary['events_processed']}</b><br>Executions finished: {summary['finished']} "
        f"(failed {summary['failed']})<br>Success rate: <b>{_pct(summary['success_rate'])}</b>"
        + (f" ({change:+.1f} points vs previous week)" if change is not None else "") + "<br>"
        f"Fixed by replay: {summary['fixed_by_replay']} · still failing: {summary['still_failing']}</p>"
        f'<p><img src="cid:{chart_cid[1:-1]}" alt="daily failure rate" width="560" height="200"></p>'
        f"<h3>Top failures by event type</h3><table>{rows(summary['top_failures_by_event_type'])}</table>"
        f"<h3>Top failures by workflow</h3><table>{rows(summary['top_failures_by_workflow'])}</table>"
        f"<h3>Slowest steps</h3><table><tr><th>workflow</th><th>step</th><th>p95 ms</th><th>avg ms</th></tr>{slow}"
        f"</table><h3>Retention</h3><ul>{kept or '<li>nothing near its end; no legal holds</li>'}</ul>"
        f'<p><a href="{links["overview"]}">Dashboard</a> · <a href="{links["failures"]}">Failures</a> · '
        f'<a href="{links["replay"]}">Replay</a></p></body></html>')


def chart_png(rates: list[tuple[Any, float]], *, threshold: float = 0.05, width: int = 560, height: int = 200) -> bytes:
    """A bar chart of daily failure rates as PNG, drawn without plotting libraries (kaleido is not installed)."""
    top = max([r for _, r in rates] + [threshold * 2, 0.01])
    pixels = [[(255, 255, 255)] * width for _ in range(height)]
    n = max(1, len(rates))
    slot = width // n
    for i, (_, rate) in enumerate(rates):
        bar = int((height - 10) * rate / top)
        colour = (214, 39, 40) if rate > threshold else (44, 160, 44)
        for y in range(height - bar, height):
            for x in range(i * slot + slot // 6, (i + 1) * slot - slot // 6):
                pixels[y][x] = colour
    line = height - int((height - 10) * threshold / top)
    for x in range(0, width, 2):
        pixels[max(0, line - 1)][x] = (255, 127, 14)
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def build_email(summary: dict[str, Any], *, sender: str, to: list[str], threshold: float = 0.05) -> EmailMessage:
    """The multipart email: plain text, HTML, and the chart as an inline PNG."""
    message = EmailMessage()
    message["Subject"] = (f"Flowledger weekly summary: {_pct(summary['success_rate'])} success, "
                          f"{summary['events_processed']} events")
    message["From"] = sender
    message["To"] = ", ".join(to)
    cid = make_msgid(domain="flowledger")
    message.set_content(render_text(summary))
    message.add_alternative(render_html(summary, cid), subtype="html")
    message.get_payload()[1].add_related(chart_png(summary["daily_failure_rate"], threshold=threshold),
                                         maintype="image", subtype="png", cid=cid, filename="failure-rate.png")
    return message
