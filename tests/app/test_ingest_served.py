"""Ingestion through the production WSGI server: chunked bodies are measured, never cut short."""
import http.client
import uuid
from urllib.parse import urlparse

import pytest
import requests

from tests.fixtures.serve import start_serve

LIMIT = 4096


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    app = start_serve(tmp_path_factory.mktemp("ingest") / "data",
                      env={"FLOWLEDGER_MAX_BODY_BYTES": str(LIMIT), "FLOWLEDGER_SCHEDULER_ENABLED": "false"})
    yield app
    app.stop()


def _post_chunked(base_url: str, path: str, body: bytes) -> tuple[int, bytes]:
    parsed = urlparse(base_url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    chunks = (body[i:i + 1000] for i in range(0, len(body), 1000))
    conn.request("POST", path, body=chunks, headers={"Content-Type": "text/plain"}, encode_chunked=True)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def _stored(base_url: str, source: str) -> list[dict]:
    return requests.get(f"{base_url}/api/v1/events", params={"source_system": source}, timeout=10).json()["items"]


def test_a_chunked_body_one_byte_over_the_limit_is_413_and_nothing_is_stored(served):
    source = f"chunky-{uuid.uuid4().hex[:6]}"
    status, body = _post_chunked(served.base_url, f"/api/v1/events/{source}", b"y" * (LIMIT + 1))
    assert status == 413, body
    assert _stored(served.base_url, source) == []


def test_a_chunked_body_exactly_at_the_limit_is_stored_whole(served):
    source = f"chunky-{uuid.uuid4().hex[:6]}"
    payload = bytes(range(256)) * (LIMIT // 256)
    status, body = _post_chunked(served.base_url, f"/api/v1/events/{source}", payload)
    assert status == 422  # binary is not JSON: stored raw as rejected, never truncated
    events = _stored(served.base_url, source)
    assert len(events) == 1
    raw = requests.get(f"{served.base_url}/api/v1/events/{events[0]['event_id']}/raw", timeout=10).content
    assert raw == payload


def test_a_content_length_over_the_limit_is_413(served):
    source = f"big-{uuid.uuid4().hex[:6]}"
    response = requests.post(f"{served.base_url}/api/v1/events/{source}", data=b"{" + b" " * LIMIT + b"}",
                             timeout=10)
    assert response.status_code == 413
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert _stored(served.base_url, source) == []
