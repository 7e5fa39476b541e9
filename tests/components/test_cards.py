"""Cards, badges, empty and error states, JSON blocks."""

from __future__ import annotations

import json

import pytest
from dash import dcc, html

from components.cards import empty_state, error_state, highlighted, json_block, kpi_card, status_badge


def texts(component) -> list[str]:
    """Every string inside a component tree."""
    if isinstance(component, str):
        return [component]
    children = getattr(component, "children", None)
    if children is None:
        return []
    items = children if isinstance(children, list | tuple) else [children]
    return [text for child in items for text in texts(child)]


def find(component, kind) -> list:
    """Every component of a type inside a tree."""
    found = [component] if isinstance(component, kind) else []
    children = getattr(component, "children", None)
    items = children if isinstance(children, list | tuple) else [children] if children is not None else []
    return found + [hit for child in items for hit in find(child, kind)]


def test_kpi_card_shows_title_value_subtitle_and_tone():
    card = kpi_card("Success rate", "97.2%", subtitle="last 24 h", tone="good", id="overview-success")
    assert texts(card) == ["Success rate", "97.2%", "last 24 h"]
    assert "fl-kpi--good" in card.className and card.id == "overview-success"


def test_kpi_card_rejects_an_unknown_tone():
    with pytest.raises(ValueError):
        kpi_card("x", "1", tone="purple")


@pytest.mark.parametrize(
    ("status", "tone"),
    [("completed", "good"), ("failed", "bad"), ("timed_out", "bad"), ("skipped", "muted"), ("running", "info")],
)
def test_status_badge_is_coloured_by_status(status, tone):
    badge = status_badge(status)
    assert isinstance(badge, html.Span)
    assert f"fl-badge--{tone}" in badge.className
    assert badge.children == status.replace("_", " ")


def test_empty_state_offers_a_copyable_command():
    curl = "curl -X POST localhost:8050/api/events -d '{}'"
    state = empty_state("No events yet", "Send one:", code=curl)
    [clipboard] = find(state, dcc.Clipboard)
    assert clipboard.content == curl
    assert curl in texts(state)


def test_error_state_is_an_alert_carrying_the_message():
    state = error_state("database timed out")
    assert state.role == "alert" and "database timed out" in texts(state)


def test_json_block_pretty_prints_small_payloads_in_a_pre():
    block = json_block('{"customer": {"id": "C-123"}}')
    [pre] = find(block, html.Pre)
    assert pre.children == json.dumps({"customer": {"id": "C-123"}}, indent=2)
    assert not find(block, html.Details)


def test_json_block_collapses_large_payloads_behind_a_size_summary():
    block = json_block({"rows": list(range(10_000))}, collapsed_over_bytes=1000, id="step-output")
    [details] = find(block, html.Details)
    assert details.open is False
    [summary] = find(block, html.Summary)
    assert summary.children.startswith("Large payload") and "1 keys" in summary.children
    assert block.id == "step-output"


def test_json_block_shows_text_that_is_not_json_as_it_is():
    [pre] = find(json_block(b"not json {"), html.Pre)
    assert pre.children == "not json {"


def test_json_block_says_when_there_is_no_payload():
    assert texts(json_block(None)) == ["no payload"]


def test_a_search_snippet_shows_its_text_unescaped_with_only_the_matches_marked():
    parts = highlighted("…&lt;b&gt;x&lt;/b&gt; pay.<mark>example.com</mark>: 503 &amp; <mark>EXAMPLE.COM</mark>")
    assert parts[0] == "…<b>x</b> pay." and parts[2] == ": 503 & "
    marks = [p for p in parts if isinstance(p, html.Mark)]
    assert [m.children for m in marks] == ["example.com", "EXAMPLE.COM"]
    assert highlighted("") == [] and highlighted("no match here") == ["no match here"]
