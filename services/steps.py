"""Step executors: templated HTTP actions, registered callables, JMESPath conditions and transforms."""
from __future__ import annotations

import concurrent.futures
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import jmespath
import requests

from services.recording import NO_PAYLOAD
from services.workflow_models import TEMPLATE, ActionStep, ConditionStep, TransformStep

log = logging.getLogger(__name__)
ACTIONS_GROUP = "flowledger.actions"
MASK = "***"
BODY_LIMIT = 256 * 1024


class StepError(Exception):
    """A step cannot run at all (bad template, unknown secret or callable); retrying will not help."""


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a step produced."""

    status: str  # completed, failed, timed_out
    input: Any = NO_PAYLOAD
    output: Any = NO_PAYLOAD
    error: str | None = None
    response_status: int | None = None
    external_request_id: str | None = None
    retryable: bool = True


@dataclass
class Toolbox:
    """What executors need from the process: secrets by name, callables, the request-id header."""

    secrets: Mapping[str, str] = field(default_factory=dict)
    actions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    request_id_header: str = "X-Request-Id"
    callable_pool: concurrent.futures.ThreadPoolExecutor | None = None

    def action(self, name: str) -> Callable[..., Any]:
        """The callable registered under name, loading the flowledger.actions entry points once."""
        if name not in self.actions:
            for ep in entry_points(group=ACTIONS_GROUP):
                self.actions.setdefault(ep.name, ep.load())
        if name not in self.actions:
            raise StepError(f"no action callable registered as {name!r} (entry point group {ACTIONS_GROUP})")
        return self.actions[name]


def render(template: Any, context: Mapping[str, Any], secrets: Mapping[str, str], *, reveal: bool) -> Any:
    """Fill {{ expr }} placeholders (JMESPath, or secret.NAME) in strings anywhere inside template."""
    if isinstance(template, dict):
        return {k: render(v, context, secrets, reveal=reveal) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, context, secrets, reveal=reveal) for v in template]
    if not isinstance(template, str):
        return template
    whole = TEMPLATE.fullmatch(template.strip())
    if whole:
        # A template that is one placeholder keeps the value's JSON type (numbers, objects).
        return _value(whole.group(1), context, secrets, reveal)
    return TEMPLATE.sub(lambda m: _text(_value(m.group(1), context, secrets, reveal)), template)


def run_action(step: ActionStep, context: Mapping[str, Any], tools: Toolbox, *,
               idempotency_key: str | None) -> Outcome:
    """One attempt of an action step."""
    try:
        if step.callable:
            return _call(step, context, tools)
        return _http(step, context, tools, idempotency_key)
    except StepError as exc:
        return Outcome("failed", error=str(exc), retryable=False)


def evaluate_condition(step: ConditionStep, context: Mapping[str, Any]) -> Outcome:
    """The condition's truth value as output {"result": bool}."""
    value = jmespath.search(step.expression, dict(context))
    return Outcome("completed", input={"expression": step.expression, "context": dict(context)},
                   output={"result": _truthy(value)})


def apply_transform(step: TransformStep, context: Mapping[str, Any]) -> Outcome:
    """New fields computed from the context, as output."""
    output = {name: jmespath.search(expr, dict(context)) for name, expr in step.fields.items()}
    return Outcome("completed", input={"fields": step.fields, "context": dict(context)}, output=output)


def _http(step: ActionStep, context: Mapping[str, Any], tools: Toolbox, key: str | None) -> Outcome:
    parts = {"url": step.url, "headers": step.headers, "body": step.body}
    real = render(parts, context, tools.secrets, reveal=True)
    shown = render(parts, context, tools.secrets, reveal=False)
    headers = {k: str(v) for k, v in real["headers"].items()}
    if key:
        # Downstream systems that honour Idempotency-Key can dedupe even a request we could not confirm.
        headers.setdefault("Idempotency-Key", key)
    record = {"method": step.method, "url": shown["url"], "headers": shown["headers"], "body": shown["body"]}
    kwargs: dict[str, Any] = {"headers": headers, "timeout": step.timeout_seconds}
    if real["body"] is not None:
        if isinstance(real["body"], (dict, list)):
            kwargs["json"] = real["body"]
        else:
            kwargs["data"] = str(real["body"]).encode()
    try:
        response = requests.request(step.method, real["url"], **kwargs)
    except requests.Timeout:
        return Outcome("timed_out", input=record, error=f"no answer within {step.timeout_seconds}s")
    except requests.RequestException as exc:
        return Outcome("failed", input=record, error=f"{type(exc).__name__}: {exc}")
    header = step.request_id_header or tools.request_id_header
    output = {"status": response.status_code, "body": _body(response)}
    ok = response.status_code < 400
    return Outcome("completed" if ok else "failed", input=record, output=output,
                   error=None if ok else f"HTTP {response.status_code}: {response.text[:500]}",
                   response_status=response.status_code, external_request_id=response.headers.get(header))


def _call(step: ActionStep, context: Mapping[str, Any], tools: Toolbox) -> Outcome:
    fn = tools.action(step.callable or "")
    params = render(step.params, context, tools.secrets, reveal=True)
    record = {"callable": step.callable, "params": render(step.params, context, tools.secrets, reveal=False)}
    pool = tools.callable_pool
    if pool is None:
        raise StepError("no pool for callables")
    future = pool.submit(fn, dict(context), **params)
    try:
        result = future.result(timeout=step.timeout_seconds)
    except concurrent.futures.TimeoutError:
        # A thread cannot be killed; the call is abandoned and its result ignored.
        return Outcome("timed_out", input=record, error=f"no result within {step.timeout_seconds}s")
    except Exception as exc:  # the callable's own failure is the step's failure
        return Outcome("failed", input=record, error=f"{type(exc).__name__}: {exc}")
    return Outcome("completed", input=record, output=result)


def _value(expr: str, context: Mapping[str, Any], secrets: Mapping[str, str], reveal: bool) -> Any:
    if expr.startswith("secret."):
        name = expr.removeprefix("secret.")
        if name not in secrets:
            raise StepError(f"secret {name!r} is not configured (FLOWLEDGER_WORKFLOW_SECRETS)")
        return secrets[name] if reveal else MASK
    try:
        return jmespath.search(expr, dict(context))
    except jmespath.exceptions.JMESPathError as exc:
        raise StepError(f"template expression {expr!r} failed: {exc}") from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:BODY_LIMIT]


def _truthy(value: Any) -> bool:
    # JMESPath truthiness: empty string, list, object, false and null are false.
    return not (value is None or value is False or value in ("", [], {}))
