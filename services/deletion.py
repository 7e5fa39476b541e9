"""Force-delete one execution: an authorised, recorded removal through the maintainer role."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

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
    conn.execute(sa.text(
        "INSERT INTO execution_audit_events (execution_id, event_type, metadata) VALUES (:e, 'DELETED', "
        "CAST(:m AS jsonb))"), {"e": execution_id, "m": _json({
            "deleted_by": actor, "reason": reason, "workflow_id": execution.workflow_id,
            "status_at_deletion": execution.status, "rows": rows, "objects": len(uris)})})
    for uri in uris:
        store.delete(uri)  # after the rows: a failure here leaves an orphan object, never a dangling row
    return Deleted(execution_id, rows, len(uris))


def _under_legal_hold(conn: Connection, workflow_id: str) -> bool:
    return bool(conn.execute(sa.text(
        "SELECT legal_hold FROM workflow_versions WHERE workflow_id = :w ORDER BY version DESC LIMIT 1"),
        {"w": workflow_id}).scalar())


def _record_removals(conn: Connection, *, execution_id: UUID, actor: str, reason: str) -> None:
    for table, keys_sql in SEALED_ROWS:
        conn.execute(sa.text(
            f"INSERT INTO ledger_removals (kind, actor, reason, table_name, row_key, execution_id) "
            f"SELECT 'force_delete', :actor, :reason, :table, k, :e FROM ({keys_sql}) AS keys(k)"),
            {"actor": actor, "reason": reason, "table": table, "e": execution_id})


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
