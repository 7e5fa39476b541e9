"""One visual theme for every figure and status colour in the dashboard."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

FONT_FAMILY = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif'
MONO_FAMILY = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace'

GREEN = "#2e9e5b"
AMBER = "#e0a100"
RED = "#d64545"
GREY = "#9aa3ad"
BLUE = "#3b82f6"
WAIT = "#cfd8e3"
INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"
GREEN_DARK = "#1a6b3c"
AMBER_DARK = "#8a6200"
RED_DARK = "#8f2424"
BLUE_DARK = "#1d4ed8"

STATUS_COLORS: dict[str, str] = {
    "completed": GREEN,
    "succeeded": GREEN,
    "success": GREEN,
    "failed": RED,
    "timed_out": RED,
    "dead_lettered": RED,
    "skipped": GREY,
    "cancelled": GREY,
    "running": BLUE,
    "pending": BLUE,
    "received": BLUE,
    "retrying": AMBER,
}
FAILED_STATUSES = frozenset({"failed", "timed_out"})
INACTIVE_STATUSES = frozenset({"skipped", "cancelled"})

TEMPLATE_NAME = "flowledger"


def status_color(status: str | None) -> str:
    """Colour for a status name; unknown statuses are grey."""
    return STATUS_COLORS.get((status or "").lower(), GREY)


def _template() -> go.layout.Template:
    axis = {"gridcolor": GRID, "linecolor": GRID, "zerolinecolor": GRID, "automargin": True}
    return go.layout.Template(
        layout={
            "font": {"family": FONT_FAMILY, "size": 12, "color": INK},
            "title": {"font": {"size": 14, "color": INK}, "x": 0, "xanchor": "left"},
            "paper_bgcolor": "#ffffff",
            "plot_bgcolor": "#ffffff",
            "colorway": [BLUE, GREEN, AMBER, RED, GREY, "#7c3aed", "#0d9488"],
            "margin": {"l": 12, "r": 16, "t": 40, "b": 32},
            "xaxis": axis,
            "yaxis": axis,
            "hoverlabel": {"font": {"family": FONT_FAMILY, "size": 12}, "bgcolor": "#ffffff"},
            "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
            "bargap": 0.25,
        }
    )


def register_template() -> str:
    """Register the Flowledger plotly template (idempotent) and return its name."""
    if TEMPLATE_NAME not in pio.templates:
        pio.templates[TEMPLATE_NAME] = _template()
    return TEMPLATE_NAME


def new_figure() -> go.Figure:
    """An empty figure carrying the Flowledger template."""
    return go.Figure(layout={"template": register_template()})


def empty_figure(message: str, *, height: int = 240) -> go.Figure:
    """A figure with no data and one centred message, for empty inputs."""
    fig = new_figure()
    fig.add_annotation(
        text=message,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 14, "color": MUTED},
    )
    fig.update_layout(height=height, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


register_template()
