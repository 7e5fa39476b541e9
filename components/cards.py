"""Small building blocks: KPI cards, status badges, empty/error states and JSON blocks."""

from __future__ import annotations

import json
from typing import Any

from dash import dcc, html

from components.format import format_bytes, snippet_parts

TONES = ("neutral", "good", "warn", "bad")
_STATUS_TONES = {
    "completed": "good",
    "succeeded": "good",
    "success": "good",
    "processed": "good",
    "failed": "bad",
    "timed_out": "bad",
    "dead_lettered": "bad",
    "error": "bad",
    "retrying": "warn",
    "running": "info",
    "pending": "info",
    "received": "info",
    "queued": "info",
    "skipped": "muted",
    "cancelled": "muted",
}


def _with_id(id: str | dict | None) -> dict[str, Any]:
    """Keyword arguments carrying an id only when one was given."""
    return {} if id is None else {"id": id}


def kpi_card(
    title: str, value: str, *, subtitle: str | None = None, tone: str = "neutral", id: str | dict | None = None
) -> html.Div:
    """A headline number with its title and an optional subtitle; tone is neutral, good, warn or bad."""
    if tone not in TONES:
        raise ValueError(f"tone must be one of {TONES}, not {tone!r}")
    children = [html.Div(title, className="fl-kpi__title"), html.Div(value, className="fl-kpi__value")]
    if subtitle:
        children.append(html.Div(subtitle, className="fl-kpi__subtitle"))
    return html.Div(children, className=f"fl-kpi fl-kpi--{tone}", **_with_id(id))


def status_badge(status: str) -> html.Span:
    """A coloured pill for an execution, step or event status."""
    key = (status or "unknown").lower()
    tone = _STATUS_TONES.get(key, "muted")
    return html.Span(key.replace("_", " "), className=f"fl-badge fl-badge--{tone}", title=key)


def empty_state(title: str, body: str, *, code: str | None = None) -> html.Div:
    """What to do when there is nothing to show, with an optional copyable code block."""
    children: list[Any] = [html.H3(title, className="fl-empty__title"), html.P(body, className="fl-empty__body")]
    if code:
        children.append(
            html.Div(
                [
                    html.Pre(html.Code(code), className="fl-code"),
                    dcc.Clipboard(content=code, title="Copy to clipboard", className="fl-code__copy"),
                ],
                className="fl-code-block",
            )
        )
    return html.Div(children, className="fl-empty")


def input_problem(message: str) -> html.Div:
    """What is wrong with what the user asked for (a filter, a period): to correct, not a failure of the product."""
    return html.Div([html.Strong("Check the input: "), html.Span(message)], className="fl-banner fl-banner--warn",
                    role="alert")


def error_state(message: str) -> html.Div:
    """An inline error box that replaces one panel, never the whole page."""
    return html.Div([html.Strong("Something went wrong. "), html.Span(message)], className="fl-error", role="alert")


def _parse(value: Any) -> tuple[Any, bool]:
    """The value with JSON strings and bytes decoded, and whether it is JSON-shaped at all."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            return json.loads(value), True
        except ValueError:
            return value, False
    return value, True


def json_text(value: Any) -> str:
    """Pretty JSON for a value; strings and bytes holding JSON are parsed first, other text shown as is."""
    return _render(*_parse(value))


def _render(parsed: Any, is_json: bool) -> str:
    """Indented JSON, or the text itself when it was not JSON."""
    return json.dumps(parsed, indent=2, ensure_ascii=False, default=str) if is_json else parsed


def json_block(value: Any, *, collapsed_over_bytes: int = 20000, id: str | dict | None = None) -> html.Div:
    """Pretty JSON in a Pre; payloads over `collapsed_over_bytes` start collapsed behind a size summary."""
    if value is None:
        return html.Div(html.Span("no payload", className="fl-muted"), className="fl-json", **_with_id(id))
    parsed, is_json = _parse(value)
    text = _render(parsed, is_json)
    size = len(text.encode("utf-8"))
    pre = html.Pre(text, className="fl-json__pre")
    if size <= collapsed_over_bytes:
        return html.Div(pre, className="fl-json", **_with_id(id))
    summary = html.Summary(f"Large payload · {format_bytes(size)} · {_shape(parsed, is_json)} — show")
    return html.Div(html.Details([summary, pre], open=False), className="fl-json fl-json--large", **_with_id(id))


def _shape(value: Any, is_json: bool) -> str:
    """A few words on what a JSON value holds: '12 keys', '3,400 items', 'text'."""
    if not is_json:
        return "text"
    if isinstance(value, dict):
        return f"{len(value):,} keys"
    if isinstance(value, list):
        return f"{len(value):,} items"
    return type(value).__name__


def highlighted(snippet: str) -> list[Any]:
    """A search snippet (HTML-escaped text with <mark> around the matches, as the search API sends it) as
    components: the text unescaped, each match an html.Mark. No other markup is ever interpreted."""
    return [html.Mark(text) if match else text for text, match in snippet_parts(snippet)]
