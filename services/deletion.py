"""Force-delete one execution: an authorised, recorded removal through the maintainer role."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import opensearch
from services.errors import Conflict, Forbidden, InvalidInput, NotFound
from services.objectstore import ObjectStore

PERMISSION = "executions.force-delete"
# Sealed tables and how their row keys are written in the seal leaves (services/sealing.TABLES).
SEALED_ROWS = (
    ("executions", "SELECT execution_id::text FROM executions WHERE execution_id = :e"),
    ("execution_transitions", "SELECT execution_id::text || ':' || seq FROM execution_transitions "
                              "WHERE execution_id = :e"),
    ("steps", "SELECT step_id::text FROM steps WHERE execution_id = :e"),
    ("payloads", "SELECT payload_id::text FROM payloads WHERE execution_id = :e"),
)
# Removed in this order; audit events stay (seed 004: they survive the deletion of their execution).
DELETES = ("payloads", "step_success_keys", "steps", "execution_logs", "execution_archives",
           "execution_transitions", "execution_state", "executions")


@dataclass(frozen=True)
class Deleted:
    """What a force-delete removed."""

    execution_id: UUID
    rows: dict[str, int]
    objects: int


def check_permission(conn: Connection, *, username: str) -> None:
    """Refuse unless username is an enabled admin holding the force-delete permission."""
    row = conn.execute(sa.text("SELECT role, disabled, permissions FROM users WHERE username = :u"),
                       {"u": username}).one_or_none()
    if row is None or row.disabled or row.role != "admin" or PERMISSION not in (row.permissions or []):
        raise Forbidden(f"force-delete needs an enabled admin with the {PERMISSION} permission")


def force_delete(conn: Connection, store: ObjectStore, *, execution_id: UUID, actor: str,
                 reason: str) -> Deleted:
    """Remove an execution, its steps and payloads (rows and objects); keep and extend its audit trail.

    conn must be a maintainer transaction. Refused while the workflow is under legal hold. Every
    sealed row removed is recorded in ledger_removals first, so verify reports it as authorised.
    """
    if not reason or not reason.strip():
        raise InvalidInput("a reason is required to force-delete an execution")
    execution = conn.execute(sa.text(
        "SELECT e.workflow_id, s.status FROM executions e JOIN execution_state s USING (execution_id) "
        "WHERE e.execution_id = :e"), {"e": execution_id}).one_or_none()
    if execution is None:
        raise NotFound(f"execution {execution_id} not found")
    if _under_legal_hold(conn, execution.workflow_id):
        raise Conflict(f"workflow {execution.workflow_id} is under legal hold; its executions cannot be deleted")
    uris = conn.execute(sa.text("SELECT uri FROM payloads WHERE execution_id = :e AND uri IS NOT NULL"),
                        {"e": execution_id}).scalars().all()
    _record_removals(conn, execution_id=execution_id, actor=actor, reason=reason)
    rows = {table: conn.execute(sa.text(f"DELETE FROM {table} WHERE execution_id = :e"),
                                {"e": execution_id}).rowcount for table in DELETES}
    opensearch.forget(conn, [execution_id])
    conn.execute(sa.text(
        "INSERT INTO execution_audit_events (execution_id, event_type, metadata) VALUES (:e, 'DELETED', "
        "CAST(:m AS jsonb))"), {"e": execution_id, "m": json.dumps({
            "deleted_by": actor, "reason": reason, "workflow_id": execution.workflow_id,
            "status_at_deletion": execution.status, "rows": rows, "objects": len(uris)}, default=str)})
    for uri in uris:
        store.delete(uri)  # after the rows: a failure here leaves an orphan object, never a dangling row
    return Deleted(execution_id, rows, len(uris))


def _under_legal_hold(conn: Connection, workflow_id: str) -> bool:
    return bool(conn.execute(sa.text(
        "SELECT legal_hold FROM workflow_versions WHERE workflow_id = :w ORDER BY version DESC LIMIT 1"),
        {"w": workflow_id}).scalar())


def _record_removals(conn: Connection, *, execution_id: UUID, actor: str, reason: str) -> None:
    record_removals(conn, kind="force_delete", actor=actor, reason=reason, execution_ids=[execution_id])


EXECUTION_ROWS = (
    ("executions", "execution_id::text", "executions"),
    ("execution_transitions", "execution_id::text || ':' || seq", "execution_transitions"),
    ("steps", "step_id::text", "steps"),
    ("payloads", "payload_id::text", "payloads"),
)
EVENT_ROWS = (("events", "event_id::text", "events"), ("event_status_history", "id::text", "event_status_history"))


def record_removals(conn: Connection, *, kind: str, actor: str, reason: str | None,
                    execution_ids: list[UUID] | tuple = (), event_ids: list[UUID] | tuple = (),
                    tables: tuple[str, ...] | None = None) -> None:
    """Record, before removing them, every sealed row of these executions/events as an authorised removal.

    Call in the maintainer transaction that deletes or rewrites the rows, so verify can tell the
    removal from tampering; tables narrows the record to the tables actually touched.
    """
    for table, key, source in EXECUTION_ROWS:
        if execution_ids and (tables is None or table in tables):
            conn.execute(sa.text(
                f"INSERT INTO ledger_removals (kind, actor, reason, table_name, row_key, execution_id) "
                f"SELECT :kind, :actor, :reason, :table, {key}, execution_id FROM {source} "
                f"WHERE execution_id = ANY(:ids)"),
                {"kind": kind, "actor": actor, "reason": reason, "table": table, "ids": list(execution_ids)})
    for table, key, source in EVENT_ROWS:
        if event_ids and (tables is None or table in tables):
            conn.execute(sa.text(
                f"INSERT INTO ledger_removals (kind, actor, reason, table_name, row_key) "
                f"SELECT :kind, :actor, :reason, :table, {key} FROM {source} WHERE event_id = ANY(:ids)"),
                {"kind": kind, "actor": actor, "reason": reason, "table": table, "ids": list(event_ids)})


def record_keys(conn: Connection, *, kind: str, actor: str, reason: str | None, table: str,
                rows: list[Any]) -> None:
    """Record already-selected (row key, execution id) pairs of one table as authorised removals."""
    if rows:
        conn.execute(sa.text(
            "INSERT INTO ledger_removals (kind, actor, reason, table_name, row_key, execution_id) "
            "SELECT :kind, :actor, :reason, :table, k, e FROM unnest(CAST(:keys AS text[]), CAST(:ids AS uuid[])) "
            "AS r(k, e)"), {"kind": kind, "actor": actor, "reason": reason, "table": table,
                            "keys": [r[0] for r in rows], "ids": [r[1] for r in rows]})


PARTITION_KEYS = {"events": "event_id::text", "executions": "execution_id::text", "steps": "step_id::text",
                  "payloads": "payload_id::text", "execution_audit_events": "id::text"}


def record_partition(conn: Connection, *, parent: str, partition: str, actor: str) -> None:
    """Record every sealed row of a partition about to be dropped whole."""
    key = PARTITION_KEYS.get(parent)
    if key is None:
        return
    conn.execute(sa.text(
        f"INSERT INTO ledger_removals (kind, actor, reason, table_name, row_key) "
        f"SELECT 'retention', :actor, 'partition dropped', :table, {key} FROM \"{partition}\""),
        {"actor": actor, "table": parent})
