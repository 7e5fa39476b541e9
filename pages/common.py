"""Helpers shared by the pages: runtime access, safe panels, URL values and replay availability."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from dash import html
from flask import current_app, request

from components.cards import error_state, input_problem
from services.alerting import AlertConfig
from services.errors import FlowledgerError, InvalidInput
from services.payloads import PayloadConfig

log = logging.getLogger(__name__)
STATUSES = ("completed", "failed", "timed_out", "cancelled", "running", "pending")
EVENT_STATUSES = ("received", "routed", "processed", "failed", "dead_lettered", "rejected")
TRIGGERS = ("webhook", "schedule", "manual")
CURL_BODY = "-d '{\"deal\": {\"id\": \"D-1001\"}, \"customer\": {\"id\": \"C-123\"}}'"


def curl_example() -> str:
    """A webhook to paste, addressed to the server this page was served from (not a fixed port)."""
    return (f"curl -X POST {request.host_url}api/v1/events/crm -H 'Content-Type: application/json' "
            f"-H 'X-Event-Type: deal.won' {CURL_BODY}")


def payload_config() -> PayloadConfig:
    """The process's payload settings (object store included)."""
    return current_app.extensions["flowledger"].payloads


def alert_rule() -> AlertConfig:
    """The rule paging uses (FLOWLEDGER_FAILURE_RATE_THRESHOLD, FLOWLEDGER_ALERT_MIN_EXECUTIONS): pages draw
    alert lines and colour failure rates by the same one."""
    settings = current_app.extensions["flowledger"].settings
    return AlertConfig(threshold=settings.failure_rate_threshold, min_executions=settings.alert_min_executions)


def has_route(rule: str, method: str = "POST") -> bool:
    """Whether the server exposes `rule` for `method` (replay endpoints are wired by another module)."""
    return any(r.rule == rule and method in (r.methods or ()) for r in current_app.url_map.iter_rules())


def panel_errors(count: int = 1) -> Callable:
    """Turn an exception in a callback into an inline error in its first output, never a blank page."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except InvalidInput as exc:  # the user's to correct: said as such, not as "something went wrong"
                box = input_problem(str(exc))
            except FlowledgerError as exc:
                box = error_state(str(exc))
            except Exception as exc:  # a panel shows the failure; the rest of the page keeps working
                log.exception("dashboard callback %s failed", fn.__name__)
                box = error_state(f"{type(exc).__name__}: {exc}")
            return box if count == 1 else (box, *([None] * (count - 1)))
        return inner
    return wrap


def parse_time(value: str | None) -> datetime | None:
    """An ISO date or time from the URL as UTC; blank or malformed values mean no bound."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_payload(text: str | None) -> dict[str, str] | None:
    """`customer.id = C-123` (several joined by `and`) as {"customer.id": "C-123"}."""
    if not text or "=" not in text:
        return None
    fields = {}
    for part in text.replace(" AND ", " and ").split(" and "):
        path, _, value = part.partition("=")
        if path.strip() and value.strip():
            fields[path.strip()] = value.strip().strip("'\"")
    return fields or None


def parse_uuid(value: Any) -> UUID | None:
    """A UUID or None."""
    try:
        return UUID(str(value))
    except (TypeError, ValueError):
        return None


def href(path: str, **query: Any) -> str:
    """A link with only the non-empty query values."""
    kept = {k: v for k, v in query.items() if v not in (None, "", [])}
    return path + ("?" + urlencode(kept) if kept else "")


def field(label: str, control: Any, *, grow: bool = False) -> html.Label:
    """A labelled filter control."""
    return html.Label([html.Span(label, className="fl-field__label"), control],
                      className="fl-field" + (" fl-field--grow" if grow else ""))


def unknown_choice(label: str, noun: str, values: Iterable[str], choices: Sequence[str]) -> str | None:
    """A message for URL values a dropdown cannot show (it would filter invisibly); None when all are choices."""
    bad = [v for v in values if v not in choices]
    return f"{label}: “{', '.join(bad)}” is not {noun}; choose from {', '.join(choices)}" if bad else None


def replay_route() -> bool:
    """Whether single-event replay (`POST /api/v1/events/<id>/replay`) is served by this process."""
    return any(r.rule.startswith("/api/v1/events/<") and r.rule.endswith("/replay") and "POST" in (r.methods or ())
               for r in current_app.url_map.iter_rules())


REPLAY_JS = """
function(n, eventId) {
    if (!n || !eventId) { return window.dash_clientside.no_update; }
    return window.flowledgerApi('POST', '/api/v1/events/' + eventId + '/replay',
                                {reason: 'replayed from the dashboard', requested_by: 'dashboard'})
      .then(function(r) {
        if (!r.ok) { return 'Replay refused (' + r.status + '): ' + window.flowledgerApiReason(r); }
        var ids = r.body.executions || r.body.execution_ids || [];
        return 'Replay started: ' + ids.length + ' new execution(s) ' + ids.join(', ');
      });
}
"""
