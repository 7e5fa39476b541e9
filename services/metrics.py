"""Overview metrics for a period: KPIs, hourly and daily failure rates, top failure categories."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from services import sqlblocks
from services.alerting import AlertConfig
from services.errors import InvalidInput
from services.rollups import FAILED, HOUR, TERMINAL, floor_hour

ALERT_THRESHOLD = 0.05
# An hour crosses the line the way paging sees it (alerting.AlertConfig): above the rate with at least
# this many finished runs. Without it, a quiet hour with one failure in two runs was flagged like a spike.
ALERT_MIN_EXECUTIONS = AlertConfig.min_executions
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
MAX_PERIOD = timedelta(days=366)


@dataclass(frozen=True)
class Period:
    """A half-open time window [since, until)."""

    since: datetime
    until: datetime


def period(name: str | None, *, now: datetime, since: datetime | None = None,
           until: datetime | None = None) -> Period:
    """The window named 24h/7d/30d ending now, or a custom one (since/until, until defaults to now)."""
    if name in (None, ""):
        name = "24h"
    if name == "custom":
        end = until or now
        if since is None or since >= end:
            raise InvalidInput("a custom period needs a start before its end")
        if end - since > MAX_PERIOD:
            raise InvalidInput("a custom period can span at most 366 days")
        return Period(since, end)
    if name not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)} or custom")
    return Period(now - PERIODS[name], now)


def _frame(conn: Connection, block: str, window: Period, **params: Any) -> pd.DataFrame:
    result = conn.execute(sqlblocks.load("metrics.sql")[block], _params(window, **params))
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _params(window: Period, **params: Any) -> dict[str, Any]:
    """The window itself and the whole UTC hours covering it (what the hourly rollup answers)."""
    until_hour = floor_hour(window.until)
    if until_hour < window.until:
        until_hour += HOUR
    return {"since": window.since, "until": window.until, "since_hour": floor_hour(window.since),
            "until_hour": until_hour, **params}


def outcomes(conn: Connection, *, window: Period, workflow_id: str | None = None,
             statuses: Sequence[str] | None = None) -> pd.DataFrame:
    """Runs per UTC hour and status over the whole hours covering the window (hour, status, executions).

    From the hourly rollup: a run counts as running in the hour it started and under its outcome in the
    hour it ended. The overview sums its KPIs, both rate charts and the donut from one such read; alone,
    each of them reads only the statuses it needs (None: all).
    """
    return _frame(conn, "outcomes", window, workflow=workflow_id, statuses=list(statuses) if statuses else None)


def kpis(conn: Connection, *, window: Period, workflow_id: str | None = None,
         counts: pd.DataFrame | None = None) -> dict[str, Any]:
    """Events received, runs started and finished, success rate (of finished runs), p95 duration, the DLQ size."""
    counts = outcomes(conn, window=window, workflow_id=workflow_id) if counts is None else counts
    by_status = counts.groupby("status")["executions"].sum()
    completed, finished = int(by_status.get("completed", 0)), int(by_status.reindex(TERMINAL).fillna(0).sum())
    failed = int(by_status.reindex(FAILED).fillna(0).sum())
    row = conn.execute(sqlblocks.load("metrics.sql")["kpis"], _params(window)).mappings().one()
    return {"events": row["events"], "executions": int(by_status.get("running", 0)), "completed": completed,
            "failed": failed, "success_rate": completed / finished if finished else None,
            "failure_rate": failed / finished if finished else None,
            "p95_ms": p95_duration(conn, window=window, workflow_id=workflow_id),
            "dead_lettered": row["dead_lettered"]}


def p95_duration(conn: Connection, *, window: Period, workflow_id: str | None = None) -> float | None:
    """p95 duration (ms) of the runs finished in the whole hours covering the window, within 5% (a histogram)."""
    value = conn.execute(sqlblocks.load("metrics.sql")["p95"], _params(window, workflow=workflow_id)).scalar()
    return float(value) if value is not None else None


def failure_rate_hourly(conn: Connection, *, window: Period, workflow_id: str | None = None,
                        threshold: float = ALERT_THRESHOLD, min_executions: int = ALERT_MIN_EXECUTIONS,
                        counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per hour: runs finished (executions), failed, rate and whether it crossed the alert line."""
    counts = outcomes(conn, window=window, workflow_id=workflow_id, statuses=TERMINAL) if counts is None else counts
    frame = _rates(_fill(_finished(counts, "hour", "h"), "hour", "h", window), threshold)
    if len(frame):
        frame["crossed"] &= frame["executions"] >= min_executions
    return frame


def failure_rate_daily(conn: Connection, *, window: Period, workflow_id: str | None = None,
                       counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per day: runs finished (executions), failed and rate."""
    counts = outcomes(conn, window=window, workflow_id=workflow_id, statuses=TERMINAL) if counts is None else counts
    return _rates(_fill(_finished(counts, "day", "D"), "day", "D", window), ALERT_THRESHOLD).drop(columns="crossed")


def _finished(counts: pd.DataFrame, column: str, freq: str) -> pd.DataFrame:
    """Runs that finished, and failed, per hour or UTC day, for the hours or days that had any."""
    done = counts[counts["status"].isin(TERMINAL)]
    return pd.DataFrame({
        column: pd.to_datetime(done["hour"], utc=True).dt.floor(freq),
        "executions": done["executions"],
        "failed": done["executions"].where(done["status"].isin(FAILED), 0),
    }).groupby(column, as_index=False).sum()


def _fill(frame: pd.DataFrame, column: str, freq: str, window: Period) -> pd.DataFrame:
    """Every hour or day of the window, quiet ones with zero runs, so charts span the whole period."""
    if frame.empty:
        return frame
    start = pd.Timestamp(window.since).tz_convert("UTC").floor(freq)
    end = pd.Timestamp(window.until).tz_convert("UTC").floor(freq)
    index = pd.date_range(start, end, freq=freq, name=column)
    frame = frame.assign(**{column: pd.to_datetime(frame[column], utc=True)}).set_index(column)
    return frame.reindex(index, fill_value=0).reset_index()


def crossings(hourly: pd.DataFrame) -> pd.DataFrame:
    """The hours whose failure rate crossed the alert line, most failures first."""
    return hourly[hourly["crossed"]].sort_values(["failed", "rate"], ascending=False).reset_index(drop=True)


def _rates(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    frame = frame.astype({"executions": int, "failed": int})
    runs = frame["executions"].where(frame["executions"] > 0)
    frame["rate"] = (frame["failed"] / runs).fillna(0.0).astype(float) if len(frame) else pd.Series(dtype=float)
    frame["crossed"] = frame["rate"] > threshold
    return frame


def status_counts(conn: Connection, *, window: Period, workflow_id: str | None = None,
                  counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Runs finished per outcome in the period, plus those started in it and still open (status, count)."""
    counts = outcomes(conn, window=window, workflow_id=workflow_id, statuses=TERMINAL) if counts is None else counts
    totals = counts[counts["status"].isin(TERMINAL)].groupby("status")["executions"].sum().to_dict()
    for status, n in conn.execute(sqlblocks.load("metrics.sql")["open_runs"], _params(window, workflow=workflow_id)):
        totals[status] = totals.get(status, 0) + n
    return pd.DataFrame(sorted(totals.items(), key=lambda item: -item[1]), columns=["status", "count"])


def top_failures(conn: Connection, *, window: Period, by: str, limit: int = 10) -> pd.DataFrame:
    """Failure counts grouped by event_type, workflow_id or error (ids blanked so one cause is one row)."""
    blocks = {"event_type": "failures_by_event_type", "workflow_id": "failures_by_workflow",
              "error": "failures_by_error"}
    if by not in blocks:
        raise InvalidInput(f"failures can be grouped by {', '.join(blocks)}")
    return _frame(conn, blocks[by], window, limit=limit)


def workflow_health(conn: Connection, *, window: Period) -> pd.DataFrame:
    """Per workflow: runs finished (executions), failed, failure rate and the last start in the period."""
    frame = _frame(conn, "workflow_health", window)
    return _rates(frame, ALERT_THRESHOLD)


def overview(conn: Connection, *, window: Period, workflow_id: str | None = None, threshold: float = ALERT_THRESHOLD,
             min_executions: int = ALERT_MIN_EXECUTIONS) -> dict[str, Any]:
    """Everything the overview page shows for one period, read in one transaction; hours cross the alert line
    by the rule paging uses (threshold and min_executions: the configured alerting settings)."""
    counts = outcomes(conn, window=window, workflow_id=workflow_id)
    hourly = failure_rate_hourly(conn, window=window, workflow_id=workflow_id, counts=counts, threshold=threshold,
                                 min_executions=min_executions)
    return {
        "kpis": kpis(conn, window=window, workflow_id=workflow_id, counts=counts),
        "hourly": hourly,
        "crossings": crossings(hourly),
        "daily": failure_rate_daily(conn, window=window, workflow_id=workflow_id, counts=counts),
        "status_counts": status_counts(conn, window=window, workflow_id=workflow_id, counts=counts),
        "by_event_type": top_failures(conn, window=window, by="event_type"),
        "by_workflow": top_failures(conn, window=window, by="workflow_id"),
        "by_error": top_failures(conn, window=window, by="error"),
    }
