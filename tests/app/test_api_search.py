"""GET /api/v1/search, payload field filters on events and executions, and the `flowledger search` commands."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from services import recording, step_recording
from services.opensearch import OpenSearchConfig, OpenSearchIndex
from services.recording import NewExecution
from services.step_recording import StepAttempt
from tests.services.test_opensearch import FakeOpenSearch


@pytest.fixture
def fake():
    server = FakeOpenSearch()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _run(runtime, workflow_id: str, output: dict, *, status: str = "completed", trigger=None, error=None):
    with runtime.database.writer() as conn:
        rec = recording.create_execution(conn, runtime.payloads, NewExecution(workflow_id=workflow_id,
                                                                              trigger_payload=trigger))
        recording.start_execution(conn, execution_id=rec.execution_id)
        step = step_recording.record_step(conn, runtime.payloads, execution_id=rec.execution_id,
                                          workflow_id=workflow_id,
                                          attempt=StepAttempt(step_name="call-crm", step_type="action", seq=0,
                                                              status=status, output=output, error_message=error))
        recording.finish_execution(conn, execution_id=rec.execution_id, status=status)
    return rec.execution_id, step.step_id


def _archive(runtime, execution_id, uri: str) -> None:
    """What retention records once an execution's payloads moved to the archive (another issue's service)."""
    archive_id = uuid.uuid4()
    with runtime.database.maintainer() as conn:
        conn.execute(sa.text(
            "INSERT INTO archive_manifests (archive_id, kind, uri, storage_class, size_bytes, sha256) "
            "VALUES (:a, 'executions', :u, 'STANDARD_IA', 1, 'h')"), {"a": archive_id, "u": uri})
        conn.execute(sa.text("INSERT INTO execution_archives (execution_id, archive_id) VALUES (:e, :a)"),
                     {"e": execution_id, "a": archive_id})


def test_search_answers_ranked_hits_with_snippets_links_and_filters(client, runtime):
    wf = f"wf-api-{uuid.uuid4().hex[:8]}"
    token = f"sku{uuid.uuid4().hex[:8]}"
    failed, step = _run(runtime, wf, {"sku": token, "reply": "out of stock"}, status="failed",
                        error=f"warehouse refused {token}")
    _run(runtime, wf, {"sku": token})

    everything = client.get(f"/api/v1/search?q={token}&workflow_id={wf}")
    only_failed = client.get(f"/api/v1/search?q={token}&workflow_id={wf}&status=failed")

    assert everything.status_code == 200 and everything.json["backend"] == "postgresql"
    assert len(everything.json["items"]) == 2
    assert [h["step_id"] for h in only_failed.json["items"]] == [str(step)]
    hit = only_failed.json["items"][0]
    assert hit["link"] == f"/executions/{failed}?step={step}" and f"<mark>{token}</mark>" in hit["snippet"]
    assert hit["archived"] is False and hit["payload_location"] == "hot"


def test_search_without_text_or_with_a_bad_time_is_a_422_problem(client):
    assert client.get("/api/v1/search?q=%20").status_code == 422
    bad = client.get("/api/v1/search?q=x&since=yesterday")
    assert bad.status_code == 422 and bad.content_type == "application/problem+json"


def test_events_are_found_by_an_embedded_payload_field(client):
    customer = f"C-{uuid.uuid4().hex[:8]}"
    posted = [client.post("/api/v1/events/shop", json={"type": "order.created", "customer": {"id": cid},
                                                        "total": 12}).json["event_id"]
              for cid in (customer, customer, f"{customer}-other")]

    found = client.get(f"/api/v1/events?payload.customer.id={customer}")
    combined = client.get(f"/api/v1/events?payload.customer.id={customer}&payload.total=12&source_system=shop")
    none = client.get(f"/api/v1/events?payload.customer.id={customer}&payload.total=13")

    assert found.status_code == 200
    assert {e["event_id"] for e in found.json["items"]} == set(posted[:2])
    assert {e["event_id"] for e in combined.json["items"]} == set(posted[:2])
    assert none.json["items"] == []


def test_executions_are_found_by_an_embedded_payload_field(client, runtime):
    wf = f"wf-api-{uuid.uuid4().hex[:8]}"
    order = f"ORD-{uuid.uuid4().hex[:8]}"
    wanted, _ = _run(runtime, wf, {"ok": True}, trigger={"order": {"number": order}})
    _run(runtime, wf, {"ok": True}, trigger={"order": {"number": order + "-2"}})

    found = client.get(f"/api/v1/executions?payload.order.number={order}&workflow_id={wf}")

    assert [e["execution_id"] for e in found.json["items"]] == [str(wanted)]


def test_with_opensearch_configured_search_asks_it_and_says_when_a_payload_is_archived(client, runtime, fake,
                                                                                       monkeypatch):
    wf = f"wf-api-{uuid.uuid4().hex[:8]}"
    archived, step = _run(runtime, wf, {"note": "anything"}, status="failed", error="boom")
    hot, hot_step = _run(runtime, wf, {"note": "anything"})
    _archive(runtime, archived, "s3://archive/x.jsonl.zst")
    fake.search_answer = {"hits": {"hits": [
        {"_score": 3.0, "_source": {"step_id": str(s), "execution_id": str(e)},
         "highlight": {"search_text": ["<mark>anything</mark>"]}} for e, s in ((archived, step), (hot, hot_step))]}}
    monkeypatch.setitem(runtime.extras, "opensearch", OpenSearchIndex(OpenSearchConfig(url=fake.url)))

    everything = client.get("/api/v1/search?q=anything")
    failed = client.get("/api/v1/search?q=anything&status=failed&limit=5")

    assert everything.json["backend"] == "opensearch"
    assert [h["execution_id"] for h in everything.json["items"]] == [str(archived), str(hot)]
    assert [h["archived_uri"] for h in everything.json["items"]] == ["s3://archive/x.jsonl.zst", None]
    assert [h["execution_id"] for h in failed.json["items"]] == [str(archived)]
    assert failed.json["items"][0]["payload_location"] == "archive" and failed.json["items"][0]["workflow_id"] == wf
    assert fake.searches[1][1]["size"] == 25


def test_when_opensearch_is_unreachable_search_falls_back_to_postgresql(client, runtime, fake, monkeypatch):
    wf = f"wf-api-{uuid.uuid4().hex[:8]}"
    token = f"fb{uuid.uuid4().hex[:8]}"
    _run(runtime, wf, {"t": token})
    fake.server.shutdown()
    fake.server.server_close()
    index = OpenSearchIndex(OpenSearchConfig(url=fake.url), sleep=lambda _: None)
    monkeypatch.setitem(runtime.extras, "opensearch", index)

    answer = client.get(f"/api/v1/search?q={token}")

    assert answer.status_code == 200 and answer.json["backend"] == "postgresql"
    assert "fallback_reason" in answer.json and len(answer.json["items"]) == 1


def _env(database, tmp_path, **extra):
    return {"DATABASE_URL": database.admin_url.render_as_string(hide_password=False),
            "FLOWLEDGER_DATA_DIR": str(tmp_path), **extra}


def test_cli_query_prints_matches_and_json(database, runtime, tmp_path):
    wf = f"wf-cli-{uuid.uuid4().hex[:8]}"
    token = f"cli{uuid.uuid4().hex[:8]}"
    execution, step = _run(runtime, wf, {"t": token})

    lines = CliRunner().invoke(cli, ["search", "query", token], env=_env(database, tmp_path))
    as_json = CliRunner().invoke(cli, ["search", "query", token, "--json"], env=_env(database, tmp_path))

    assert lines.exit_code == 0, lines.output
    assert f"http://127.0.0.1:8050/executions/{execution}?step={step}" in lines.output
    # a terminal gets the snippet as one line of plain text: no HTML tags or escapes
    snippet = lines.output.splitlines()[1]
    assert token in snippet and "<mark>" not in snippet and "&" not in snippet
    assert json.loads(as_json.output)["items"][0]["workflow_id"] == wf
    # what a newcomer types first: `flowledger search TEXT` is the query command
    short = CliRunner().invoke(cli, ["search", token, "--json"], env=_env(database, tmp_path))
    assert short.exit_code == 0, short.output
    assert json.loads(short.output)["items"][0]["step_id"] == json.loads(as_json.output)["items"][0]["step_id"]
    assert "No such option" in CliRunner().invoke(cli, ["search", "--bogus"]).output
    assert "did you mean" not in short.stderr
    # a mistyped subcommand is searched for, and the user is told what they probably meant
    typo = CliRunner().invoke(cli, ["search", "reindx", "--json"], env=_env(database, tmp_path))
    assert typo.exit_code == 0, typo.output
    assert "did you mean `flowledger search reindex`?" in typo.stderr
    assert json.loads(typo.stdout)["items"] == []


def test_cli_reindex_sends_steps_since_a_time_with_a_progress_bar(database, runtime, tmp_path, fake):
    since = datetime.now(UTC) - timedelta(seconds=1)
    _, step = _run(runtime, f"wf-cli-{uuid.uuid4().hex[:8]}", {"t": "reindex me"})
    env = _env(database, tmp_path, FLOWLEDGER_OPENSEARCH_URL=fake.url)

    result = CliRunner().invoke(cli, ["search", "reindex", "--since", since.isoformat()], env=env)

    assert result.exit_code == 0, result.output
    assert "reindexing steps" in result.output and "reindexed" in result.output
    assert str(step) in {i[1] for i in fake.accepted}
    assert "flowledger-steps" in fake.templates


def test_cli_reindex_without_opensearch_says_which_setting_is_missing(database, tmp_path):
    from app.cli_search import reindex_command

    result = CliRunner().invoke(reindex_command, [], env=_env(database, tmp_path, FLOWLEDGER_OPENSEARCH_URL=""))
    assert result.exit_code != 0 and "FLOWLEDGER_OPENSEARCH_URL" in str(result.exception)


def test_cli_index_pending_runs_the_outbox_indexer_once(database, tmp_path, fake):
    env = _env(database, tmp_path, FLOWLEDGER_OPENSEARCH_URL=fake.url)

    shown = CliRunner().invoke(cli, ["search", "outbox", "show"], env=env)
    result = CliRunner().invoke(cli, ["search", "index-pending"], env=env)

    assert shown.exit_code == 0 and "search outbox is" in shown.output
    assert result.exit_code == 0, result.output
    assert "outbox position" in result.output or "another process" in result.output


def test_a_process_configured_for_opensearch_switches_the_outbox_on_and_its_job_indexes_new_steps(
        fresh_database, settings, fake):
    from flask import Flask

    from app import api_search
    from app.runtime import Runtime

    fresh_database.migrate()
    rt = Runtime(settings=settings.model_copy(update={"opensearch_url": fake.url}), database=fresh_database)
    api_search.init_app(Flask("search-test"), rt)
    _, step = _run(rt, "wf-cdc", {"hello": "world"})

    api_search.index_pending_job(rt)()

    assert [i[1] for i in fake.accepted] == [str(step)]
    assert fake.accepted[0][2]["search_text"] == "world"
