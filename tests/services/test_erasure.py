"""GDPR erasure: the subject's value leaves every table and object; metadata and an ERASED event stay."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import zstandard

from services import archive_reader, erasure, inspection, retention
from services.db import Database
from services.payloads import PayloadConfig
from services.retention import RetentionOptions
from tests.services.jobs_factories import ingest_event, make_workflow, record_run, s3_payloads

SUBJECT = "jane.subject-4711@example.com"


@pytest.fixture
def db(fresh_database: Database) -> Database:
    fresh_database.migrate()
    return fresh_database


@pytest.fixture
def cfg(s3_server: str, tmp_path: Path) -> PayloadConfig:
    return s3_payloads(s3_server, tmp_path)


def _data(db: Database, cfg: PayloadConfig) -> dict:
    trigger = {"customer": {"email": SUBJECT, "name": "Jane Subject"}, "order": {"id": "o-1"}}
    with db.writer() as conn:
        make_workflow(conn, "crm")
        event_id = ingest_event(conn, trigger)
        old = [record_run(conn, cfg, "crm", trigger=trigger, event_id=event_id, seed=1),
               record_run(conn, cfg, "crm", trigger={"customer": {"email": "x@example.com"}}, seed=2,
                          step_input={"lookup": {"email": SUBJECT}})]
        others = [record_run(conn, cfg, "crm", trigger={"customer": {"email": f"other{i}@example.com"}}, seed=10 + i)
                  for i in range(3)]
    # The first ones go to an archive object; then more data of the subject arrives, still hot.
    retention.prune(db, cfg, now=datetime.now(UTC) + timedelta(days=100), options=RetentionOptions(hot_days=90))
    with db.writer() as conn:
        hot = record_run(conn, cfg, "crm", trigger=trigger, seed=3)
    return {"subject": old + [hot], "others": others, "event": event_id}


def _tables_holding(db: Database, needle: str) -> list[str]:
    found = []
    with db.admin() as conn:
        tables = conn.execute(sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = "
            "'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition")).scalars().all()
        for table in tables:
            if conn.execute(sa.text(f'SELECT EXISTS (SELECT 1 FROM "{table}" t WHERE t::text LIKE :n)'),
                            {"n": f"%{needle}%"}).scalar():
                found.append(table)
        if conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM events WHERE position(:b in raw_body) > 0)"),
                        {"b": needle.encode()}).scalar():
            found.append("events.raw_body")
        for blob, in conn.execute(sa.text("SELECT data FROM payloads WHERE data IS NOT NULL")):
            if needle.encode() in zstandard.ZstdDecompressor().decompress(bytes(blob)):
                found.append("payloads.data")
    return found


def _objects_holding(cfg: PayloadConfig, needle: str) -> list[str]:
    hits = []
    for uri in cfg.store.list(""):
        data = cfg.store.get(uri)
        try:
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        except zstandard.ZstdError:
            pass
        if needle.encode() in data:
            hits.append(uri)
    return hits


def test_a_dry_run_lists_what_would_go_and_changes_nothing(db: Database, cfg: PayloadConfig) -> None:
    ids = _data(db, cfg)
    before = (_tables_holding(db, SUBJECT), cfg.store.list(""))
    plan = erasure.erase(db, cfg, subject_field="customer.email", value=SUBJECT, requested_by="dpo", dry_run=True)
    assert set(plan.execution_ids) == set(ids["subject"]) and plan.event_ids == [ids["event"]]
    assert len(plan.archive_uris) == 1
    assert (_tables_holding(db, SUBJECT), cfg.store.list("")) == before


def test_erasure_removes_the_value_from_every_table_and_object_and_keeps_metadata(
        db: Database, cfg: PayloadConfig) -> None:
    ids = _data(db, cfg)
    assert _tables_holding(db, SUBJECT) and _objects_holding(cfg, SUBJECT)
    plan = erasure.erase(db, cfg, subject_field="customer.email", value=SUBJECT, requested_by="dpo@example.com")
    assert plan.payloads_removed > 0 and plan.objects_deleted >= 1
    assert _tables_holding(db, SUBJECT) == []
    assert _objects_holding(cfg, SUBJECT) == []
    archive_reader._cache.clear()
    with db.reader() as conn:
        for execution_id in ids["subject"]:
            execution = inspection.get_execution(conn, cfg, execution_id)
            assert execution["status"] == "completed" and len(execution["steps"]) == 2
            assert all(step["input"] == archive_reader.ERASED for step in execution["steps"])
            erased = inspection.audit_events(conn, execution_id, event_type="ERASED")
            assert len(erased) == 1 and erased[0]["metadata"]["requested_by"] == "dpo@example.com"
        for execution_id in ids["others"]:  # everyone else's payloads are untouched, archived or not
            steps = inspection.get_execution(conn, cfg, execution_id)["steps"]
            assert all(step["input"] != archive_reader.ERASED for step in steps)
        assert conn.execute(sa.text("SELECT count(*) FROM event_state WHERE event_id = :e"),
                            {"e": ids["event"]}).scalar() == 1
