"""Executions recorded through the real recording service, for the dashboard read tests."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from services import recording, step_recording
from services.recording import NewExecution
from services.step_recording import StepAttempt


def record(conn, cfg, *, workflow_id: str, at: datetime, status: str = "completed",
           steps: list[dict[str, Any]] | None = None, payload: Any = None, replay_of=None,
           error: str | None = None) -> uuid.UUID:
    """One finished execution starting at `at`; steps are dicts of StepAttempt fields with `ms` durations."""
    rec = recording.create_execution(conn, cfg, NewExecution(workflow_id=workflow_id, started_at=at,
                                                             trigger_payload=payload, replay_of=replay_of))
    recording.start_execution(conn, execution_id=rec.execution_id, at=at)
    clock = at
    for index, spec in enumerate(steps or [{"step_name": "only", "status": "completed", "ms": 100}]):
        spec = dict(spec)
        ms = spec.pop("ms", 100)
        spec.setdefault("seq", index + 1)
        spec.setdefault("step_type", "action")
        clock += timedelta(milliseconds=spec.pop("gap", 0))
        step_recording.record_step(conn, cfg, execution_id=rec.execution_id, workflow_id=workflow_id,
                                   attempt=StepAttempt(started_at=clock,
                                                       completed_at=clock + timedelta(milliseconds=ms), **spec))
        clock += timedelta(milliseconds=ms)
    failed = next((s for s in reversed(steps or []) if s["status"] in ("failed", "timed_out")), None)
    recording.finish_execution(conn, execution_id=rec.execution_id, status=status, at=clock + timedelta(seconds=1),
                               error_message=error or (failed or {}).get("error_message"),
                               failed_step=(failed or {}).get("step_name"))
    return rec.execution_id
