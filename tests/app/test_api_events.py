"""Ingestion: bodies kept byte for byte, duplicates stored once, bad input answered and kept apart."""
import hashlib
import json
import threading
import uuid

import pytest
import sqlalchemy as sa


def _source() -> str:
    return f"src-{uuid.uuid4().hex[:8]}"


def _count(database, source: str) -> int:
    with database.admin() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM events WHERE source_system = :s"), {"s": source}).scalar()


@pytest.mark.parametrize("body,content_type", [
    (b'{"type": "deal.won", "amount": 1200.50, "b": 1, "a": 2, "a": 3}', "application/json"),
    (b"plain text, not json \x01\x02", "text/plain"),
    (b"\xff\xfe\x00garbage bytes \xc3\x28", "application/octet-stream"),
])
def test_raw_body_round_trips_exactly_with_its_hash(client, body, content_type):
    source = _source()
    posted = client.post(f"/api/v1/events/{source}", data=body, content_type=content_type)
    event_id = posted.get_json()["event_id"] if posted.is_json else posted.get_json(force=True)["event_id"]

    raw = client.get(f"/api/v1/events/{event_id}/raw")
    meta = client.get(f"/api/v1/events/{event_id}").get_json()

    assert raw.data == body
    assert raw.headers["Content-Type"].startswith(content_type)
    assert meta["payload_hash"] == hashlib.sha256(body).hexdigest()
    assert meta["source_system"] == source


def test_json_event_is_accepted_with_its_type_and_a_received_status(client):
    source = _source()
    response = client.post(f"/api/v1/events/{source}", json={"event_type": "order.created", "id": 7})
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "accepted" and body["duplicate"] is False
    event = client.get(f"/api/v1/events/{body['event_id']}").get_json()
    assert event["event_type"] == "order.created"
    assert event["payload"] == {"event_type": "order.created", "id": 7}
    assert [h["status"] for h in event["status_history"]] == ["received"]


def test_received_is_shown_from_the_event_row_once_and_in_order(client, database):
    source = _source()
    event_id = client.post(f"/api/v1/events/{source}", json={"id": 1}).get_json()["event_id"]
    with database.admin() as conn:  # migration 0020: an accepted event writes no history row of its own
        stored = conn.execute(sa.text("SELECT count(*) FROM event_status_history WHERE event_id = :e"),
                              {"e": event_id}).scalar()
        conn.execute(sa.text("INSERT INTO event_status_history (event_id, status) VALUES (:e, 'routed')"),
                     {"e": event_id})
        older = client.post(f"/api/v1/events/{source}", json={"id": 2}).get_json()["event_id"]
        # an event stored before 0020 has its 'received' row: it is shown once, not twice
        conn.execute(sa.text("INSERT INTO event_status_history (event_id, status) VALUES (:e, 'received')"),
                     {"e": older})
    event = client.get(f"/api/v1/events/{event_id}").get_json()
    assert stored == 0
    assert [h["status"] for h in event["status_history"]] == ["received", "routed"]
    assert event["status_history"][0]["at"] == event["received_at"]
    assert event["processing_status"] == "routed"
    history = client.get(f"/api/v1/events/{older}").get_json()["status_history"]
    assert [h["status"] for h in history] == ["received"]


def test_event_type_prefers_the_header_then_cloudevents_then_the_body(client):
    source = _source()
    first = client.post(f"/api/v1/events/{source}", json={"type": "body.type"}, headers={"X-Event-Type": "hdr"})
    second = client.post(f"/api/v1/events/{source}", json={"type": "body.type"}, headers={"ce-type": "ce.type"})
    third = client.post(f"/api/v1/events/{source}", json={"type": "body.type"})
    types = [client.get(f"/api/v1/events/{r.get_json()['event_id']}").get_json()["event_type"]
             for r in (first, second, third)]
    assert types == ["hdr", "ce.type", "body.type"]


def test_a_repeated_idempotency_key_returns_the_first_event_and_stores_nothing(client, database):
    source = _source()
    first = client.post(f"/api/v1/events/{source}", json={"n": 1}, headers={"Idempotency-Key": "k-1"})
    again = client.post(f"/api/v1/events/{source}", json={"n": 2}, headers={"webhook-id": "k-1"})

    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json() == {"event_id": first.get_json()["event_id"], "status": "accepted", "duplicate": True}
    assert _count(database, source) == 1


def test_twenty_concurrent_identical_requests_store_one_event(app, database):
    source = _source()
    barrier = threading.Barrier(20)
    results = []

    def post():
        client = app.test_client()
        barrier.wait()
        results.append(client.post(f"/api/v1/events/{source}", json={"same": True},
                                   headers={"Idempotency-Key": "same-key"}))

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.status_code for r in results) == [200] * 19 + [202]
    assert len({r.get_json()["event_id"] for r in results}) == 1
    assert _count(database, source) == 1


@pytest.mark.parametrize("body,reason", [
    (b"not json at all", "not JSON"),
    (b'{"a": "\xff"}', "UTF-8"),
    (b'{"a": "nul \\u0000 inside"}', "\\u0000"),
    (b"[" * 5000 + b"]" * 5000, "nesting depth"),
    (b'{"n": NaN}', "not JSON"),
])
def test_bad_bodies_are_kept_raw_as_rejected_and_answered_422(client, database, body, reason):
    source = _source()
    response = client.post(f"/api/v1/events/{source}", data=body, content_type="application/json")

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert reason in problem["detail"] and problem["event_id"]
    assert client.get(f"/api/v1/events/{problem['event_id']}/raw").data == body
    event = client.get(f"/api/v1/events/{problem['event_id']}").get_json()
    assert event["processing_status"] == "rejected" and event["payload"] is None


def test_rejections_leave_earlier_events_untouched(client, database):
    source = _source()
    good = client.post(f"/api/v1/events/{source}", json={"keep": "me"}).get_json()["event_id"]
    client.post(f"/api/v1/events/{source}", data=b"{broken", content_type="application/json")
    event = client.get(f"/api/v1/events/{good}").get_json()
    assert event["payload"] == {"keep": "me"} and event["processing_status"] == "received"
    assert _count(database, source) == 2


def test_a_body_over_the_limit_is_413_and_not_stored(client, database, runtime, monkeypatch):
    source = _source()
    monkeypatch.setattr(runtime.settings, "max_body_bytes", 100)
    response = client.post(f"/api/v1/events/{source}", data=b"x" * 101, content_type="text/plain")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert _count(database, source) == 0


def test_credentials_in_a_json_body_are_masked_in_the_query_copy(client):
    source = _source()
    body = {"user": "ann", "password": "hunter2", "nested": {"api_key": "k-123"}}
    event_id = client.post(f"/api/v1/events/{source}", json=body).get_json()["event_id"]
    event = client.get(f"/api/v1/events/{event_id}").get_json()
    assert "hunter2" not in json.dumps(event) and "k-123" not in json.dumps(event)


def test_event_list_filters_and_pages_with_a_cursor(client):
    source = _source()
    ids = [client.post(f"/api/v1/events/{source}", json={"i": i}, headers={"X-Event-Type": "t.page"})
           .get_json()["event_id"] for i in range(5)]
    first = client.get(f"/api/v1/events?source_system={source}&limit=3").get_json()
    second = client.get(f"/api/v1/events?source_system={source}&limit=3&cursor={first['next_cursor']}").get_json()

    listed = [e["event_id"] for e in first["items"] + second["items"]]
    assert sorted(listed) == sorted(ids) and len(listed) == 5
    assert second["next_cursor"] is None


def test_bad_query_parameters_are_problems_not_500s(client):
    assert client.get("/api/v1/events?since=yesterday").status_code == 422
    assert client.get("/api/v1/events?cursor=%%%").status_code == 422
    assert client.get("/api/v1/events/not-a-uuid").status_code == 422
    assert client.get(f"/api/v1/events/{uuid.uuid4()}").status_code == 404
    assert client.post("/api/v1/events/bad source!", data=b"{}").status_code in (404, 422)
