"""Data for the scheduled-job tests, made through the recording service."""
from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import browse, events, fake_data, recording, step_recording
from services.objectstore import open_store
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.step_recording import StepAttempt


def s3_payloads(endpoint: str, tmp_path: Path) -> PayloadConfig:
    """A payload config whose object store is a fresh bucket on the moto server."""
    store = open_store(f"s3://fl-jobs-{uuid.uuid4().hex[:12]}/data", local_root=tmp_path, endpoint_url=endpoint)
    return PayloadConfig(store=store, train_dictionaries=False)


def unique(prefix: str) -> str:
    """A workflow id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_workflow(conn: Connection, workflow_id: str, *, retention_days: int | None = None,
                  retain_on_failure: bool = False, legal_hold: bool = False,
                  definition: dict[str, Any] | None = None) -> None:
    """Register a workflow with one version carrying its retention policy."""
    # No workflow registry service exists yet (the runner issue owns it): the two rows it would write.
    conn.execute(sa.text("INSERT INTO workflows (workflow_id, created_by) VALUES (:w, 'test')"), {"w": workflow_id})
    conn.execute(sa.text(
        "INSERT INTO workflow_versions (workflow_id, version, created_by, definition, retention_days, "
        "retain_on_failure, legal_hold) VALUES (:w, 1, 'test', CAST(:d AS jsonb), :r, :rof, :hold)"),
        {"w": workflow_id, "d": json.dumps(definition or {"trigger": {"type": "manual"}, "steps": []}),
         "r": retention_days, "rof": retain_on_failure, "hold": legal_hold})


def record_run(conn: Connection, cfg: PayloadConfig, workflow_id: str, *, status: str = "completed",
               at: datetime | None = None, trigger: Any = None, steps: int = 2, seed: int = 0,
               error: str | None = None, event_id: UUID | None = None, size_hint: int = 2048,
               trigger_source: str = "manual", failed_step: str | None = None, step_input: Any = None) -> UUID:
    """One finished execution with steps whose payloads are realistic JSON."""
    rng = random.Random(seed)
    at = at or datetime.now(UTC)
    record = recording.create_execution(conn, cfg, NewExecution(
        workflow_id=workflow_id, trigger_source=trigger_source, event_id=event_id,
        trigger_payload=trigger if trigger is not None else {"customer": {"email": f"c{seed}@example.com"}},
        started_at=at))
    recording.start_execution(conn, execution_id=record.execution_id, at=at)
    for seq in range(steps):
        last = seq == steps - 1
        step_status = status if last and status != "completed" else "completed"
        name = failed_step if last and failed_step else f"step-{seq}"
        step_recording.record_step(conn, cfg, execution_id=record.execution_id, workflow_id=workflow_id,
                                   attempt=StepAttempt(
                                       step_name=name, step_type="action", seq=seq, status=step_status,
                                       started_at=at + timedelta(milliseconds=seq * 100),
                                       completed_at=at + timedelta(milliseconds=seq * 100 + 80),
                                       input=step_input if step_input is not None else
                                       fake_data.step_payload(rng, step_name="crm.upsert", size_hint=size_hint),
                                       output=fake_data.step_payload(rng, step_name="email.send", size_hint=size_hint),
                                       error_message=error if last and status != "completed" else None))
    recording.finish_execution(conn, execution_id=record.execution_id, status=status,
                               at=at + timedelta(milliseconds=steps * 100),
                               error_message=error if status != "completed" else None,
                               failed_step=failed_step if status != "completed" else None)
    return record.execution_id


def ingest_event(conn: Connection, body: dict[str, Any], *, source: str = "shop",
                 event_type: str = "order.created") -> UUID:
    """Store one webhook event as received."""
    result = events.ingest(conn, events.IncomingEvent(
        source_system=source, body=json.dumps(body).encode(), content_type="application/json",
        event_type=event_type), max_depth=200)
    return result.event_id


def counts(conn: Connection, workflow_id: str) -> dict[str, int]:
    """Row counts of one workflow's data in every table retention touches."""
    sql = {
        "executions": "SELECT count(*) FROM executions WHERE workflow_id = :w",
        "execution_state": "SELECT count(*) FROM execution_state WHERE workflow_id = :w",
        "steps": "SELECT count(*) FROM steps s JOIN execution_state e USING (execution_id) WHERE e.workflow_id = :w",
        "payloads": "SELECT count(*) FROM payloads p JOIN execution_state e USING (execution_id) "
                    "WHERE e.workflow_id = :w",
        "audit": "SELECT count(*) FROM execution_audit_events a JOIN execution_state e USING (execution_id) "
                 "WHERE e.workflow_id = :w",
        "archives": "SELECT count(*) FROM archive_manifests WHERE workflow_id = :w",
        "tier_changes": "SELECT count(*) FROM archive_tier_changes t JOIN archive_manifests m USING (archive_id) "
                        "WHERE m.workflow_id = :w",
    }
    return {k: conn.execute(sa.text(q), {"w": workflow_id}).scalar_one() for k, q in sql.items()}


class Receiver:
    """A loopback HTTP server recording every JSON POST; `fail_next` answers 503 that many times."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict[str, Any]] = []
        self.fail_next = 0
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    if receiver.fail_next:
                        receiver.fail_next -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    receiver.bodies.append(json.loads(body))
                    receiver.arrived.notify_all()
                self.send_response(202)
                self.end_headers()
                self.wfile.write(b'{"status":"success"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def listed_errors(database: Any, link: str) -> list[str]:
    """The errors of the runs the dashboard's executions list shows for a link (its filters, read as the page does)."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    window = {k: datetime.fromisoformat(query[k]).replace(tzinfo=UTC) for k in ("finished_since", "finished_until")}
    with database.reader() as conn:
        page = browse.executions_page(conn, workflow_id=query.get("workflow"), status=query["status"].split(","),
                                      **window)
    return [row["error_message"] for row in page["rows"]]
