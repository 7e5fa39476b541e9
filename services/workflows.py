"""Workflow definitions: parse JSON or YAML, validate listing every problem, store versions insert-only."""
from __future__ import annotations

import json
import threading
from typing import Any

import jmespath
import sqlalchemy as sa
import yaml
from pydantic import ValidationError
from sqlalchemy import Connection

from services.errors import Conflict, InvalidInput, NotFound
from services.workflow_models import (
    RESERVED_FIELDS,
    TEMPLATE,
    ActionStep,
    ConditionStep,
    Definition,
    ScheduleTrigger,
    TransformStep,
)


def parse(source: str | bytes | dict[str, Any], *, workflow_id: str | None = None) -> Definition:
    """A validated definition from JSON or YAML text (or a dict); InvalidInput lists every problem."""
    raw = _load(source)
    if workflow_id is not None and isinstance(raw, dict):
        raw.setdefault("id", workflow_id)
        if raw["id"] != workflow_id:
            raise InvalidInput("definition id differs from the workflow id in the path",
                               [f"id: {raw['id']!r} does not match {workflow_id!r}"])
    try:
        definition = Definition.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise InvalidInput(f"workflow definition has {len(problems)} problem(s)", problems) from None
    problems = _semantic_problems(definition)
    if problems:
        raise InvalidInput(f"workflow definition has {len(problems)} problem(s)", problems)
    return definition


_generation = 0


def generation() -> int:
    """Bumped whenever this process saves a workflow, so trigger caches refresh at once."""
    return _generation


def save_workflow(conn: Connection, *, definition: Definition, created_by: str | None,
                  change_note: str | None = None, create_only: bool = False) -> int:
    """Store a definition; a changed one becomes a new version, an unchanged one returns the current version."""
    global _generation
    _generation += 1
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"workflow:{definition.id}"})
    created = conn.execute(sa.text(
        "INSERT INTO workflows (workflow_id, created_by) VALUES (:w, :by) ON CONFLICT DO NOTHING RETURNING 1"),
        {"w": definition.id, "by": created_by}).scalar()
    if create_only and not created:
        raise Conflict(f"workflow {definition.id} already exists; PUT /api/v1/workflows/{definition.id} changes it")
    body = definition.model_dump(mode="json", exclude_none=True)
    latest = conn.execute(sa.text(
        "SELECT version, definition FROM workflow_versions WHERE workflow_id = :w ORDER BY version DESC LIMIT 1"),
        {"w": definition.id}).one_or_none()
    if latest is not None and latest.definition == body:
        return latest.version
    version = (latest.version if latest else 0) + 1
    conn.execute(sa.text(
        "INSERT INTO workflow_versions (workflow_id, version, created_by, change_note, definition, retention_days, "
        "retain_on_failure, legal_hold, masking, payload_policy) VALUES (:w, :v, :by, :note, CAST(:d AS jsonb), "
        ":ret, :rof, :hold, CAST(:mask AS jsonb), CAST(:policy AS jsonb))"),
        {"w": definition.id, "v": version, "by": created_by, "note": change_note, "d": json.dumps(body),
         "ret": definition.retention_days, "rof": definition.retain_on_failure, "hold": definition.legal_hold,
         "mask": json.dumps(definition.masking.model_dump() if definition.masking else {}),
         "policy": json.dumps(definition.payload_policy.model_dump(exclude_none=True)
                              if definition.payload_policy else {})})
    return version


def get_workflow(conn: Connection, workflow_id: str, *, version: int | None = None) -> dict[str, Any]:
    """One version of a workflow (the latest by default) with its definition and version count."""
    row = conn.execute(sa.text(
        "SELECT v.workflow_id, v.version, v.created_at, v.created_by, v.change_note, v.definition, "
        "(SELECT max(version) FROM workflow_versions WHERE workflow_id = v.workflow_id) AS latest_version "
        "FROM workflow_versions v WHERE v.workflow_id = :w AND (CAST(:v AS int) IS NULL OR v.version = :v) "
        "ORDER BY v.version DESC LIMIT 1"), {"w": workflow_id, "v": version}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"workflow {workflow_id}" + (f" version {version}" if version else "") + " not found")
    return dict(row)


def list_workflows(conn: Connection, *, trigger_type: str | None = None) -> list[dict[str, Any]]:
    """The latest version of every workflow, optionally only those with one trigger type."""
    rows = conn.execute(sa.text(
        "SELECT DISTINCT ON (workflow_id) workflow_id, version, created_at, created_by, definition "
        "FROM workflow_versions WHERE (CAST(:t AS text) IS NULL OR definition->'trigger'->>'type' = :t) "
        "ORDER BY workflow_id, version DESC"), {"t": trigger_type}).mappings().all()
    return [dict(r) for r in rows]


_cache: dict[tuple[str, int], Definition] = {}
_cache_lock = threading.Lock()


def definition_of(conn: Connection, workflow_id: str, version: int) -> Definition:
    """The parsed definition of one stored version (versions never change, so they are cached)."""
    key = (workflow_id, version)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is None:
        cached = Definition.model_validate(get_workflow(conn, workflow_id, version=version)["definition"])
        with _cache_lock:
            _cache[key] = cached
    return cached


def parse_stored(row: dict[str, Any]) -> Definition:
    """A definition read back from a list_workflows/get_workflow row."""
    key = (row["workflow_id"], row["version"])
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Definition.model_validate(row["definition"])
        return _cache[key]


def _load(source: str | bytes | dict[str, Any]) -> Any:
    if isinstance(source, dict):
        return dict(source)
    text = source.decode("utf-8", errors="replace") if isinstance(source, bytes) else source
    try:
        # YAML 1.2 is a superset of JSON for the documents people write, so one parser reads both.
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput("definition is neither JSON nor YAML", [f"parse error: {exc}"]) from None
    if not isinstance(value, dict):
        raise InvalidInput("definition must be a JSON object or YAML mapping")
    return value


def _semantic_problems(definition: Definition) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for index, step in enumerate(definition.steps):
        where = f"steps.{index}"
        if step.name in seen:
            problems.append(f"{where}.name: step name {step.name!r} is used twice")
        seen.add(step.name)
        if isinstance(step, ConditionStep):
            problems += _expression_problems(f"{where}.expression", step.expression)
        elif isinstance(step, TransformStep):
            for field, expr in step.fields.items():
                if field in RESERVED_FIELDS:
                    problems.append(f"{where}.fields.{field}: {field!r} is reserved")
                problems += _expression_problems(f"{where}.fields.{field}", expr)
        elif isinstance(step, ActionStep):
            for path, text in _strings(f"{where}", {"url": step.url, "headers": step.headers,
                                                    "body": step.body, "params": step.params}):
                for expr in TEMPLATE.findall(text):
                    if not expr.startswith("secret."):
                        problems += _expression_problems(path, expr)
    if isinstance(definition.trigger, ScheduleTrigger):
        try:
            from apscheduler.triggers.cron import CronTrigger

            CronTrigger.from_crontab(definition.trigger.cron, timezone="UTC")
        except ValueError as exc:
            problems.append(f"trigger.cron: {exc}")
    return problems


def _expression_problems(where: str, expression: str) -> list[str]:
    try:
        jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        return [f"{where}: invalid JMESPath expression {expression!r}: {str(exc).splitlines()[0]}"]
    return []


def _strings(path: str, value: Any):
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(f"{path}.{key}", child)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(f"{path}.{index}", child)


def _loc(loc: tuple) -> str:
    # Drop pydantic's discriminator tags ("action", "event") so paths read like the document.
    parts = [str(p) for p in loc if p not in ("action", "condition", "transform", "wait", "event", "schedule",
                                              "manual")]
    return ".".join(parts) or "definition"

