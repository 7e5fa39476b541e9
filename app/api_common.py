"""Helpers shared by the REST blueprints: the runtime, bounded body reading, query parsing."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from flask import Request, current_app

from app.runtime import Runtime
from services.errors import InvalidInput


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


def runtime() -> Runtime:
    """The runtime of the app serving this request."""
    return current_app.extensions["flowledger"]


def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than limit bytes, also for chunked bodies without Content-Length."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    # Read the stream to its end ourselves: a limit applied by the framework can stop reading at
    # the limit and hand over a truncated body as if it were complete.
    stream = request.stream
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_uuid(value: str, what: str) -> UUID:
    """A UUID from a path segment, or a clear 422."""
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a UUID") from None


def parse_time(args: Any, name: str) -> datetime | None:
    """An ISO 8601 timestamp query parameter (timezone required), or None."""
    return parse_timestamp(args.get(name), name)


def parse_timestamp(raw: str | None, label: str) -> datetime | None:
    """An ISO 8601 timestamp with a timezone, or None when blank; label names it in the error."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{label} must be an ISO 8601 timestamp, got {raw!r}") from None
    if value.tzinfo is None:
        raise InvalidInput(f"{label} must include a timezone (e.g. 2026-01-10T00:00:00Z)")
    return value


def parse_limit(args: Any, default: int = 50, maximum: int = 500) -> int:
    """A page size within bounds."""
    raw = args.get("limit", default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"limit must be an integer, got {raw!r}") from None
    if not 1 <= value <= maximum:
        raise InvalidInput(f"limit must be between 1 and {maximum}")
    return value
