"""The worker pool that runs executions: submit, run inline, defer waits on a timer queue, cancel, shut down."""
from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from services import flow, recording, recovery, tracing, workflows
from services.db import Database
from services.errors import Conflict, InvalidInput, NotFound
from services.flow import FlowContext, Resume
from services.payloads import PayloadConfig
from services.recording import NO_PAYLOAD, NewExecution
from services.steps import Toolbox
from services.tracecontext import TraceParent

log = logging.getLogger(__name__)


class DelayedQueue:
    """Items handed to fire() at their due time by one timer thread, so a wait occupies no worker."""

    def __init__(self, fire: Callable[[Any], None], clock: Callable[[], datetime]) -> None:
        self._fire = fire
        self._clock = clock
        self._heap: list[tuple[datetime, int, Any]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def put(self, at: datetime, item: Any) -> None:
        """Schedule item for at."""
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._order), item))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="flowledger-delayed", daemon=True)
                self._thread.start()
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def stop(self) -> None:
        """Stop the timer thread; items still waiting are dropped (their executions stay running)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    delay = (self._heap[0][0] - self._clock()).total_seconds() if self._heap else None
                    self._cond.wait(timeout=min(delay, 1.0) if delay is not None else None)
                if self._stopped:
                    return
                _, _, item = heapq.heappop(self._heap)
            try:
                self._fire(item)
            except Exception:
                log.exception("delayed item could not be handed over")


class Runner:
    """Runs executions in a thread pool; many at a time, each recorded through the recording service."""

    def __init__(self, database: Database, payload_config: PayloadConfig, *, threads: int = 8,
                 secrets: Mapping[str, str] | None = None, actions: dict[str, Callable[..., Any]] | None = None,
                 request_id_header: str = "X-Request-Id", clock: Callable[[], datetime] = recording.utcnow) -> None:
        self.database = database
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="flowledger-run")
        self._callables = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="flowledger-call")
        self._cancel: dict[UUID, threading.Event] = {}
        self._lock = threading.Lock()
        self._active: set[concurrent.futures.Future] = set()
        self.delayed = DelayedQueue(self._resume, clock)
        # Queued, running and waiting executions are claimed in PostgreSQL, so that if this process dies
        # the recovery sweeper can tell them apart from those of live processes (services/recovery.py).
        self.claims = recovery.Claims(database)
        tools = Toolbox(secrets=dict(secrets or {}), actions=dict(actions or {}),
                        request_id_header=request_id_header, callable_pool=self._callables)
        self.flow = FlowContext(database=database, payloads=payload_config, tools=tools, clock=clock,
                                is_cancelled=self.is_cancelled, pause=self._pause, defer=self._defer)

    def start(self, *, workflow_id: str, payload: Any = None, trigger_source: str = "manual",
              event_id: UUID | None = None, parent: TraceParent | None = None) -> UUID:
        """Record a new execution of the workflow's latest version and queue it; returns its id at once."""
        with self.database.writer() as conn:
            row = workflows.get_workflow(conn, workflow_id)
            if parent is None and event_id is not None:
                parent = tracing.parent_for_event(conn, event_id=event_id)
            record = recording.create_execution(conn, self.flow.payloads, NewExecution(
                workflow_id=workflow_id, workflow_version=row["version"], trigger_source=trigger_source,
                trigger_payload=payload, event_id=event_id, parent=parent))
        self.submit(record.execution_id, payload=payload)
        return record.execution_id

    def submit(self, execution_id: UUID, *, payload: Any = NO_PAYLOAD, resume: Resume | None = None
               ) -> concurrent.futures.Future:
        """Queue an execution (or its continuation) on the pool."""
        if payload is not NO_PAYLOAD:
            self.flow.trigger_payloads[execution_id] = payload
        self.claims.claim(execution_id)  # released by _run when this run ends or defers
        future = self.pool.submit(self._run, execution_id, resume)
        with self._lock:
            self._active.add(future)
        future.add_done_callback(self._done)
        return future

    def run_inline(self, execution_id: UUID) -> str | None:
        """Run an execution in the calling thread (replay workers); returns its final status if it ended."""
        self.claims.claim(execution_id)
        return self._run(execution_id, None)

    def cancel(self, execution_id: UUID, *, cancelled_by: str, reason: str | None) -> dict[str, Any]:
        """Cancel a pending, running or waiting execution: CANCELLED audit with who, why and pending steps."""
        if not cancelled_by:
            raise InvalidInput("cancelled_by is required")
        with self.database.writer() as conn:
            row = conn.execute(sa.text(
                "SELECT s.status, e.workflow_id, e.workflow_version, e.event_id FROM execution_state s "
                "JOIN executions e ON e.execution_id = s.execution_id WHERE s.execution_id = :e"),
                {"e": execution_id}).one_or_none()
            if row is None:
                raise NotFound(f"execution {execution_id} not found")
            if row.status in recording.TERMINAL:
                raise Conflict(f"execution {execution_id} already ended as {row.status}")
            definition = workflows.definition_of(conn, row.workflow_id, row.workflow_version)
            pending = flow.pending_steps(conn, execution_id, definition)
            recording.cancel_execution(conn, execution_id=execution_id, cancelled_by=cancelled_by, reason=reason,
                                       pending_steps=pending, at=self.flow.clock())
            if row.event_id is not None:
                flow.settle_event(conn, row.event_id)
        self._flag(execution_id).set()
        return {"execution_id": execution_id, "status": "cancelled", "cancelled_by": cancelled_by,
                "reason": reason, "pending_steps": pending}

    def is_cancelled(self, execution_id: UUID) -> bool:
        """True once cancel() ran for the execution in this process."""
        with self._lock:
            event = self._cancel.get(execution_id)
        return bool(event and event.is_set())

    def wait_idle(self, timeout: float) -> bool:
        """Block until no execution is running on the pool (deferred waits excluded); False on timeout."""
        with self._lock:
            active = list(self._active)
        done, pending = concurrent.futures.wait(active, timeout=timeout)
        return not pending

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the timer queue and the pools; running executions finish first when wait is True."""
        self.delayed.stop()
        self.pool.shutdown(wait=wait, cancel_futures=not wait)
        self._callables.shutdown(wait=False, cancel_futures=True)
        self.claims.close()  # waits still pending are now unclaimed: the sweeper ends them as interrupted

    def _run(self, execution_id: UUID, resume: Resume | None) -> str | None:
        try:
            status = flow.run_execution(self.flow, execution_id, resume)
        except Exception:
            log.exception("execution %s stopped by an unexpected error", execution_id)
            status = self._fail(execution_id)
        finally:
            self.claims.release(execution_id)
        if status is not None:
            with self._lock:
                self._cancel.pop(execution_id, None)
        return status

    def _fail(self, execution_id: UUID) -> str | None:
        """Record the runner's own failure so that no execution stays running forever."""
        try:
            with self.database.writer() as conn:
                recording.finish_execution(conn, execution_id=execution_id, status="failed", at=self.flow.clock(),
                                           error_message="runner error; see the server log", reason="runner_error")
            return "failed"
        except Exception:
            log.exception("could not record the failure of execution %s", execution_id)
            return None

    def _flag(self, execution_id: UUID) -> threading.Event:
        with self._lock:
            return self._cancel.setdefault(execution_id, threading.Event())

    def _pause(self, execution_id: UUID, seconds: float) -> None:
        if seconds > 0:
            self._flag(execution_id).wait(seconds)

    def _defer(self, execution_id: UUID, at: datetime, resume: Resume) -> None:
        self.claims.claim(execution_id)  # held while the execution waits in memory
        self.delayed.put(at, (execution_id, resume))

    def _resume(self, item: tuple[UUID, Resume]) -> None:
        self.submit(item[0], resume=item[1])
        self.claims.release(item[0])

    def _done(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._active.discard(future)
