"""The job runner: two processes against one database run each scheduled slot once; leadership fails over."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from services import jobs
from services.db import Database
from tests.fixtures.postgres import ROLES

WORKER = textwrap.dedent("""
    import json, sys, time
    from datetime import datetime, timedelta, timezone
    import sqlalchemy as sa
    from services import jobs
    from services.db import Database
    from sqlalchemy.engine import make_url

    url, go, job = sys.argv[1], sys.argv[2], sys.argv[3]
    db = Database(admin_url=make_url(url))
    deadline = time.monotonic() + 30
    import os
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the start signal file, polled with a deadline
    base = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def work():
        with db.writer() as conn:  # real work of measurable length inside the lock
            conn.execute(sa.text("SELECT pg_sleep(0.05)"))
        return {"pid": os.getpid()}

    outcomes = []
    for minute in range(8):
        slot = base + timedelta(minutes=minute)
        for _ in range(3):  # the scheduler may fire a slot more than once (misfires, restarts)
            o = jobs.run_job(db, job, work, slot=slot)
            outcomes.append([slot.isoformat(), o.ran, o.status])
    print(json.dumps(outcomes))
""")


def test_two_scheduler_processes_against_one_database_run_each_slot_once(database: Database, tmp_path: Path) -> None:
    job = f"test-job-{time.time_ns()}"
    go = tmp_path / "go"
    url = database.admin_url.render_as_string(hide_password=False)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(go), job], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]) for _ in range(2)]
    go.write_text("go")
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    ran = [(slot, status) for outcomes in results for slot, did, status in outcomes if did]
    assert len(ran) == 8 and len({slot for slot, _ in ran}) == 8
    with database.reader() as conn:
        runs = jobs.runs_of(conn, job)
    assert len(runs) == 8 and all(r["status"] == "succeeded" and r["finished_at"] for r in runs)
    pids = {r["detail"]["pid"] for r in runs}
    print(f"\nslots run by process ids {sorted(pids)}; skipped: "
          f"{sum(1 for o in results for _, did, _ in o if not did)} attempts")


def test_a_failing_job_is_recorded_and_its_slot_is_not_run_again(database: Database) -> None:
    job = f"failing-{time.time_ns()}"
    slot = datetime(2030, 1, 1, tzinfo=UTC)

    def boom() -> dict:
        raise RuntimeError("endpoint down")
    first = jobs.run_job(database, job, boom, slot=slot)
    second = jobs.run_job(database, job, lambda: {"ok": True}, slot=slot)
    assert (first.ran, first.status) == (True, "failed") and "endpoint down" in first.detail["error"]
    assert (second.ran, second.status) == (False, "already-ran")


def test_only_one_leader_at_a_time_and_leadership_fails_over_when_the_leader_dies(database: Database) -> None:
    key = time.time_ns() % 2_000_000_000
    one = jobs.Leader(Database(admin_url=database.admin_url, roles=ROLES), key=key)
    two = jobs.Leader(Database(admin_url=database.admin_url, roles=ROLES), key=key)
    assert one.poll() is True and two.poll() is False and one.poll() is True
    # The leader's backend dies (crash, network partition): PostgreSQL frees its lock.
    with database.admin() as conn:
        pid = conn.execute(sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = :k AND granted"), {"k": key}).scalar()
        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    deadline = time.monotonic() + 10
    while not two.poll() and time.monotonic() < deadline:
        time.sleep(0.05)  # poll interval of the election loop, bounded by the deadline
    assert two.is_leader
    assert one.poll() is False and not one.is_leader
    two.release()
    assert one.poll() is True
    one.release()


def test_slots_are_aligned_so_every_process_computes_the_same_one() -> None:
    at = datetime(2030, 1, 1, 10, 17, 42, tzinfo=UTC)
    assert jobs.slot_for(at, timedelta(hours=1)) == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert jobs.slot_for(at, timedelta(minutes=1)) == datetime(2030, 1, 1, 10, 17, tzinfo=UTC)


KILLED_WORKER = textwrap.dedent("""
    import sys, time
    from datetime import datetime, timezone
    from pathlib import Path
    from services import jobs
    from services.db import Database
    from sqlalchemy.engine import make_url

    url, marker, job = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    db = Database(admin_url=make_url(url))

    def work():
        marker.write_text("running")
        time.sleep(120)  # a long job; the test kills this process while it runs

    jobs.run_job(db, job, work, slot=datetime(2030, 1, 1, tzinfo=timezone.utc))
""")


def test_a_slot_left_running_by_a_killed_process_is_run_again_by_the_next_one(database: Database,
                                                                             tmp_path: Path) -> None:
    job = f"killed-{time.time_ns()}"
    slot = datetime(2030, 1, 1, tzinfo=UTC)
    marker = tmp_path / "running"
    url = database.admin_url.render_as_string(hide_password=False)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, url, str(marker), job],
                            cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the worker to be inside its job, bounded by the deadline
        assert marker.exists(), "the worker never started its job"
        with database.reader() as conn:
            (left,) = jobs.runs_of(conn, job)
        assert left["status"] == "running" and left["finished_at"] is None
    finally:
        proc.kill()  # SIGKILL: no cleanup runs, the row stays 'running'
        proc.wait(timeout=30)

    outcome = jobs.run_job(database, job, lambda: {"ok": True}, slot=slot)
    again = jobs.run_job(database, job, lambda: {"ok": True}, slot=slot)
    later = jobs.run_job(database, job, lambda: {"ok": True}, slot=slot + timedelta(minutes=1))

    assert (outcome.ran, outcome.status) == (True, "succeeded")
    assert outcome.detail == {"taken_over_from": left["host"], "ok": True}
    assert (again.ran, again.status) == (False, "already-ran")
    assert later.ran and "taken_over_from" not in later.detail
    with database.reader() as conn:
        run, _ = jobs.runs_of(conn, job)
    assert run["status"] == "succeeded" and run["finished_at"] and run["host"] == jobs.runner_id()


def test_an_earlier_slot_left_running_is_marked_abandoned_when_the_job_next_runs(database: Database) -> None:
    job = f"abandoned-{time.time_ns()}"
    slot = datetime(2030, 1, 1, tzinfo=UTC)
    # What a process killed inside its run leaves behind (its advisory lock went with its connection).
    with database.writer() as conn:
        conn.execute(sa.text("INSERT INTO job_runs (job, slot, host) VALUES (:j, :s, 'gone-host:1')"),
                     {"j": job, "s": slot})
    outcome = jobs.run_job(database, job, lambda: {"ok": True}, slot=slot + timedelta(minutes=5))
    assert outcome.ran and outcome.status == "succeeded"
    with database.reader() as conn:
        old, new = jobs.runs_of(conn, job)
    assert old["status"] == "abandoned" and old["finished_at"] is not None
    assert old["detail"] == {"abandoned_by": "gone-host:1", "noticed_by": jobs.runner_id()}
    assert new["status"] == "succeeded"
