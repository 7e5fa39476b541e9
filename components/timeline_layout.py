"""The timeline's layout: fixed row heights and margins, tick labels sized on the server."""

from __future__ import annotations

import unicodedata

from components import theme

_MARGIN_PX = 150
TICK_FONT_PX = 11
_TICK_GAP_PX = 14


def label_width(label: str) -> int:
    """Pixels a tick label needs at TICK_FONT_PX, estimated per character (erring wide), no browser needed.

    Estimated on the server because plotly's automargin measures every tick label, then lays the whole figure out
    again: three times the drawing cost of a 150-row window.
    """
    return round(sum(_char_em(ch) for ch in label) * TICK_FONT_PX)


def _char_em(ch: str) -> float:
    """Width of one character in ems of a proportional sans-serif, rounded up per class."""
    if ch in "mwMW@%" or unicodedata.east_asian_width(ch) in ("W", "F"):
        return 1.05
    if ch in " .,:;'|!ijlItf·-()[]{}/":
        return 0.35
    return 0.75 if ch.isupper() else 0.6


def figure_layout(labels: list[str], height_per_row: int) -> dict:
    """Fixed row height so the figure grows with steps; every row keeps its tick label.

    No rangeslider: it redraws every bar a second time in the SVG, which was half the drawing cost of a large
    window. Time zoom is the drag box, the scroll wheel and double-click to reset; the execution-wide overview
    is timeline_minimap's separate small figure. Margins are fixed (no automargin), the left one wide enough
    for the longest row label.
    """
    plot_height = max(len(labels) * height_per_row, 2 * height_per_row)
    left = max((label_width(label) for label in labels), default=0) + _TICK_GAP_PX
    return dict(
        template=theme.register_template(),
        height=plot_height + _MARGIN_PX,
        barmode="overlay",
        showlegend=True,
        hovermode="closest",
        margin={"t": 110, "b": 40, "l": left, "r": 24},
        legend={"y": 1, "yref": "container", "yanchor": "top", "x": 0, "xanchor": "left"},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": labels,
            "tickmode": "array",
            "tickvals": labels,
            "ticktext": labels,
            "autorange": "reversed",
            "tickfont": {"size": TICK_FONT_PX},
            "showgrid": False,
            "fixedrange": True,
            "automargin": False,
        },
        xaxis={
            "type": "date",
            "side": "top",
            "title": {"text": "time (UTC)", "font": {"size": 11}, "standoff": 6},
            "automargin": False,
        },
    )
