"""Events: kept byte for byte as received, with a JSONB copy for queries when the body allows one."""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import masking as masking_rules
from services.errors import NotFound, require_one_of
from services.executions import decode_cursor, encode_cursor, payload_filter

STATUSES = ("received", "routed", "processed", "failed", "dead_lettered", "rejected")
KEPT_HEADERS = ("content-type", "user-agent", "x-event-type", "ce-type", "ce-id", "ce-source", "webhook-id",
                "idempotency-key", "traceparent", "x-request-id", "x-github-event", "x-github-delivery")


@dataclass(frozen=True)
class IncomingEvent:
    """One webhook request as the edge received it."""

    source_system: str
    body: bytes
    content_type: str | None = None
    event_type: str | None = None
    idempotency_key: str | None = None
    traceparent: str | None = None
    headers: Mapping[str, str] | None = None
    # Only for history written "as of" an earlier time (the demo), at or after backdating.floor(); the
    # ingestion API never sets it, and the ledger's own clock (created_at) is always the transaction's.
    received_at: datetime | None = None


@dataclass(frozen=True)
class IngestResult:
    """The outcome of ingesting one event."""

    event_id: UUID
    duplicate: bool
    status: str
    rejected_reason: str | None = None
    payload: Any = None
    event_type: str | None = None


@dataclass(frozen=True)
class PreparedEvent:
    """An event parsed and checked in memory: what record() stores."""

    event_id: UUID
    incoming: IncomingEvent
    payload: Any
    event_type: str | None
    rejected_reason: str | None
    jsonb: str | None  # the text of the JSONB query copy, None when the body is not storable JSON


_COLUMNS = ("event_id, source_system, event_type, content_type, raw_body, payload, payload_hash, size_bytes, "
            "idempotency_key, headers, traceparent, rejected_reason")
_VALUES = (":id, :src, :type, :ct, :raw, CAST(:payload AS jsonb), :hash, :size, :key, CAST(:headers AS jsonb), "
           ":tp, :reason")


def _inserts(columns: str, values: str) -> tuple[sa.TextClause, sa.TextClause]:
    """The plain and the idempotency-keyed INSERT of an event.

    The key is claimed and the event inserted by one statement: the event exists iff the claim
    succeeded, and a concurrent claim of the same key waits for this one to commit, then stores nothing."""
    keyed = sa.text(
        "WITH claim AS (INSERT INTO event_idempotency (source_system, idempotency_key, event_id) "
        "VALUES (:src, :key, :id) ON CONFLICT DO NOTHING RETURNING event_id) "
        f"INSERT INTO events ({columns}) SELECT {values} FROM claim RETURNING event_id")
    return sa.text(f"INSERT INTO events ({columns}) VALUES ({values})"), keyed


_INSERT, _INSERT_KEYED = _inserts(_COLUMNS, _VALUES)
_INSERT_AT, _INSERT_KEYED_AT = _inserts(_COLUMNS + ", received_at", _VALUES + ", :received_at")


def parse_body(body: bytes, *, max_depth: int) -> tuple[Any, str | None]:
    """The JSON value of a body, or None and the reason it cannot be one."""
    _, value, reason = _parse(body, max_depth=max_depth)
    return value, reason


def prepare(incoming: IncomingEvent, *, max_depth: int,
            masking: tuple[Sequence[str], Sequence[str]] | None = None) -> PreparedEvent:
    """Parse, check and mask an event in memory (no I/O), ready for record().

    masking is (key names, JSON paths): the JSONB copy for queries is masked so credentials in a
    webhook body are not spread into query results; the raw bytes stay the record.
    """
    text, payload, reason = _parse(incoming.body, max_depth=max_depth)
    event_type = incoming.event_type or _type_from_body(payload)
    return PreparedEvent(uuid.uuid4(), incoming, payload, event_type, reason,
                         None if reason else _jsonb_text(text, payload, masking))


def record(conn: Connection, event: PreparedEvent) -> IngestResult:
    """Store a prepared event; a repeated idempotency key returns the first event and stores nothing.

    An accepted event is a single statement (the idempotency claim folded in, its event_state row
    written by the events trigger), so on an autocommit connection it is durable in one round trip.
    A rejected one takes two statements: conn must then be in a transaction.
    """
    incoming = event.incoming
    params = {"id": event.event_id, "src": incoming.source_system, "type": event.event_type,
              "ct": incoming.content_type, "raw": incoming.body, "payload": event.jsonb,
              "hash": hashlib.sha256(incoming.body).hexdigest(), "size": len(incoming.body),
              "key": incoming.idempotency_key, "headers": json.dumps(_kept_headers(incoming.headers)),
              "tp": incoming.traceparent, "reason": event.rejected_reason, "received_at": incoming.received_at}
    plain, keyed = (_INSERT, _INSERT_KEYED) if incoming.received_at is None else (_INSERT_AT, _INSERT_KEYED_AT)
    if incoming.idempotency_key:
        if conn.execute(keyed, params).first() is None:
            return _duplicate(conn, incoming)
    else:
        conn.execute(plain, params)
    if event.rejected_reason:
        append_status(conn, event_id=event.event_id, status="rejected", detail={"reason": event.rejected_reason},
                      at=incoming.received_at)
    return IngestResult(event.event_id, False, "rejected" if event.rejected_reason else "received",
                        event.rejected_reason, event.payload, event.event_type)


def ingest(conn: Connection, incoming: IncomingEvent, *, max_depth: int,
           masking: tuple[Sequence[str], Sequence[str]] | None = None) -> IngestResult:
    """Store an event as received (prepare + record in conn's transaction)."""
    return record(conn, prepare(incoming, max_depth=max_depth, masking=masking))


def append_status(conn: Connection, *, event_id: UUID, status: str, detail: dict[str, Any] | None = None,
                  at: datetime | None = None) -> None:
    """Append a processing status fact for an event (at: only for history, at or after backdating.floor())."""
    conn.execute(sa.text(
        "INSERT INTO event_status_history (event_id, status, detail, at) "
        "VALUES (:e, :s, CAST(:d AS jsonb), COALESCE(CAST(:at AS timestamptz), now()))"),
        {"e": event_id, "s": status, "d": json.dumps(detail or {}, default=str), "at": at})


def get_event(conn: Connection, event_id: UUID) -> dict[str, Any]:
    """An event's metadata, JSON payload, status history and the executions it caused."""
    row = conn.execute(sa.text(
        "SELECT e.event_id, e.source_system, e.event_type, e.content_type, e.received_at, e.payload_hash, "
        "e.size_bytes, e.payload, e.idempotency_key, e.headers, e.traceparent, e.rejected_reason, "
        "s.status AS processing_status FROM events e JOIN event_state s ON s.event_id = e.event_id "
        "WHERE e.event_id = :e"), {"e": event_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"event {event_id} not found")
    history = [dict(h) for h in conn.execute(sa.text(
        "SELECT status, at, detail FROM event_status_history WHERE event_id = :e ORDER BY id"),
        {"e": event_id}).mappings()]
    if not any(h["status"] == "received" for h in history):  # the events row is that fact (migration 0020)
        history.insert(0, {"status": "received", "at": row["received_at"], "detail": {}})
    executions = conn.execute(sa.text(
        "SELECT execution_id, workflow_id, status, started_at, completed_at, duration_ms, replay_of "
        "FROM workflow_executions WHERE event_id = :e ORDER BY created_at"), {"e": event_id}).mappings().all()
    return {**dict(row), "status_history": history,
            "executions": [dict(x) for x in executions]}


def get_raw(conn: Connection, event_id: UUID) -> tuple[bytes, str | None]:
    """The exact bytes of an event as received and its original content type."""
    row = conn.execute(sa.text("SELECT raw_body, content_type FROM events WHERE event_id = :e"),
                       {"e": event_id}).one_or_none()
    if row is None:
        raise NotFound(f"event {event_id} not found")
    return bytes(row.raw_body), row.content_type


def list_events(conn: Connection, *, source_system: str | None = None, event_type: str | None = None,
                processing_status: str | None = None, since: datetime | None = None,
                until: datetime | None = None, cursor: str | None = None, limit: int = 50,
                payload: dict[str, str] | None = None) -> dict[str, Any]:
    """A page of events, newest first, with an opaque cursor; payload field conditions use the GIN index."""
    require_one_of("processing_status", processing_status, STATUSES)
    after = decode_cursor(cursor)
    contains = json.dumps(payload_filter(payload)) if payload else None
    rows = conn.execute(sa.text(
        "SELECT event_id, source_system, event_type, received_at, status AS processing_status "
        "FROM event_state WHERE (CAST(:src AS text) IS NULL OR source_system = :src) "
        "AND (CAST(:type AS text) IS NULL OR event_type = :type) "
        "AND (CAST(:status AS text) IS NULL OR status = :status) "
        "AND (CAST(:since AS timestamptz) IS NULL OR received_at >= :since) "
        "AND (CAST(:until AS timestamptz) IS NULL OR received_at < :until) "
        "AND (CAST(:after_at AS timestamptz) IS NULL OR (received_at, event_id) < (:after_at, :after_id)) "
        + ("AND event_id IN (SELECT event_id FROM events WHERE payload @> CAST(:contains AS jsonb)) " if contains
           else "") + "ORDER BY received_at DESC, event_id DESC LIMIT :limit"),
        {"src": source_system, "type": event_type, "status": processing_status, "since": since, "until": until,
         "after_at": after[0] if after else None, "after_id": after[1] if after else None,
         "limit": limit + 1, "contains": contains}).mappings().all()
    items = [dict(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1]["received_at"], items[-1]["event_id"]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _parse(body: bytes, *, max_depth: int) -> tuple[str | None, Any, str | None]:
    """(text, JSON value, None) for a storable JSON body, else (text or None, None, reason)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, None, f"body is not valid UTF-8 (byte {exc.start})"
    # Depth can only exceed the limit if there are that many brackets; most bodies skip the scan.
    if text.count("[") + text.count("{") > max_depth:
        depth = _nesting_depth(text)
        if depth > max_depth:
            return text, None, f"JSON nesting depth {depth} exceeds the limit of {max_depth}"
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return text, None, f"body is not JSON: {exc}"
    # NUL and lone surrogates can only come from \u0000 and \uD800-\uDFFF escapes (JSON forbids raw control
    # characters): a body without one skips the walk, which cost 0.15 ms for 2 KB with escaped accents.
    if _RISKY_ESCAPE.search(text) is None:
        return text, value, None
    problem = _jsonb_incompatibility(value)
    return (text, None, problem) if problem else (text, value, None)


def _jsonb_text(text: str | None, value: Any, masking: tuple[Sequence[str], Sequence[str]] | None) -> str:
    """The JSONB copy's text: the body itself when masking cannot change it (no re-serialising), else the masked value.

    PostgreSQL parses the body text as faithfully as Python did (_parse refused what JSONB cannot hold).
    """
    if text is not None and (masking is None or not masking_rules.may_apply(text, *masking)):
        return text
    keys, paths = masking or ((), ())
    return json.dumps(masking_rules.mask_payload(value, keys=keys, paths=paths))


def _duplicate(conn: Connection, incoming: IncomingEvent) -> IngestResult:
    row = conn.execute(sa.text(
        "SELECT i.event_id, s.status FROM event_idempotency i LEFT JOIN event_state s ON s.event_id = i.event_id "
        "WHERE i.source_system = :s AND i.idempotency_key = :k"),
        {"s": incoming.source_system, "k": incoming.idempotency_key}).one()
    return IngestResult(row.event_id, True, row.status or "received")


def _type_from_body(payload: Any) -> str | None:
    if isinstance(payload, dict):
        for key in ("type", "event_type"):
            if isinstance(payload.get(key), str):
                return payload[key][:200]
    return None


def _kept_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items() if k.lower() in KEPT_HEADERS}


def _nesting_depth(text: str) -> int:
    """Maximum bracket depth outside strings, without recursion (json itself recurses ~1,000 deep)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _jsonb_incompatibility(value: Any) -> str | None:
    """Why PostgreSQL JSONB could not hold this value faithfully, if it could not."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                stack.append(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "JSON contains \\u0000, which cannot be stored as JSONB"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "JSON contains a lone surrogate escape"
    return None
