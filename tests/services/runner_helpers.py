"""Helpers for runner and replay tests: a loopback downstream server, workflows, events, polling."""
from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from services import events, router, workflows
from services.events import IncomingEvent


class Downstream:
    """A real HTTP server on 127.0.0.1 standing in for CRM, email and friends.

    Each path answers `statuses[path]` (default 200) after waiting on `gates[path]` if one is set;
    the JSON body is echoed back as {"echo": body, "n": request number}.
    """

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.gates: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}
        self.hits: Counter[str] = Counter()
        self.bodies: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path
                with owner._lock:
                    owner.hits[path] += 1
                    n = next(owner._numbers)
                    owner.bodies.setdefault(path, []).append(json.loads(raw) if raw else None)
                owner.entered.setdefault(path, threading.Event()).set()
                gate = owner.gates.get(path)
                if gate is not None:
                    gate.wait(30)
                status = owner.statuses.get(path, 200)
                answer = json.dumps({"echo": json.loads(raw) if raw else None, "n": n}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("X-Request-Id", f"req-{n}")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        self.server.shutdown()
        self.server.server_close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def save(database, definition: dict[str, Any], *, by: str = "tests") -> int:
    with database.writer() as conn:
        return workflows.save_workflow(conn, definition=workflows.parse(definition), created_by=by)


def ingest_and_route(database, runtime, runner, *, source: str, event_type: str,
                     payload: Any) -> tuple[uuid.UUID, list]:
    """What the ingestion hook does: store the event, route it, queue its executions."""
    with database.writer() as conn:
        result = events.ingest(conn, IncomingEvent(source_system=source, body=json.dumps(payload).encode(),
                                                   content_type="application/json", event_type=event_type),
                               max_depth=200)
        ids = router.route(conn, runtime.payloads, event_id=result.event_id, source_system=source,
                           event_type=event_type, payload=result.payload)
    for execution_id in ids:
        runner.submit(execution_id, payload=result.payload)
    return result.event_id, ids


def wait_for(condition: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll condition until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def status_of(database, execution_id) -> str:
    with database.reader() as conn:
        return conn.execute(sa.text("SELECT status FROM execution_state WHERE execution_id = :e"),
                            {"e": execution_id}).scalar()


def wait_status(database, execution_id, *statuses: str, timeout: float = 20.0) -> str:
    wanted = statuses or ("completed", "failed", "timed_out", "cancelled")
    return wait_for(lambda: (s := status_of(database, execution_id)) in wanted and s, timeout=timeout)


def event_status(database, event_id) -> str:
    with database.reader() as conn:
        return conn.execute(sa.text("SELECT status FROM event_state WHERE event_id = :e"), {"e": event_id}).scalar()


def steps_of(database, execution_id) -> list[dict[str, Any]]:
    with database.reader() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT seq, step_name, step_type, attempt, status, response_status, external_request_id, "
            "reused_from_execution, idempotency_key, wait_ms, error_message FROM steps WHERE execution_id = :e "
            "ORDER BY seq, attempt"), {"e": execution_id}).mappings()]


def audits_of(database, execution_id) -> list[dict[str, Any]]:
    with database.reader() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT event_type, metadata FROM execution_audit_events WHERE execution_id = :e "
            "ORDER BY \"timestamp\", id"), {"e": execution_id}).mappings()]


@pytest.fixture
def downstream():
    """A loopback HTTP server standing in for the CRM and email systems."""
    server = Downstream()
    yield server
    server.close()
