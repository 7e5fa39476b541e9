"""GDPR erasure: find every execution and event holding a subject's value, remove their payloads, keep metadata."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import archive_reader, archiving, codec, deletion, opensearch, recording
from services.db import Database
from services.errors import CodecError, Conflict, InvalidInput, ObjectStoreError
from services.payloads import PayloadConfig

ERASED_BODY = b'{"erased":true}'


@dataclass
class ErasurePlan:
    """What an erasure removes (or, dry, would remove)."""

    subject_field: str
    dry_run: bool
    execution_ids: list[UUID] = field(default_factory=list)
    event_ids: list[UUID] = field(default_factory=list)
    archive_uris: list[str] = field(default_factory=list)
    unreadable_archives: list[str] = field(default_factory=list)
    payloads_removed: int = 0
    objects_deleted: int = 0
    erasure_id: UUID | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the CLI and the API."""
        return {"subject_field": self.subject_field, "dry_run": self.dry_run, "erasure_id": self.erasure_id,
                "executions": [str(e) for e in self.execution_ids], "events": [str(e) for e in self.event_ids],
                "archives": self.archive_uris, "unreadable_archives": self.unreadable_archives,
                "payloads_removed": self.payloads_removed,
                "objects_deleted": self.objects_deleted}


def containment(subject_field: str, value: str) -> dict[str, Any]:
    """The JSONB containment document for a dotted path, e.g. customer.email -> {"customer": {"email": v}}."""
    parts = [p for p in subject_field.split(".") if p]
    if not parts:
        raise InvalidInput("subject field must be a dotted JSON path such as customer.email")
    doc: Any = value
    for part in reversed(parts):
        doc = {part: doc}
    return doc


def find(conn: Connection, store: Any, *, subject_field: str, value: str) -> ErasurePlan:
    """Executions and events holding value at subject_field: GIN look-ups, step text, and archives."""
    if not value:
        raise InvalidInput("the value to erase must not be empty")
    doc = json.dumps(containment(subject_field, value))
    plan = ErasurePlan(subject_field, dry_run=True)
    executions = set(conn.execute(sa.text(
        "SELECT execution_id FROM executions WHERE trigger_payload @> CAST(:d AS jsonb)"), {"d": doc}).scalars())
    events = set(conn.execute(sa.text(
        "SELECT event_id FROM events WHERE payload @> CAST(:d AS jsonb)"), {"d": doc}).scalars())
    # Step payloads are compressed; their searchable text (every string leaf) finds them instead.
    executions |= set(conn.execute(sa.text(
        "SELECT DISTINCT execution_id FROM steps WHERE search_text LIKE :like"),
        {"like": "%" + _escape_like(value) + "%"}).scalars())
    events |= set(conn.execute(sa.text(
        "SELECT event_id FROM executions WHERE execution_id = ANY(:ids) AND event_id IS NOT NULL"),
        {"ids": list(executions)}).scalars())
    executions |= set(conn.execute(sa.text(
        "SELECT execution_id FROM executions WHERE event_id = ANY(:ids)"), {"ids": list(events)}).scalars())
    needle = value.encode("utf-8")
    for uri in conn.execute(sa.text("SELECT uri FROM archive_manifests ORDER BY created_at")).scalars():
        try:
            document = archive_reader.read_archive(store, uri)
        except (ObjectStoreError, CodecError):
            plan.unreadable_archives.append(uri)
            continue
        hit = False
        for execution in document["executions"]:
            if any(needle in archive_reader.payload_bytes(p, store) for p in execution["payloads"]):
                executions.add(UUID(execution["execution_id"]))
                hit = True
            elif UUID(execution["execution_id"]) in executions:
                hit = True
        for event in document["events"]:
            if UUID(event["event_id"]) in events or needle in (event.get("raw_body_b64") and
                                                                _b64(event["raw_body_b64"]) or b""):
                events.add(UUID(event["event_id"]))
                hit = True
        if hit:
            plan.archive_uris.append(uri)
    plan.execution_ids = sorted(executions, key=str)
    plan.event_ids = sorted(events, key=str)
    return plan


def erase(database: Database, cfg: PayloadConfig, *, subject_field: str, value: str, requested_by: str,
          dry_run: bool = False, now: datetime | None = None) -> ErasurePlan:
    """Remove the subject's payloads from PostgreSQL and the object store (maintainer); record ERASED."""
    now = now or datetime.now(UTC)
    with database.maintainer() as conn:
        plan = find(conn, cfg.store, subject_field=subject_field, value=value)
    if dry_run:
        return plan
    if plan.unreadable_archives:
        # Never report an erasure as done while an archive that may hold the value could not be searched.
        raise Conflict(f"{len(plan.unreadable_archives)} archive object(s) could not be read; nothing was erased: "
                       + ", ".join(plan.unreadable_archives[:5]))
    plan.dry_run = False
    plan.erasure_id = uuid.uuid4()
    ids, events = plan.execution_ids, plan.event_ids
    # Archives first: rewritten without the subject's executions, under a new object and manifest.
    for uri in plan.archive_uris:
        plan.objects_deleted += _rewrite_archive(database, cfg, uri, set(ids), set(events),
                                                 erasure_id=plan.erasure_id, now=now)
    with database.maintainer() as conn:
        conn.execute(sa.text(
            "INSERT INTO erasures (erasure_id, created_at, requested_by, subject_field, value_sha256, detail) "
            "VALUES (:id, :now, :by, :f, :h, CAST(:d AS jsonb))"),
            {"id": plan.erasure_id, "now": now, "by": requested_by, "f": subject_field,
             "h": codec.sha256_hex(value.encode()), "d": json.dumps({"executions": len(ids), "events": len(events)})})
        rows = conn.execute(sa.text(
            "SELECT payload_id, execution_id, uri FROM payloads WHERE execution_id = ANY(:ids)"), {"ids": ids}).all()
        # Erasure rewrites sealed rows on purpose: record them so verify does not report tampering.
        deletion.record_removals(conn, kind="erasure", actor=requested_by, reason=f"erasure {plan.erasure_id}",
                                 execution_ids=ids, event_ids=events, tables=("executions", "payloads", "events"))
        conn.execute(sa.text(
            "INSERT INTO erased_payloads (payload_id, erasure_id, execution_id) SELECT payload_id, :er, execution_id "
            "FROM payloads WHERE execution_id = ANY(:ids) ON CONFLICT DO NOTHING"), {"ids": ids, "er": plan.erasure_id})
        conn.execute(sa.text("DELETE FROM payloads WHERE execution_id = ANY(:ids)"), {"ids": ids})
        conn.execute(sa.text("UPDATE executions SET trigger_payload = NULL, trigger_payload_id = NULL "
                             "WHERE execution_id = ANY(:ids)"), {"ids": ids})
        conn.execute(sa.text("UPDATE steps SET search_text = NULL WHERE execution_id = ANY(:ids)"), {"ids": ids})
        conn.execute(sa.text("DELETE FROM search_outbox WHERE execution_id = ANY(:ids)"), {"ids": ids})
        opensearch.forget(conn, ids)  # documents already indexed go too, in outbox order
        conn.execute(sa.text("DELETE FROM execution_logs WHERE execution_id = ANY(:ids) AND message LIKE :like"),
                     {"ids": ids, "like": "%" + _escape_like(value) + "%"})
        conn.execute(sa.text("UPDATE events SET raw_body = :b, payload = NULL WHERE event_id = ANY(:ev)"),
                     {"b": ERASED_BODY, "ev": events})
        for execution_id in ids:
            recording.record_audit(conn, execution_id=execution_id, event_type="ERASED", at=now, metadata={
                "erasure_id": str(plan.erasure_id), "subject_field": subject_field, "requested_by": requested_by,
                "value_sha256": codec.sha256_hex(value.encode())})
    plan.payloads_removed += len(rows)
    for row in rows:
        if row.uri:
            cfg.store.delete(row.uri)
            plan.objects_deleted += 1
    return plan


def _rewrite_archive(database: Database, cfg: PayloadConfig, uri: str, ids: set[UUID], events: set[UUID], *,
                     erasure_id: UUID, now: datetime) -> int:
    """Replace an archive by one without the subject's payloads and event bodies; returns objects deleted."""
    document = archive_reader.read_archive(cfg.store, uri)
    removed: list[tuple[str, str, str | None]] = []
    for execution in document["executions"]:
        if UUID(execution["execution_id"]) in ids:
            removed += [(p["payload_id"], execution["execution_id"], p.get("uri")) for p in execution["payloads"]]
            execution["payloads"] = []
            execution["erased"] = True
    for event in document["events"]:
        if UUID(event["event_id"]) in events:
            event["raw_body_b64"] = None
            event["erased"] = True
    new_id = uuid.uuid4()
    document = {**document, "archive_id": str(new_id),
                "manifest": {**document["manifest"],
                             "payload_count": sum(len(e["payloads"]) for e in document["executions"])}}
    blob = archive_reader.encode_archive(document)
    with database.maintainer() as conn:
        old_id = conn.execute(sa.text("SELECT archive_id FROM archive_manifests WHERE uri = :u"),
                              {"u": uri}).scalar_one()
        storage_class = archiving.current_class(conn, old_id)
    key = f"archives/{archiving._safe(document.get('workflow_id') or '_')}/rewritten/{new_id}.json.zst"
    new_uri = cfg.store.put(key, blob, storage_class=storage_class,
                            metadata={"archive-id": str(new_id), "format": archive_reader.FORMAT})
    p = {"new": new_id, "old": old_id, "now": now}
    with database.maintainer() as conn:
        conn.execute(sa.text(
            "INSERT INTO archive_manifests (archive_id, created_at, kind, workflow_id, uri, storage_class, "
            "execution_count, event_count, size_bytes, sha256, manifest) SELECT :new, :now, kind, workflow_id, :u, "
            ":c, execution_count, event_count, :size, :sha, manifest || CAST(:m AS jsonb) FROM archive_manifests "
            "WHERE archive_id = :old"),
            {**p, "u": new_uri, "c": storage_class, "size": len(blob), "sha": codec.sha256_hex(blob),
             "m": json.dumps({"rewritten_from": str(old_id), "erasure_id": str(erasure_id),
                              "erased_payloads": len(removed)})})
        conn.execute(sa.text("DELETE FROM archived_payloads WHERE payload_id = ANY(CAST(:p AS uuid[]))"),
                     {"p": [r[0] for r in removed]})
        # The link tables are insert-and-delete only: moving a row to the new archive is a delete plus an insert.
        conn.execute(sa.text(
            "WITH moved AS (DELETE FROM execution_archives WHERE archive_id = :old RETURNING execution_id) "
            "INSERT INTO execution_archives (execution_id, archive_id, archived_at) "
            "SELECT execution_id, :new, :now FROM moved"), p)
        conn.execute(sa.text(
            "WITH moved AS (DELETE FROM archived_payloads WHERE archive_id = :old RETURNING *) "
            "INSERT INTO archived_payloads (payload_id, archive_id, execution_id, uri, archived_at) "
            "SELECT payload_id, :new, execution_id, uri, archived_at FROM moved"), p)
        conn.execute(sa.text(
            "WITH moved AS (DELETE FROM event_archives WHERE archive_id = :old RETURNING *) "
            "INSERT INTO event_archives (event_id, archive_id, archived_at) SELECT event_id, :new, archived_at "
            "FROM moved"), p)
        if removed:
            conn.execute(sa.text(
                "INSERT INTO erased_payloads (payload_id, erasure_id, execution_id) SELECT unnest(CAST(:p AS uuid[])), "
                ":er, unnest(CAST(:e AS uuid[])) ON CONFLICT DO NOTHING"),
                {"p": [r[0] for r in removed], "e": [r[1] for r in removed], "er": erasure_id})
        conn.execute(sa.text("DELETE FROM archive_tier_changes WHERE archive_id = :old"), p)
        conn.execute(sa.text("DELETE FROM archive_manifests WHERE archive_id = :old"), p)
    cfg.store.delete(uri)
    archive_reader.forget(uri)
    offloaded = [u for _, _, u in removed if u]
    for object_uri in offloaded:
        cfg.store.delete(object_uri)
    return 1 + len(offloaded)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)
