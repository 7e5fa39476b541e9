"""Dashboard links that services put in alerts and reports."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from services.rollups import FAILED


def failures_path(*, since: datetime, until: datetime, workflow_id: str | None = None) -> str:
    """The executions list of the runs that failed or timed out, finished in [since, until).

    The list's time filters take whole minutes: the window is widened to them, so the page holds at least
    the runs an alert or a report counted.
    """
    start = since.astimezone(UTC).replace(second=0, microsecond=0)
    end = until.astimezone(UTC)
    if end != end.replace(second=0, microsecond=0):
        end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    query = {"status": ",".join(FAILED), "finished_since": f"{start:%Y-%m-%dT%H:%M}",
             "finished_until": f"{end:%Y-%m-%dT%H:%M}"}
    if workflow_id:
        query["workflow"] = workflow_id
    return "/executions?" + urlencode(query)
