"""Authentication and authorisation at the edge (ingestion tokens, users, roles, CSRF)."""
from __future__ import annotations

from flask import Flask, Request

from app.runtime import Runtime


def init_app(server: Flask, runtime: Runtime) -> None:
    """Bind login, sessions and the request guard (open until the security work lands)."""


def check_ingest(request: Request, source_system: str, body: bytes) -> str | None:
    """Authenticate an ingestion request for source_system; returns the token id used, if any."""
    return None
