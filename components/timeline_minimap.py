"""Minimap of a whole execution: runs of steps as coloured blocks, the window drawn on the timeline shaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components import theme

MINIMAP_HEIGHT = 96
# What the minimap graph holds before (or instead of, for short executions) the real one: nothing to draw, but a
# hidden window shape, so a pager click that lands before the real minimap patches something that exists.
PLACEHOLDER = {"data": [], "layout": {"height": MINIMAP_HEIGHT, "xaxis": {"visible": False, "automargin": False},
                                      "yaxis": {"visible": False, "automargin": False},
                                      "shapes": [{"type": "rect", "visible": False, "x0": 0, "x1": 0, "y0": 0,
                                                  "y1": 0}]}}
WINDOW_FILL = "rgba(59, 130, 246, 0.18)"
# bucket colour: the worst thing in the run of steps wins, in this order
MINIMAP_COLOURS = (("failed", theme.RED), ("retried", theme.AMBER))


def execution_minimap(buckets: pd.DataFrame, *, offset: int, size: int, total: int) -> go.Figure:
    """One block per run of steps (columns first, last, steps, failed, retried, inactive); the window shaded.

    Blocks sit on a step-position axis, centred on their middle step, so a click's x is a window offset.
    """
    if buckets.empty or total <= 0:
        return theme.empty_figure("No steps recorded", height=MINIMAP_HEIGHT)
    first, last = buckets["first"].astype(int), buckets["last"].astype(int)
    blocks = {
        "type": "bar",
        "x": (first + last) / 2,
        "y": np.ones(len(buckets)),
        "width": (last - first + 1).astype(float),
        "marker": {"color": _colours(buckets), "line": {"width": 0}},
        "hovertext": [_hover(row) for row in buckets.itertuples()],
        "hovertemplate": "%{hovertext}<extra></extra>",
        "name": "steps",
        "showlegend": False,
    }
    end = min(offset + size, total)
    window = {"type": "rect", "xref": "x", "yref": "paper", "x0": offset - 0.5, "x1": end - 0.5, "y0": 0, "y1": 1,
              "fillcolor": WINDOW_FILL, "line": {"color": theme.BLUE, "width": 2}, "layer": "above", "name": "window"}
    # one validated construction instead of add_trace/add_shape/update_layout, each of which re-walks the figure
    return go.Figure(data=[blocks], layout=dict(
        template=theme.register_template(),
        shapes=[window],
        height=MINIMAP_HEIGHT,
        margin={"t": 8, "b": 28, "l": 12, "r": 24},
        bargap=0,
        showlegend=False,
        # both axes fixed: a drag zooms nothing, so a press is a click that moves the window
        hovermode="closest",
        # fixed margins: automargin would measure the ticks and lay the figure out a second time
        xaxis={"range": [-0.5, total - 0.5], "fixedrange": True, "title": None, "tickformat": ",d",
               "tickfont": {"size": 10}, "automargin": False},
        yaxis={"visible": False, "fixedrange": True, "range": [0, 1], "automargin": False},
    ))


def _colours(buckets: pd.DataFrame) -> list[str]:
    """Red when any step failed, amber when any was retried, grey when every step was skipped, else green."""
    colours = np.where(buckets["inactive"] >= buckets["steps"], theme.GREY, theme.GREEN).astype(object)
    for column, colour in reversed(MINIMAP_COLOURS):
        colours = np.where(buckets[column] > 0, colour, colours)
    return list(colours)


def _hover(row) -> str:
    """steps 1,201–1,250 · 1 failed · 3 retried (positions shown 1-based, as the pager does)."""
    parts = [f"steps {row.first + 1:,}–{row.last + 1:,}"]
    parts += [f"{count:,} {what}" for what, count in (("failed", row.failed), ("retried", row.retried),
                                                        ("skipped/cancelled", row.inactive)) if count]
    return " · ".join(parts) + "<br>click to show these steps"


def clicked_offset(click: dict | None, *, total: int, size: int) -> int | None:
    """The window offset that centres the clicked block (its x is its middle step), or None for no block."""
    try:
        middle = int(float(click["points"][0]["x"]))
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return min(max(middle - size // 2, 0), max(total - size, 0))
