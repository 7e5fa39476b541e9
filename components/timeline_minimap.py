"""Minimap of a whole execution: runs of steps as coloured blocks, the window drawn on the timeline shaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components import theme

MINIMAP_HEIGHT = 96
# What the minimap graph holds before (or instead of, for short executions) the real one: nothing to draw.
PLACEHOLDER = {"data": [], "layout": {"height": MINIMAP_HEIGHT, "xaxis": {"visible": False},
                                      "yaxis": {"visible": False}}}
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
    fig = theme.new_figure()
    fig.add_trace(go.Bar(
        x=(first + last) / 2,
        y=np.ones(len(buckets)),
        width=(last - first + 1).astype(float),
        marker={"color": _colours(buckets), "line": {"width": 0}},
        hovertext=[_hover(row) for row in buckets.itertuples()],
        hovertemplate="%{hovertext}<extra></extra>",
        name="steps",
        showlegend=False,
    ))
    end = min(offset + size, total)
    fig.add_shape(type="rect", xref="x", yref="paper", x0=offset - 0.5, x1=end - 0.5, y0=0, y1=1,
                  fillcolor=WINDOW_FILL, line={"color": theme.BLUE, "width": 2}, layer="above", name="window")
    fig.update_layout(
        height=MINIMAP_HEIGHT,
        margin={"t": 8, "b": 28, "l": 12, "r": 24},
        bargap=0,
        showlegend=False,
        # both axes fixed: a drag zooms nothing, so a press is a click that moves the window
        hovermode="closest",
        xaxis={"range": [-0.5, total - 0.5], "fixedrange": True, "title": None, "tickformat": ",d",
               "tickfont": {"size": 10}},
        yaxis={"visible": False, "fixedrange": True, "range": [0, 1]},
    )
    return fig


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
