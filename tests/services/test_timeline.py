"""Reads behind the execution page: failing steps, windows by seq, p95 of recent runs, payloads, replays."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services import timeline
from tests.services.dashboard_factories import record

AT = datetime(2019, 7, 1, 9, 0, tzinfo=UTC)
STEPS = [
    {"step_name": "lookup_crm_contact", "status": "completed", "ms": 300, "input": {"customer": {"id": "C-1"}},
     "output": {"contact": "ok"}},
    {"step_name": "send_invoice_email", "seq": 2, "status": "failed", "ms": 500, "error_message": "HTTP 503 mail"},
    {"step_name": "send_invoice_email", "seq": 2, "attempt": 2, "status": "failed", "ms": 500, "wait_ms": 2000,
     "gap": 2000, "error_message": "HTTP 503 from mail.example.com"},
    {"step_name": "update_crm_deal", "seq": 3, "status": "skipped", "ms": 0},
]


def test_a_failed_execution_names_its_failing_step_with_the_final_attempts_error(database, runtime):
    with database.writer() as conn:
        execution_id = record(conn, runtime.payloads, workflow_id=f"tl-{uuid.uuid4().hex[:8]}", at=AT,
                              status="failed", steps=STEPS)
    with database.reader() as conn:
        found = timeline.execution(conn, execution_id)
        steps = timeline.steps(conn, execution_id)
    assert (found["step_count"], found["attempt_count"], found["first_failed_seq"]) == (3, 4, 2)
    assert [(f["step_name"], f["attempt"], f["error_message"]) for f in found["failures"]] == [
        ("send_invoice_email", 2, "HTTP 503 from mail.example.com")]
    assert found["traceparent"].startswith("00-" + found["trace_id"])
    assert list(steps["seq"]) == [1, 2, 2, 3] and steps["wait_ms"].iloc[2] == 2000


def test_large_executions_load_in_windows_that_open_on_the_first_failure(database, runtime):
    steps = [{"step_name": f"batch_{n:04d}", "status": "completed", "ms": 5} for n in range(1, 1300)]
    steps.append({"step_name": "batch_1300", "seq": 1300, "status": "failed", "ms": 5, "error_message": "boom"})
    with database.writer() as conn:
        execution_id = record(conn, runtime.payloads, workflow_id=f"tl-big-{uuid.uuid4().hex[:8]}", at=AT,
                              status="failed", steps=steps)
    with database.reader() as conn:
        found = timeline.execution(conn, execution_id)
        start = timeline.window_start(found)
        window = timeline.steps(conn, execution_id, offset=start)
    assert found["step_count"] == 1300 and found["failures"][0]["position"] == 1299
    # the failure is the last step, so the window is the last full window, not a sliver
    assert start == 1300 - timeline.WINDOW
    assert window["seq"].nunique() == timeline.WINDOW and window["seq"].max() == 1300


def test_a_window_puts_the_failing_step_a_third_of_the_way_down_and_stays_full():
    assert timeline.centred(5_000, steps=10_000, size=150) == 4_950
    assert timeline.centred(10, steps=10_000, size=150) == 0
    assert timeline.centred(9_999, steps=10_000, size=150) == 9_850
    assert timeline.centred(3, steps=40, size=150) == 0


def test_a_step_is_located_by_its_position_among_the_executions_steps(database, runtime):
    steps = [{"step_name": f"s{n}", "seq": n * 10, "status": "completed", "ms": 5} for n in range(1, 6)]
    steps.append({"step_name": "s3", "seq": 30, "attempt": 2, "status": "completed", "ms": 5})
    with database.writer() as conn:
        execution_id = record(conn, runtime.payloads, workflow_id=f"tl-loc-{uuid.uuid4().hex[:8]}", at=AT,
                              steps=steps)
    with database.reader() as conn:
        rows = timeline.steps(conn, execution_id)
        retry = rows[(rows["seq"] == 30) & (rows["attempt"] == 2)].iloc[0]
        found = timeline.locate(conn, execution_id, retry["step_id"])
        assert timeline.locate(conn, execution_id, uuid.uuid4()) is None
    assert found == {"seq": 30, "attempt": 2, "position": 2}


def test_the_minimap_overview_folds_steps_into_runs_with_their_failures_and_retries(database, runtime):
    steps = [{"step_name": f"b{n}", "status": "completed", "ms": 5} for n in range(1, 1001)]
    steps[449] = {"step_name": "b450", "seq": 450, "status": "failed", "ms": 5, "error_message": "boom"}
    steps.append({"step_name": "b700", "seq": 700, "attempt": 2, "status": "completed", "ms": 5})
    with database.writer() as conn:
        execution_id = record(conn, runtime.payloads, workflow_id=f"tl-map-{uuid.uuid4().hex[:8]}", at=AT,
                              status="failed", steps=steps)
    with database.reader() as conn:
        runs = timeline.overview(conn, execution_id, buckets=100)
    assert len(runs) == 100 and runs["steps"].sum() == 1000
    assert (runs["first"].iloc[0], runs["last"].iloc[-1]) == (0, 999)
    assert runs.loc[runs["failed"] > 0, "first"].tolist() == [440]
    assert runs.loc[runs["retried"] > 0, "first"].tolist() == [690]


def test_p95_per_step_comes_from_the_workflows_earlier_completed_runs(database, runtime):
    workflow = f"tl-p95-{uuid.uuid4().hex[:8]}"
    with database.writer() as conn:
        for n in range(20):
            record(conn, runtime.payloads, workflow_id=workflow, at=AT + timedelta(minutes=n),
                   steps=[{"step_name": "charge", "status": "completed", "ms": 100 * (n + 1)}])
    with database.reader() as conn:
        p95 = timeline.p95_by_step(conn, workflow_id=workflow, before=AT + timedelta(hours=1))
    assert 1800 < p95["charge"] <= 2000


def test_a_steps_payloads_load_on_request_and_a_replay_pairs_with_its_original(database, runtime):
    workflow = f"tl-replay-{uuid.uuid4().hex[:8]}"
    with database.writer() as conn:
        original = record(conn, runtime.payloads, workflow_id=workflow, at=AT, status="failed", steps=STEPS)
        replayed = record(conn, runtime.payloads, workflow_id=workflow, at=AT + timedelta(hours=1),
                          replay_of=original, steps=[dict(STEPS[0], status="skipped", ms=0),
                                                     {"step_name": "send_invoice_email", "seq": 2,
                                                      "status": "completed", "ms": 200}])
    with database.reader() as conn:
        first = timeline.steps(conn, original).iloc[0]
        step = timeline.step(conn, runtime.payloads, execution_id=original, step_id=first["step_id"])
        pair = timeline.replay_pair(conn, replayed)
        assert timeline.replay_pair(conn, original) is None
        assert [r["execution_id"] for r in timeline.execution(conn, original)["replays"]] == [replayed]
    assert step["input"] == {"customer": {"id": "C-1"}} and step["input_meta"]["size_bytes"] > 0
    assert len(pair[0]) == 4 and len(pair[1]) == 2
