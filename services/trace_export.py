"""OTLP export from the otlp_exports queue: stored ids as SDK spans, retried with backoff, off the request path."""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from services import tracing
from services.db import Database
from services.errors import NotFound
from services.tracing import TERMINAL, SpanData, TraceData

log = logging.getLogger(__name__)
SCOPE = InstrumentationScope(tracing.SCOPE_NAME)

CLAIM_SQL = sa.text(
    "WITH due AS (SELECT id FROM otlp_exports WHERE state = 'pending' AND next_attempt_at <= :now "
    "ORDER BY next_attempt_at, id LIMIT :batch FOR UPDATE SKIP LOCKED) "
    "UPDATE otlp_exports o SET next_attempt_at = :lease FROM due WHERE o.id = due.id "
    "RETURNING o.id, o.execution_id, o.kind, o.attempts")
SENT_SQL = sa.text(
    "UPDATE otlp_exports SET state = 'sent', sent_at = :now, attempts = attempts + :tried, last_error = :note "
    "WHERE id = :id")
RETRY_SQL = sa.text(
    "UPDATE otlp_exports SET attempts = attempts + 1, next_attempt_at = :next, last_error = :error WHERE id = :id")
PURGE_SQL = sa.text(
    "DELETE FROM otlp_exports WHERE id IN (SELECT id FROM otlp_exports WHERE state = 'sent' "
    "AND sent_at < :cutoff LIMIT 1000)")


@dataclass
class DrainResult:
    """What one pass over the queue did."""

    sent: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Backoff:
    """Per-row exponential backoff: base * 2**attempts, capped; the lease covers one export call."""

    base_s: float = 1.0
    max_s: float = 300.0
    lease_s: float = 60.0
    keep_sent_s: float = 86_400.0

    def delay(self, attempts: int) -> timedelta:
        """The wait after a row's attempts-th failure (attempts counted before this one)."""
        return timedelta(seconds=min(self.max_s, self.base_s * 2 ** min(attempts, 30)))


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: a collector base URL gets /v1/traces appended, a full one is kept."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def make_exporter(endpoint: str, *, timeout_s: float = 3.0) -> SpanExporter:
    """An OTLP/HTTP exporter whose whole export call (its own retries included) ends within timeout_s."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=timeout_s)


def to_readable_spans(trace: TraceData) -> list[ReadableSpan]:
    """SDK spans carrying exactly the stored trace id, span ids and parent links."""
    resource = Resource.create(trace.resource)
    return [_readable(span, resource) for span in trace.spans]


def drain_exports(database: Database, exporter: SpanExporter, *, now: datetime | None = None, batch: int = 100,
                  backoff: Backoff = Backoff()) -> DrainResult:
    """Export the due rows once; on a collector failure every claimed row backs off and stays queued."""
    now = now or datetime.now(UTC)
    with database.writer() as conn:
        conn.execute(PURGE_SQL, {"cutoff": now - timedelta(seconds=backoff.keep_sent_s)})
        rows = sorted(conn.execute(CLAIM_SQL, {"now": now, "batch": batch,
                                               "lease": now + timedelta(seconds=backoff.lease_s)}).all())
    result = DrainResult()
    for index, row in enumerate(rows):
        try:
            with database.reader() as conn:
                trace = tracing.load_trace(conn, row.execution_id, now=now)
        except NotFound:
            _mark_sent(database, row.id, now, tried=0, note="skipped: execution no longer in the ledger")
            result.skipped += 1
            continue
        except Exception as exc:  # a read error must not stall the queue behind this row
            log.exception("trace of execution %s could not be read", row.execution_id)
            _retry(database, [row], now, backoff, f"reading the trace failed: {exc}")
            result.failed += 1
            continue
        if row.kind == "running" and trace.status in TERMINAL:
            _mark_sent(database, row.id, now, tried=0, note="skipped: superseded by the final export")
            result.skipped += 1
            continue
        if row.kind == "running":
            trace.spans = trace.spans[:1]  # only the root: each step span is sent once, with the final export
        error = _export(exporter, trace)
        if error is None:
            _mark_sent(database, row.id, now, tried=1, note=None)
            result.sent += 1
            continue
        # The collector is down or refusing: don't spend a timeout on each remaining row.
        rest = rows[index:]
        _retry(database, rest, now, backoff, error)
        result.failed += len(rest)
        log.warning("OTLP export failed (%s); %d row(s) wait for their next attempt", error, len(rest))
        break
    return result


class ExportWorker:
    """A daemon thread draining the queue every interval until stopped."""

    def __init__(self, database: Database, exporter: SpanExporter, *, interval_s: float = 2.0,
                 batch: int = 100) -> None:
        self.database, self.exporter, self.interval_s, self.batch = database, exporter, interval_s, batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowledger-otlp-export", daemon=True)

    def start(self) -> None:
        """Start draining in the background."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the current export; rows not yet sent stay queued for the next process."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.exporter.shutdown()  # aborts the exporter's own retry wait, so stopping is prompt
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                while not self._stop.is_set():
                    result = drain_exports(self.database, self.exporter, batch=self.batch)
                    if result.sent + result.skipped < self.batch:
                        break
            except Exception:  # the loop must outlive a database restart
                log.exception("OTLP export pass failed")


def _export(exporter: SpanExporter, trace: TraceData) -> str | None:
    try:
        outcome = exporter.export(to_readable_spans(trace))
    except Exception as exc:  # exporters may raise on transport errors instead of returning FAILURE
        return f"{type(exc).__name__}: {exc}"
    return None if outcome == SpanExportResult.SUCCESS else "exporter returned FAILURE"


def _mark_sent(database: Database, row_id: int, now: datetime, *, tried: int, note: str | None) -> None:
    with database.writer() as conn:
        conn.execute(SENT_SQL, {"id": row_id, "now": now, "tried": tried, "note": note})


def _retry(database: Database, rows: Sequence[Any], now: datetime, backoff: Backoff, error: str) -> None:
    with database.writer() as conn:
        for row in rows:
            conn.execute(RETRY_SQL, {"id": row.id, "next": now + backoff.delay(row.attempts),
                                     "error": error[:2000]})


def _readable(span: SpanData, resource: Resource) -> ReadableSpan:
    parent = None
    if span.parent_span_id:
        parent = _context(span.trace_id, span.parent_span_id, remote=span.parent_is_remote)
    status = Status(StatusCode[span.status], span.status_message if span.status == "ERROR" else None)
    return ReadableSpan(
        name=span.name, context=_context(span.trace_id, span.span_id), parent=parent, resource=resource,
        attributes=span.attributes, kind=SpanKind[span.kind], status=status, start_time=span.start_ns,
        end_time=span.end_ns, instrumentation_scope=SCOPE,
        events=[Event(name, attributes=attrs, timestamp=at) for name, at, attrs in span.events])


def _context(trace_id: str, span_id: str, *, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id=int(trace_id, 16), span_id=int(span_id, 16), is_remote=remote,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))


def queued_exports(database: Database, execution_id: UUID) -> list[dict[str, Any]]:
    """The queue rows of one execution, oldest first (for the CLI and tests)."""
    with database.reader() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT id, kind, state, attempts, next_attempt_at, last_error, sent_at FROM otlp_exports "
            "WHERE execution_id = :e ORDER BY id"), {"e": execution_id}).mappings()]
