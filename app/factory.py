"""The application factory: builds the Flask server, mounts Dash, binds each concern."""
from __future__ import annotations

import logging

from flask import Flask

from app import api_health, auth, dashboard, problems
from app.jsonio import ApiJSONProvider
from app.runtime import Runtime
from app.settings import Settings
from services import db

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None, *,
               start_scheduler: bool | None = None) -> Flask:
    """Build the server for an already started runtime (tests pass their own)."""
    if runtime is None:
        from app.runtime import start

        runtime = start(settings or Settings())
    settings = runtime.settings
    server = Flask("flowledger")
    server.json_provider_class = ApiJSONProvider
    server.json = ApiJSONProvider(server)
    server.config["MAX_CONTENT_LENGTH"] = None
    server.extensions["flowledger"] = runtime
    db.configure(runtime.database)
    problems.init_app(server)
    api_health.init_app(server)
    auth.init_app(server, runtime)
    for module in _api_modules():
        module.init_app(server, runtime)
    dashboard.init_app(server, runtime)
    if start_scheduler if start_scheduler is not None else settings.scheduler_enabled:
        from app import scheduler

        scheduler.init_app(server, runtime)
    return server


def _api_modules() -> list:
    """REST blueprints, each with init_app(server, runtime); imported here to keep wiring in one place."""
    from app import api_auth, api_events, api_executions, api_jobs, api_replay, api_search, api_traces, api_workflows

    return [api_jobs, api_events, api_executions, api_traces, api_search, api_workflows, api_replay, api_auth]
