"""Reading one execution back whole: steps in order, payloads, audit events, logs, trace ids."""
from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from sqlalchemy import Connection

from services import payloads
from services.errors import NotFound
from services.payloads import PayloadConfig, RawJSON
from services.tracecontext import traceparent

EXECUTION_SQL = sa.text(
    "SELECT s.execution_id, e.workflow_id, e.workflow_version, e.event_id, e.trigger_source, e.trigger_payload, "
    "e.trigger_payload_id, s.status, s.started_at, s.completed_at, s.duration_ms, s.error_message, "
    "s.failed_step, e.trace_id, e.root_span_id, e.parent_span_id, e.replay_of, e.replay_id, e.engine, "
    "e.payload_policy, e.created_at, s.archived_uri "
    "FROM execution_state s JOIN executions e ON e.execution_id = s.execution_id AND e.created_at = s.created_at "
    "WHERE s.execution_id = :e")

STEP_FIELDS = ("step_id", "seq", "step_name", "step_type", "attempt_count", "status", "started_at", "completed_at",
               "duration_ms", "wait_ms", "error_message", "response_status", "external_request_id", "span_id",
               "parent_span_id", "idempotency_key", "reused_from_execution", "input_payload_id", "output_payload_id")
# Positions in a step's JSON array that PostgreSQL sends as text and the record gives back typed.
STEP_UUIDS = (0, 16, 17, 18)
STEP_TIMES = (6, 7)

# One statement, one round trip: the execution row with its steps, payload metadata, audit events and log
# lines aggregated beside it, and the payload bytes as one bytea[] aligned with the metadata by payload_id.
# It replaces five queries (each parsed, planned and answered separately) and, being one statement, reads
# one consistent snapshot even outside a transaction. psycopg placeholders: it runs on the driver (_read).
WHOLE_SQL = """
SELECT s.execution_id, e.workflow_id, e.workflow_version, e.event_id, e.trigger_source,
       e.trigger_payload::text AS trigger_payload, e.trigger_payload_id, s.status, s.started_at, s.completed_at,
       s.duration_ms, s.error_message, s.failed_step, e.trace_id, e.root_span_id, e.parent_span_id, e.replay_of,
       e.replay_id, e.engine, e.payload_policy, e.created_at, s.archived_uri,
       (SELECT json_agg(json_build_array(st.step_id, st.seq, st.step_name, st.step_type, st.attempt, st.status,
                 st.started_at, st.completed_at, st.duration_ms, st.wait_ms, st.error_message, st.response_status,
                 st.external_request_id, st.span_id, st.parent_span_id, st.idempotency_key,
                 st.reused_from_execution, st.input_payload_id, st.output_payload_id)
                 ORDER BY st.seq, st.attempt, st.started_at)
          FROM steps st WHERE st.execution_id = s.execution_id) AS steps,
       p.meta AS payloads, p.blobs,
       (SELECT json_agg(json_build_array(a.id, a.event_type, a."timestamp", a.metadata) ORDER BY a."timestamp", a.id)
          FROM execution_audit_events a WHERE a.execution_id = s.execution_id) AS audit_events,
       (SELECT json_agg(json_build_array(l."timestamp", l.level, l.message, l.step_id) ORDER BY l."timestamp", l.id)
          FROM execution_logs l WHERE l.execution_id = s.execution_id) AS logs
FROM execution_state s
JOIN executions e ON e.execution_id = s.execution_id AND e.created_at = s.created_at
LEFT JOIN LATERAL (
  SELECT json_agg(json_build_array(x.payload_id, x.kind, x.size_bytes, x.stored_bytes, x.sha256, x.uri, x.codec,
                                   x.policy, x.dict_id) ORDER BY x.payload_id, x.created_at) AS meta,
         {blobs} AS blobs
  FROM payloads x WHERE x.execution_id = s.execution_id) p ON true
WHERE s.execution_id = %(e)s
"""
WITH_PAYLOADS_SQL = WHOLE_SQL.format(blobs="array_agg(x.data ORDER BY x.payload_id, x.created_at)")
WITHOUT_PAYLOADS_SQL = WHOLE_SQL.format(blobs="NULL::bytea[]")


class PayloadRow(NamedTuple):
    """One payloads row as the execution read returns it (data only when payloads were asked for)."""

    payload_id: UUID
    kind: str
    size_bytes: int
    stored_bytes: int
    sha256: str
    uri: str | None
    codec: str
    policy: str
    dict_id: int | None
    data: bytes | None


def get_execution(conn: Connection, cfg: PayloadConfig, execution_id: UUID, *,
                  include_payloads: bool = True, raw_payloads: bool = False) -> dict[str, Any]:
    """The execution with steps (payloads decoded), audit events, log lines and trace ids.

    With raw_payloads, payload values (trigger, step input/output, context) are RawJSON: the stored JSON
    text, for callers that only re-emit it (app.jsonio splices it into the response unparsed).
    """
    execution = _read(conn, WITH_PAYLOADS_SQL if include_payloads else WITHOUT_PAYLOADS_SQL, execution_id)
    if execution is None:
        raise NotFound(f"execution {execution_id} not found")
    rows = _payload_rows(execution.pop("payloads"), execution.pop("blobs"))
    meta = {m.payload_id: m for m in rows}
    zone = _session_zone(conn)
    steps = [_typed_step(s, zone) for s in execution.pop("steps") or ()]
    audit = execution.pop("audit_events") or ()
    logs = execution.pop("logs") or ()
    trigger_text, trigger_id = execution["trigger_payload"], execution["trigger_payload_id"]
    if trigger_text is not None:
        execution["trigger_payload"] = RawJSON(trigger_text.encode()) if raw_payloads else json.loads(trigger_text)
    context_id = next((m.payload_id for m in rows if m.kind == "context"), None)
    wanted = {s[k] for s in steps for k in ("input_payload_id", "output_payload_id") if s[k]}
    wanted |= {context_id} if context_id else set()
    values = payloads.decode_rows(conn, cfg, rows, wanted, raw=raw_payloads) if include_payloads and wanted else {}
    if trigger_text is None and trigger_id:
        # Kept as a payload row (too large, or reduced by policy): decoded with the rest when it was read.
        trigger = payloads.decode_rows(conn, cfg, rows if include_payloads else (), {trigger_id}, raw=raw_payloads)
        execution["trigger_payload"] = trigger[trigger_id]
    execution["steps"] = [_step(s, meta, values) for s in steps]
    execution["context_snapshot"] = values.get(context_id) if context_id else None
    execution["audit_events"] = [{"id": a[0], "event_type": a[1], "timestamp": _time(a[2], zone),
                                  "metadata": a[3]} for a in audit]
    execution["logs"] = [{"timestamp": _time(g[0], zone), "level": g[1], "message": g[2], "step_id": _uuid(g[3])}
                         for g in logs]
    execution["traceparent"] = traceparent(execution["trace_id"], execution["root_span_id"])
    return execution


def audit_events(conn: Connection, execution_id: UUID, *, event_type: str | None = None) -> list[dict[str, Any]]:
    """An execution's audit events in the order they happened, optionally of one type."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT id, event_type, \"timestamp\", metadata FROM execution_audit_events WHERE execution_id = :e "
        "AND (CAST(:t AS text) IS NULL OR event_type = :t) ORDER BY \"timestamp\", id"),
        {"e": execution_id, "t": event_type}).mappings()]


def _read(conn: Connection, sql: str, execution_id: UUID) -> dict[str, Any] | None:
    """The one-statement read, prepared and planned once per connection.

    Reader connections force a custom plan per execution (db.py: optional-filter queries need one), and
    planning this statement over every partition of four tables costs ~1 ms, more than executing it. Its only
    parameter is an id, so the generic plan is the right one: SET, EXECUTE and RESET go in one pipeline (one
    round trip), and should the EXECUTE fail, the SET is rolled back with it (a pipeline's statements share
    one transaction, explicit or implicit), so the connection never keeps the generic mode.
    """
    driver = conn.connection.driver_connection
    params = {"e": execution_id}
    try:
        with driver.cursor(row_factory=dict_row) as cursor:
            with driver.pipeline():
                driver.execute("SET plan_cache_mode = force_generic_plan")
                # Binary results: 40 KB of compressed payloads cross as bytes, not as hex text to parse.
                cursor.execute(sql, params, prepare=True, binary=True)
                driver.execute("RESET plan_cache_mode")
            return cursor.fetchone()
    except psycopg.Error as exc:
        # Raise what Connection.execute would have (callers and the API's 503 handling expect SQLAlchemy's
        # errors), dropping the connection from the pool when the server is gone.
        lost = conn.dialect.is_disconnect(exc, driver, None)
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(sql, params, exc, psycopg.Error, connection_invalidated=lost,
                                         dialect=conn.dialect) from exc


def _payload_rows(meta: list[list[Any]] | None, blobs: list[bytes | None] | None) -> list[PayloadRow]:
    if not meta:
        return []
    data = blobs if blobs is not None else [None] * len(meta)
    return [PayloadRow(UUID(m[0]), *m[1:], d) for m, d in zip(meta, data, strict=True)]


def _typed_step(values: list[Any], zone: tzinfo) -> dict[str, Any]:
    # JSON carries uuids and timestamps as text; give them back the types a row read would have.
    for i in STEP_UUIDS:
        values[i] = _uuid(values[i])
    for i in STEP_TIMES:
        values[i] = _time(values[i], zone)
    return dict(zip(STEP_FIELDS, values, strict=True))


def _session_zone(conn: Connection) -> tzinfo:
    # The zone psycopg gives timestamptz columns (the session's TimeZone, known without a query), so these
    # timestamps compare, print and do calendar arithmetic exactly like the execution's own columns.
    return conn.connection.driver_connection.info.timezone


def _uuid(value: str | None) -> UUID | None:
    return UUID(value) if value is not None else None


def _time(value: str | None, zone: tzinfo) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(zone) if value is not None else None


def _step(step: dict[str, Any], meta: dict, values: dict) -> dict:
    for kind in ("input", "output"):
        payload_id = step.pop(f"{kind}_payload_id")
        info = meta.get(payload_id) if payload_id else None
        step[f"{kind}_meta"] = _meta(info) if info else None
        step[kind] = values.get(payload_id) if payload_id else None
    return step


def _meta(info: Any) -> dict[str, Any]:
    return {"payload_id": info.payload_id, "size_bytes": info.size_bytes, "stored_bytes": info.stored_bytes,
            "sha256": info.sha256, "offloaded_uri": info.uri, "codec": info.codec, "policy": info.policy,
            "kept": info.policy == "full"}
