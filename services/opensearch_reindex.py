"""Reindex: send every step recorded (since a moment) to OpenSearch again, reporting progress per batch."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services.db import Database
from services.opensearch_client import OpenSearchIndex


def reindex(database: Database, index: OpenSearchIndex, *, since: datetime | None = None,
            progress: Callable[[int, int], None] | None = None) -> int:
    """Send every step (recorded since `since`) to _bulk again; progress(sent, total) after each batch."""
    index.ensure_template()
    sent = 0
    with database.reader() as conn:
        total = conn.execute(sa.text(
            "SELECT count(*) FROM steps WHERE CAST(:since AS timestamptz) IS NULL OR created_at >= :since"),
            {"since": since}).scalar_one()
        if progress:
            progress(0, total)
        for batch in _step_docs(conn, since, index.config.batch_size):
            index.bulk(batch)
            sent += len(batch)
            if progress:
                progress(sent, total)
    return sent


def _step_docs(conn: Connection, since: datetime | None, size: int) -> Iterator[list[dict[str, Any]]]:
    result = conn.execution_options(stream_results=True, yield_per=size).execute(sa.text(
        "SELECT flowledger_search_doc(to_jsonb(s), (SELECT workflow_id FROM executions e "
        "WHERE e.execution_id = s.execution_id LIMIT 1)) AS doc FROM steps s "
        "WHERE CAST(:since AS timestamptz) IS NULL OR s.created_at >= :since ORDER BY s.created_at, s.step_id"),
        {"since": since})
    for part in result.partitions(size):
        yield [r.doc for r in part]

