"""W3C Trace Context ids: 16-byte trace ids, 8-byte span ids, traceparent parsing."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceParent:
    """The caller's trace to continue: its trace id and the span we become a child of."""

    trace_id: str
    span_id: str


def new_trace_id() -> str:
    """A random, non-zero 32-hex-char trace id."""
    while True:
        value = secrets.token_hex(16)
        if value != "0" * 32:
            return value


def new_span_id() -> str:
    """A random, non-zero 16-hex-char span id."""
    while True:
        value = secrets.token_hex(8)
        if value != "0" * 16:
            return value


def parse_traceparent(header: str | None) -> TraceParent | None:
    """The trace to continue from a traceparent header, or None when absent or malformed."""
    if not header:
        return None
    match = TRACEPARENT.match(header.strip().lower())
    if not match or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return TraceParent(trace_id=match.group(1), span_id=match.group(2))


def traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str:
    """Format a traceparent header value."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
