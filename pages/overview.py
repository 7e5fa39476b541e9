"""Overview: failure metrics for the chosen period."""
import dash
from dash import html

dash.register_page(__name__, path="/", title="Overview · Flowledger", name="Overview")


def layout(**_query) -> html.Div:
    return html.Div([html.H1("Overview")], id="overview-page")
