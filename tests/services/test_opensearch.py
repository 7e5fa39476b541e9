"""The OpenSearch path against a loopback server that records _bulk, index templates, index creation, _search."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from services import opensearch, recording, step_recording
from services.db import Database
from services.objectstore import LocalObjectStore
from services.opensearch import OpenSearchConfig, OpenSearchIndex
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.step_recording import StepAttempt

SECRET = "walrus-Pa55-9931"


class FakeOpenSearch:
    """Just enough of the OpenSearch 2.x REST API to record what the adapter sends."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, str, dict]] = []
        self.refused_bulks = 0
        self.fail_bulks = 0
        self.templates: dict[str, dict] = {}
        self.indices: set[str] = set()
        self.searches: list[tuple[str, dict]] = []
        self.deletes: list[tuple[str, dict]] = []
        self.fail_deletes = 0
        self.search_answer: dict = {"hits": {"hits": []}}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._send(200 if self.path.strip("/").split("?")[0] in fake.indices else 404)

            def do_PUT(self) -> None:
                path, body = self.path.split("?")[0].strip("/"), self._body()
                with fake.lock:
                    if path.startswith("_index_template/"):
                        fake.templates[path.split("/", 1)[1]] = json.loads(body)
                        return self._send(200, {"acknowledged": True})
                    if path in fake.indices:
                        return self._send(400, {"error": {"type": "resource_already_exists_exception"},
                                                "status": 400})
                    fake.indices.add(path)
                return self._send(200, {"acknowledged": True, "shards_acknowledged": True, "index": path})

            def do_POST(self) -> None:
                path, body = self.path.split("?")[0].strip("/"), self._body()
                if path == "_bulk":
                    return self._bulk(body)
                if path.endswith("_delete_by_query"):
                    return self._delete_by_query(path, json.loads(body))
                if path.endswith("_search"):
                    fake.searches.append((path, json.loads(body)))
                    return self._send(200, fake.search_answer)
                return self._send(404, {"error": "no such endpoint", "status": 404})

            do_GET = do_POST

            def _delete_by_query(self, path: str, body: dict) -> None:
                with fake.lock:
                    if fake.fail_deletes > 0:
                        fake.fail_deletes -= 1
                        return self._send(503, {"error": {"type": "unavailable_shards_exception"}, "status": 503})
                    fake.deletes.append((path, body))
                    gone = set(body["query"]["terms"]["execution_id"])
                    kept = [a for a in fake.accepted if a[2]["execution_id"] not in gone]
                    deleted, fake.accepted[:] = len(fake.accepted) - len(kept), kept
                return self._send(200, {"took": 1, "deleted": deleted, "failures": []})

            def _bulk(self, body: bytes) -> None:
                with fake.lock:
                    if fake.fail_bulks > 0:
                        fake.fail_bulks -= 1
                        fake.refused_bulks += 1
                        return self._send(503, {"error": {"type": "unavailable_shards_exception"}, "status": 503})
                    lines = body.decode().splitlines()
                    items = []
                    for action, doc in zip(lines[::2], lines[1::2], strict=True):
                        meta = json.loads(action)["index"]
                        fake.accepted.append((meta["_index"], meta["_id"], json.loads(doc)))
                        items.append({"index": {"_index": meta["_index"], "_id": meta["_id"], "status": 201}})
                return self._send(200, {"took": 1, "errors": False, "items": items})

        return Handler


@pytest.fixture
def fake() -> Iterator[FakeOpenSearch]:
    server = FakeOpenSearch()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def db(fresh_database: Database) -> Database:
    fresh_database.migrate()
    with fresh_database.writer() as conn:
        opensearch.set_outbox(conn, enabled=True, reason="test")
    return fresh_database


@pytest.fixture
def cfg(tmp_path) -> PayloadConfig:
    return PayloadConfig(store=LocalObjectStore(tmp_path / "objects"), masking_keys=("password",),
                         train_dictionaries=False)


def _index(fake: FakeOpenSearch, sleeps: list[float] | None = None, **config) -> OpenSearchIndex:
    sleeps = sleeps if sleeps is not None else []
    return OpenSearchIndex(OpenSearchConfig(url=fake.url, **config), sleep=sleeps.append)


def _record(conn: sa.Connection, cfg: PayloadConfig, steps: int, *, workflow_id: str = "wf-os") -> list[uuid.UUID]:
    rec = recording.create_execution(conn, cfg, NewExecution(workflow_id=workflow_id))
    return [step_recording.record_step(
        conn, cfg, execution_id=rec.execution_id, workflow_id=workflow_id, attempt=StepAttempt(
            step_name=f"s{seq}", step_type="action", seq=seq, status="completed",
            input={"login": {"password": SECRET}}, output={"n": seq, "ref": f"REF-{seq}"})).step_id
        for seq in range(steps)]


def _outbox_order(db: Database) -> list[str]:
    with db.reader() as conn:
        return [str(r[0]) for r in conn.execute(sa.text("SELECT step_id FROM search_outbox ORDER BY id"))]


def test_every_step_reaches_bulk_exactly_once_and_in_outbox_order(db, cfg, fake):
    recorded = []
    for _ in range(3):
        with db.writer() as conn:
            recorded += _record(conn, cfg, 4)
    index = _index(fake, batch_size=5)
    queued = _outbox_order(db)

    first = opensearch.index_pending(db, index)
    again = opensearch.index_pending(db, index)

    assert [i[1] for i in fake.accepted] == [str(s) for s in recorded] == queued
    assert _outbox_order(db) == []  # sent rows are pruned once OpenSearch confirmed them
    assert (first.sent, first.batches, again.sent) == (12, 3, 0)
    month = datetime.now(UTC).strftime("%Y.%m")
    assert {i[0] for i in fake.accepted} == {f"flowledger-steps-{month}"} == fake.indices
    template = fake.templates["flowledger-steps"]
    assert template["index_patterns"] == ["flowledger-steps-*"]
    assert template["template"]["mappings"]["properties"]["search_text"]["type"] == "text"
    doc = fake.accepted[0][2]
    assert doc["workflow_id"] == "wf-os" and doc["step_name"] == "s0" and "REF-0" in doc["search_text"]
    assert all(SECRET not in json.dumps(d) for _, _, d in fake.accepted)
    with db.admin() as conn:
        assert conn.execute(sa.text("SELECT last_id FROM search_progress WHERE consumer = 'opensearch'")).scalar() \
            == conn.execute(sa.text("SELECT last_value FROM search_outbox_id_seq")).scalar()


def test_a_server_answering_503_for_a_while_causes_retries_and_loses_nothing(db, cfg, fake):
    with db.writer() as conn:
        recorded = _record(conn, cfg, 6)
    fake.fail_bulks = 3
    sleeps: list[float] = []

    run = opensearch.index_pending(db, _index(fake, sleeps, batch_size=4))

    assert fake.refused_bulks == 3 and sleeps == [0.5, 1.0, 2.0]
    assert run.error is None and run.sent == 6
    assert [i[1] for i in fake.accepted] == [str(s) for s in recorded]


def test_an_outage_longer_than_the_retries_keeps_the_position_and_a_later_run_catches_up(db, cfg, fake):
    with db.writer() as conn:
        recorded = _record(conn, cfg, 3)
    fake.fail_bulks = 100
    index = _index(fake, max_attempts=3)

    down = opensearch.index_pending(db, index)
    fake.fail_bulks = 0
    up = opensearch.index_pending(db, index)

    assert down.error and down.sent == 0 and fake.refused_bulks == 3
    assert up.sent == 3 and [i[1] for i in fake.accepted] == [str(s) for s in recorded]


def test_a_connection_refused_is_retried_then_reported_without_moving_the_position(db, cfg, fake):
    with db.writer() as conn:
        _record(conn, cfg, 1)
    fake.server.shutdown()
    fake.server.server_close()
    sleeps: list[float] = []

    run = opensearch.index_pending(db, _index(fake, sleeps, max_attempts=3))

    assert run.error and run.sent == 0 and len(sleeps) == 2
    with db.reader() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM search_progress")).scalar() == 0


def test_a_transaction_still_open_holds_back_outbox_rows_committed_after_it(db, cfg, fake):
    slow = db.engine("writer").connect()
    slow.begin()
    early = _record(slow, cfg, 1, workflow_id="wf-slow")
    with db.writer() as conn:
        late = _record(conn, cfg, 1, workflow_id="wf-fast")
    index = OpenSearchIndex(OpenSearchConfig(url=fake.url), sleep=time.sleep)

    held = opensearch.index_pending(db, index, settle_timeout=0.3)
    accepted_while_open = list(fake.accepted)
    slow.commit()
    slow.close()
    done = opensearch.index_pending(db, index)

    assert held.held_back and held.sent == 0 and accepted_while_open == []
    assert [i[1] for i in fake.accepted] == [str(early[0]), str(late[0])]
    assert done.sent == 2


def test_reindex_sends_every_step_again_and_reports_progress(db, cfg, fake):
    with db.writer() as conn:
        recorded = _record(conn, cfg, 5)
    index = _index(fake, batch_size=2)
    opensearch.index_pending(db, index)
    calls: list[tuple[int, int]] = []

    sent = opensearch.reindex(db, index, progress=lambda done, total: calls.append((done, total)))

    assert sent == 5
    assert sorted(i[1] for i in fake.accepted[5:]) == sorted(str(s) for s in recorded)
    assert [i[2] for i in fake.accepted[5:]] == sorted([i[2] for i in fake.accepted[:5]],
                                                       key=lambda d: (d["created_at"], d["step_id"]))
    assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert opensearch.reindex(db, index, since=datetime(2999, 1, 1, tzinfo=UTC)) == 0


def test_steps_are_not_queued_while_the_outbox_is_switched_off(db, cfg):
    with db.writer() as conn:
        assert opensearch.set_outbox(conn, enabled=False, reason="test") is True
        assert opensearch.set_outbox(conn, enabled=False, reason="again") is False
        _record(conn, cfg, 2)
    assert _outbox_order(db) == []


def test_search_sends_a_search_request_and_returns_ranked_linked_hits(fake):
    step, execution = str(uuid.uuid4()), str(uuid.uuid4())
    fake.search_answer = {"hits": {"hits": [{
        "_score": 7.5, "matched_queries": ["exact"],
        "_source": {"step_id": step, "execution_id": execution, "step_name": "invoice", "status": "failed"},
        "highlight": {"search_text": ["ref <mark>INV-2026-1</mark>"]}}]}}
    since = datetime(2026, 1, 1, tzinfo=UTC)

    hits = _index(fake).search("INV-2026-1", workflow_id="wf-a", since=since, limit=5)

    path, body = fake.searches[0]
    assert path == "flowledger-steps-*/_search" and body["size"] == 5
    assert {"term": {"workflow_id": "wf-a"}} in body["query"]["bool"]["filter"]
    assert {"range": {"created_at": {"gte": since.isoformat()}}} in body["query"]["bool"]["filter"]
    assert hits == [{"step_id": step, "execution_id": execution, "step_name": "invoice", "seq": None,
                     "attempt": None, "step_status": "failed", "created_at": None, "rank": 7.5, "exact": True,
                     "snippet": "ref <mark>INV-2026-1</mark>", "link": f"/executions/{execution}?step={step}"}]


def _recorded_with(conn: sa.Connection, cfg: PayloadConfig, email: str, *, workflow_id: str) -> uuid.UUID:
    rec = recording.create_execution(conn, cfg, NewExecution(workflow_id=workflow_id,
                                                             trigger_payload={"customer": {"email": email}}))
    step_recording.record_step(conn, cfg, execution_id=rec.execution_id, workflow_id=workflow_id, attempt=StepAttempt(
        step_name="send_email", step_type="action", seq=0, status="completed",
        input={"to": email}, output={"accepted": email}))
    return rec.execution_id


def test_an_erasure_removes_the_subjects_documents_from_the_index_and_keeps_everyone_elses(db, cfg, fake):
    from services import erasure

    with db.writer() as conn:
        subject = _recorded_with(conn, cfg, "erase.me@example.org", workflow_id="wf-erase")
        other = _recorded_with(conn, cfg, "keep.me@example.org", workflow_id="wf-erase")
    index = _index(fake)
    opensearch.index_pending(db, index)
    assert {d["execution_id"] for _, _, d in fake.accepted} == {str(subject), str(other)}

    erasure.erase(db, cfg, subject_field="customer.email", value="erase.me@example.org", requested_by="dpo")
    fake.fail_deletes = 1  # the removal is retried like any other request
    run = opensearch.index_pending(db, index)

    assert run.error is None and len(fake.deletes) == 1
    path, body = fake.deletes[0]
    assert path == "flowledger-steps-*/_delete_by_query" and body["query"]["terms"]["execution_id"] == [str(subject)]
    assert {d["execution_id"] for _, _, d in fake.accepted} == {str(other)}
    assert "erase.me@example.org" not in json.dumps([d for _, _, d in fake.accepted])
    with db.reader() as conn:  # confirmed rows are pruned: the outbox does not grow for ever
        assert conn.execute(sa.text("SELECT count(*) FROM search_outbox")).scalar_one() == 0


def test_a_removal_queued_while_the_index_is_down_is_applied_in_order_when_it_returns(db, cfg, fake):
    from services import deletion

    with db.writer() as conn:
        doomed = _recorded_with(conn, cfg, "a@example.org", workflow_id="wf-delete")
    with db.maintainer() as conn:  # deleted before its documents were ever sent
        deletion.force_delete(conn, cfg.store, execution_id=doomed, actor="admin", reason="test data")
    with db.writer() as conn:
        later = _recorded_with(conn, cfg, "b@example.org", workflow_id="wf-delete")
    fake.fail_deletes = 100
    index = _index(fake, max_attempts=2)

    down = opensearch.index_pending(db, index)
    assert down.error and {d["execution_id"] for _, _, d in fake.accepted} == {str(doomed)}
    fake.fail_deletes = 0
    up = opensearch.index_pending(db, index)

    assert up.error is None and [b["query"]["terms"]["execution_id"] for _, b in fake.deletes] == [[str(doomed)]]
    assert {d["execution_id"] for _, _, d in fake.accepted} == {str(later)}


def test_executions_removed_at_the_end_of_retention_leave_the_index_too(db, cfg, fake):
    from datetime import timedelta

    from services import retention
    from tests.services.jobs_factories import make_workflow

    with db.writer() as conn:
        make_workflow(conn, "wf-expire", retention_days=30)
        expired = _recorded_with(conn, cfg, "old@example.org", workflow_id="wf-expire")
        recording.finish_execution(conn, execution_id=expired, status="completed")
    index = _index(fake)
    opensearch.index_pending(db, index)
    assert {d["execution_id"] for _, _, d in fake.accepted} == {str(expired)}

    report = retention.prune(db, cfg, now=datetime.now(UTC) + timedelta(days=400),
                             options=retention.RetentionOptions(workflow_id="wf-expire"))
    opensearch.index_pending(db, index)

    assert report.workflows["wf-expire"]["expire_executions"] == 1
    assert fake.accepted == [] and [b["query"]["terms"]["execution_id"] for _, b in fake.deletes] == [[str(expired)]]
