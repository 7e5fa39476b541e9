"""Workflow definitions: JSON or YAML, every problem listed, versions inserted only when the definition changes."""
from __future__ import annotations

import pytest

from services import router, workflows
from services.errors import Conflict, InvalidInput
from tests.services.runner_helpers import unique

YAML = """
id: {id}
name: Deal won
trigger: {{type: event, source: "{id}-crm*", event_type: "deal.*"}}
steps:
  - {{name: big_deals_only, type: condition, expression: "trigger.amount > `1000`"}}
  - {{name: shape, type: transform, fields: {{email: trigger.customer.email}}}}
  - name: create_crm_record
    type: action
    url: "https://crm.example/api/deals"
    headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
    body: {{email: "{{{{ email }}}}"}}
    max_attempts: 3
    backoff_seconds: 1
  - {{name: pause, type: wait, seconds: 60}}
"""


def test_yaml_and_json_definitions_parse_to_the_same_model():
    from_yaml = workflows.parse(YAML.format(id="wf-1"))
    from_json = workflows.parse(from_yaml.model_dump_json())
    assert from_yaml == from_json
    assert [s.type for s in from_yaml.steps] == ["condition", "transform", "action", "wait"]


def test_an_invalid_definition_lists_every_problem():
    with pytest.raises(InvalidInput) as err:
        workflows.parse({
            "id": "bad id!", "trigger": {"type": "schedule", "cron": "61 * * * *"},
            "steps": [{"name": "a", "type": "condition", "expression": "trigger.["},
                      {"name": "a", "type": "action"},
                      {"name": "w", "type": "wait", "seconds": -1}]})
    problems = "\n".join(err.value.problems)
    for expected in ("id:", "name: Field required", "steps.1: Value error, an action needs exactly one of url",
                     "steps.2.seconds"):
        assert expected in problems, problems
    assert len(err.value.problems) >= 4


def test_semantic_problems_are_all_reported_together():
    with pytest.raises(InvalidInput) as err:
        workflows.parse({"id": "wf", "name": "x", "trigger": {"type": "schedule", "cron": "61 * * * *"},
                         "steps": [{"name": "a", "type": "condition", "expression": "trigger.["},
                                   {"name": "a", "type": "transform", "fields": {"steps": "trigger"}}]})
    problems = err.value.problems
    assert any("invalid JMESPath" in p for p in problems)
    assert any("used twice" in p for p in problems)
    assert any("'steps' is reserved" in p for p in problems)
    assert any(p.startswith("trigger.cron") for p in problems)


def test_a_changed_definition_creates_a_new_version_and_an_unchanged_one_does_not(database):
    workflow_id = unique("versioned")
    definition = workflows.parse(YAML.format(id=workflow_id))
    with database.writer() as conn:
        assert workflows.save_workflow(conn, definition=definition, created_by="ana") == 1
        assert workflows.save_workflow(conn, definition=definition, created_by="ana") == 1
        changed = definition.model_copy(update={"name": "Deal won (v2)"})
        assert workflows.save_workflow(conn, definition=changed, created_by="bo") == 2
        latest = workflows.get_workflow(conn, workflow_id)
        first = workflows.get_workflow(conn, workflow_id, version=1)
        with pytest.raises(Conflict):
            workflows.save_workflow(conn, definition=definition, created_by="cy", create_only=True)
    assert (latest["version"], latest["latest_version"], latest["created_by"]) == (2, 2, "bo")
    assert first["definition"]["name"] == "Deal won"


def test_the_router_matches_source_and_event_type_patterns(database):
    workflow_id = unique("routed")
    with database.writer() as conn:
        workflows.save_workflow(conn, definition=workflows.parse(YAML.format(id=workflow_id)), created_by="t")
        hits = {m.workflow_id for m in router.matching_workflows(conn, source_system=f"{workflow_id}-crm-eu",
                                                                 event_type="deal.won")}
        misses = {m.workflow_id for m in router.matching_workflows(conn, source_system="shop",
                                                                   event_type="deal.won")}
    assert workflow_id in hits and workflow_id not in misses
