"""Not found: an address no page answers, with the ways back in (dash pages uses a module of this name for 404)."""
from __future__ import annotations

import dash
from dash import dcc, html

from components.cards import empty_state

dash.register_page(__name__, path="/404", title="Not found · Flowledger", name="Not found")


def layout(**_query) -> html.Div:
    return html.Div([
        empty_state("Page not found", "No page answers at this address. Failed runs are on the Overview and "
                    "Executions pages; an execution or event is opened from there, or as /executions/<id> and "
                    "/events/<id>."),
        html.Div([dcc.Link("Overview", href="/", className="fl-button"),
                  dcc.Link("Executions", href="/executions", className="fl-button"),
                  dcc.Link("Dead letters", href="/dlq", className="fl-button")], className="fl-toolbar"),
    ], id="not-found-page")
