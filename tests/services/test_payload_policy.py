"""Per-workflow payload policy: full, summary or off; recorded per execution; context snapshots."""
import json
import uuid

import pytest
import sqlalchemy as sa

from services import inspection, recording, step_recording
from services.objectstore import open_store
from services.payload_policy import PayloadPolicy
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.step_recording import StepAttempt

VALUE = "VALUE-that-must-not-be-kept-7731"


@pytest.fixture
def cfg(tmp_path):
    return PayloadConfig(store=open_store("", local_root=tmp_path), train_dictionaries=False,
                         inline_max_bytes=2000)


def _workflow(database, policy: dict | None) -> str:
    workflow = f"wf-pol-{uuid.uuid4().hex[:6]}"
    with database.writer() as conn:
        conn.execute(sa.text("INSERT INTO workflows (workflow_id) VALUES (:w)"), {"w": workflow})
        _version(conn, workflow, 1, policy)
    return workflow


def _version(conn, workflow, version, policy):
    conn.execute(sa.text(
        "INSERT INTO workflow_versions (workflow_id, version, definition, payload_policy) "
        "VALUES (:w, :v, '{}', CAST(:p AS jsonb))"), {"w": workflow, "v": version, "p": json.dumps(policy or {})})


def _run(database, cfg, workflow, big: bool = False):
    output = {"customer": {"email": VALUE}, "rows": ["r" * 100] * (50 if big else 1)}
    with database.writer() as conn:
        rec = recording.create_execution(conn, cfg, NewExecution(
            workflow_id=workflow, trigger_payload={"order": VALUE}))
        step_recording.record_step(conn, cfg, execution_id=rec.execution_id, workflow_id=workflow,
                                   attempt=StepAttempt("fetch", "action", 0, "completed", input={"q": VALUE},
                                                       output=output))
        recording.finish_execution(conn, execution_id=rec.execution_id, status="completed", cfg=cfg,
                                   context={"trigger": {"order": VALUE}, "fetch": output})
    return rec.execution_id


def _everything_stored(database, cfg, execution_id) -> str:
    with database.admin() as conn:
        record = inspection.get_execution(conn, cfg, execution_id)
        text = conn.execute(sa.text("SELECT string_agg(coalesce(search_text, ''), ' ') FROM steps "
                                    "WHERE execution_id = :e"), {"e": execution_id}).scalar() or ""
    objects = " ".join(cfg.store.get(uri).hex() for uri in cfg.store.list(""))
    return json.dumps(record, default=str) + text + objects


@pytest.mark.parametrize("mode", ["summary", "off"])
def test_summary_and_off_keep_no_payload_value_anywhere(database, cfg, mode):
    workflow = _workflow(database, {"log_payload": mode})
    execution_id = _run(database, cfg, workflow, big=True)

    stored = _everything_stored(database, cfg, execution_id)
    assert VALUE not in stored and VALUE.encode().hex() not in stored
    with database.reader() as conn:
        record = inspection.get_execution(conn, cfg, execution_id)
    step = record["steps"][0]
    assert step["output"]["payload_not_kept"] is True and step["output"]["policy"] == mode
    assert step["output_meta"]["kept"] is False and step["output_meta"]["size_bytes"] > 0
    assert record["trigger_payload"]["payload_not_kept"] is True
    assert record["payload_policy"] == mode
    if mode == "summary":
        assert set(step["output"]["keys"]) == {"customer", "rows"}


def test_full_policy_keeps_values_and_the_context_snapshot(database, cfg):
    workflow = _workflow(database, None)
    execution_id = _run(database, cfg, workflow)
    with database.reader() as conn:
        record = inspection.get_execution(conn, cfg, execution_id)
    assert record["steps"][0]["output"]["customer"]["email"] == VALUE
    assert record["context_snapshot"] == {"trigger": {"order": VALUE}, "fetch": record["steps"][0]["output"]}
    assert record["payload_policy"] == "full"


def test_max_payload_bytes_cuts_only_larger_payloads_and_marks_them(database, cfg):
    workflow = _workflow(database, {"log_payload": "full", "max_payload_bytes": 1000})
    execution_id = _run(database, cfg, workflow, big=True)
    with database.reader() as conn:
        record = inspection.get_execution(conn, cfg, execution_id)
    step = record["steps"][0]
    assert step["input"] == {"q": VALUE}
    assert step["output"]["payload_not_kept"] is True and step["output"]["policy"] == "summary"


def test_a_policy_change_applies_to_new_executions_only(database, cfg):
    workflow = _workflow(database, {"log_payload": "full"})
    before = _run(database, cfg, workflow)
    with database.writer() as conn:
        _version(conn, workflow, 2, {"log_payload": "off"})
    after = _run(database, cfg, workflow)
    with database.reader() as conn:
        old = inspection.get_execution(conn, cfg, before)
        new = inspection.get_execution(conn, cfg, after)
    assert old["payload_policy"] == "full" and old["steps"][0]["input"] == {"q": VALUE}
    assert new["payload_policy"] == "off" and new["steps"][0]["input"]["payload_not_kept"] is True


def test_an_unknown_mode_is_refused():
    with pytest.raises(Exception, match="log_payload"):
        PayloadPolicy("sometimes")


def test_a_workflows_own_masking_rules_apply_on_top_of_the_global_ones(database, cfg):
    from services import workflows

    workflow = f"wf-mask-{uuid.uuid4().hex[:6]}"
    definition = workflows.parse({
        "id": workflow, "name": "bank sync", "trigger": {"type": "manual"},
        "steps": [{"name": "t", "type": "transform", "fields": {"x": "a"}}],
        "masking": {"keys": ["iban"], "paths": ["customer.phone"]},
        "payload_policy": {"log_payload": "full", "max_payload_bytes": 100000}})
    with database.writer() as conn:
        version = workflows.save_workflow(conn, definition=definition, created_by="test")
        rec = recording.create_execution(conn, cfg, NewExecution(
            workflow_id=workflow, workflow_version=version,
            trigger_payload={"customer": {"phone": "+33 6 12 34 56 78", "name": "Ann"}, "iban": "FR7630006000011"}))
        step_recording.record_step(conn, cfg, execution_id=rec.execution_id, workflow_id=workflow, attempt=StepAttempt(
            "t", "transform", 0, "completed", output={"account": {"iban": "FR7630006000011"}}))
        other = recording.create_execution(conn, cfg, NewExecution(
            workflow_id=f"{workflow}-other", trigger_payload={"iban": "DE89370400440532013000"}))
        stored = conn.execute(sa.text("SELECT masking, payload_policy FROM workflow_versions WHERE workflow_id = :w"),
                              {"w": workflow}).one()
    with database.reader() as conn:
        record = inspection.get_execution(conn, cfg, rec.execution_id)
        plain = inspection.get_execution(conn, cfg, other.execution_id)

    assert stored.masking == {"keys": ["iban"], "paths": ["customer.phone"]}
    assert stored.payload_policy == {"log_payload": "full", "max_payload_bytes": 100000}
    assert record["trigger_payload"] == {"customer": {"phone": "***", "name": "Ann"}, "iban": "***"}
    assert record["steps"][0]["output"] == {"account": {"iban": "***"}}
    assert "FR7630006000011" not in _everything_stored(database, cfg, rec.execution_id)
    assert plain["trigger_payload"] == {"iban": "DE89370400440532013000"}


def test_a_definition_with_a_bad_masking_path_or_policy_is_refused_with_every_problem():
    from services import workflows
    from services.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        workflows.parse({"id": "wf-bad", "name": "x", "trigger": {"type": "manual"},
                         "steps": [{"name": "t", "type": "transform", "fields": {"x": "a"}}],
                         "masking": {"paths": ["customer..["]}, "payload_policy": {"log_payload": "sometimes"}})
    assert len(caught.value.problems) >= 2
