"""The page frame: top navigation with the brand and a content area."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

NAV_ITEMS: list[tuple[str, str]] = [
    ("Overview", "/"),
    ("Executions", "/executions"),
    ("Events", "/events"),
    ("Dead letters", "/dlq"),
    ("Workflows", "/workflows"),
]


def app_shell(page_container: Any, nav_items: list[tuple[str, str]] | None = None) -> html.Div:
    """Top nav (brand plus one link per (label, href)) above the page content."""
    links = [
        dcc.Link(label, href=href, className="fl-nav__link", id=f"nav-{_slug(label)}")
        for label, href in (nav_items if nav_items is not None else NAV_ITEMS)
    ]
    brand = dcc.Link(
        [html.Span("◧", className="fl-brand__mark"), html.Span("Flowledger", className="fl-brand__name")],
        href="/",
        className="fl-brand",
    )
    # Who is signed in, filled in the browser from /api/v1/me (app/dashboard.py), with the way out.
    user = html.Div([html.Span(id="nav-user-name", className="fl-nav__user-name"),
                     html.A("Sign out", href="/logout", id="nav-signout", className="fl-nav__link", hidden=True)],
                    className="fl-nav__user", id="nav-user")
    header = html.Header(
        html.Nav([brand, html.Div(links, className="fl-nav__links"), user], className="fl-nav"), className="fl-header"
    )
    return html.Div([header, html.Main(page_container, className="fl-content")], className="fl-shell")


def _slug(label: str) -> str:
    """A stable id fragment from a nav label: 'Dead letters' -> 'dead-letters'."""
    return "-".join(label.lower().split())
