"""Figure builders for the overview and workflow pages: data frames in, go.Figure out."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from components import theme
from components.format import threshold_percent, truncate
from components.replay import replay_comparison, replay_diff
from components.timeline import execution_timeline, timeline_window

__all__ = [
    "execution_timeline",
    "timeline_window",
    "failure_rate_hourly",
    "failure_rate_daily",
    "top_failures",
    "status_counts",
    "replay_comparison",
    "replay_diff",
]

LABEL_CHARS = 30
_RATE_HOVER = ("%{x|%Y-%m-%d %H:%M}<br>rate %{y:.1%}<br>%{customdata[1]} failed of %{customdata[0]} finished"
               "<extra></extra>")


def failure_rate_hourly(rates: pd.DataFrame, *, threshold: float = 0.05, min_runs: int | None = None) -> go.Figure:
    """Hourly failure rate as bars, a dashed alert line at `threshold` and red markers where it was crossed.

    A `crossed` column (metrics.failure_rate_hourly: above the line with enough runs to page) decides
    which hours are red; without one, every hour above the line is. When a grey bar stands above the
    line (too few runs to page: one failure of one run is 100%), the title says why it is not red."""
    if rates.empty:
        return theme.empty_figure("No executions in this period")
    frame = rates.sort_values("hour")
    custom = frame[["executions", "failed"]].to_numpy()
    above = frame["crossed"].astype(bool) if "crossed" in frame.columns else frame["rate"] > threshold
    fig = theme.new_figure()
    fig.add_trace(
        go.Bar(
            name="failure rate",
            x=frame["hour"],
            y=frame["rate"],
            customdata=custom,
            marker={"color": [theme.RED if flag else theme.GREY for flag in above]},
            hovertemplate=_RATE_HOVER,
        )
    )
    crossed = frame[above]
    fig.add_trace(
        go.Scatter(
            name=f"above {threshold_percent(threshold)}",
            x=crossed["hour"],
            y=crossed["rate"],
            mode="markers",
            customdata=custom[above.to_numpy()],
            marker={"color": theme.RED, "size": 9, "symbol": "circle"},
            hovertemplate=_RATE_HOVER,
        )
    )
    fig.add_hline(
        y=threshold,
        line={"dash": "dash", "color": theme.RED, "width": 1.5},
        name="threshold",
        annotation={"text": f"{threshold_percent(threshold)} alert", "font": {"color": theme.RED, "size": 11}},
        annotation_position="top left",
    )
    top = max(float(frame["rate"].max()), threshold) * 1.15
    title = "Failure rate per hour"
    if min_runs and bool(((frame["rate"] > threshold) & ~above).any()):
        title += (f"<br><sup>grey bars above the line: fewer than {min_runs} finished runs that hour, "
                  "so no alert</sup>")
    fig.update_layout(
        title=title,
        showlegend=False,
        bargap=0.1,
        height=300,
        yaxis={"tickformat": ".0%", "range": [0, top], "title": None},
        xaxis={"title": None},
    )
    return fig


DAY_MS = 86_400_000  # a day in milliseconds: plotly's period for date axes


def failure_rate_daily(rates: pd.DataFrame) -> go.Figure:
    """Daily failure rate as a trend line, with executions per day as light bars behind it.

    The bars take the primary axis and the line the overlaying one, because plotly draws an overlaying axis's
    traces on top: the other way round the day's bar hid the line. Both sit in the middle of their day.
    """
    if rates.empty:
        return theme.empty_figure("No executions in this period")
    frame = rates.sort_values("day")
    custom = frame[["executions", "failed"]].to_numpy()
    in_the_day = {"xperiod": DAY_MS, "xperiodalignment": "middle"}
    fig = theme.new_figure()
    fig.add_trace(
        go.Bar(
            name="executions",
            x=frame["day"],
            y=frame["executions"],
            marker={"color": theme.GRID},
            hovertemplate="%{x|%Y-%m-%d}<br>%{y} executions finished<extra></extra>",
            **in_the_day,
        )
    )
    fig.add_trace(
        go.Scatter(
            name="failure rate",
            x=frame["day"],
            y=frame["rate"],
            yaxis="y2",
            mode="lines+markers",
            customdata=custom,
            line={"color": theme.RED, "width": 2},
            marker={"size": 5},
            hovertemplate=_RATE_HOVER.replace("%Y-%m-%d %H:%M", "%Y-%m-%d"),
            **in_the_day,
        )
    )
    fig.update_layout(
        title="Failure rate per day",
        height=300,
        showlegend=False,
        yaxis={"side": "right", "showgrid": False, "rangemode": "tozero", "title": None, "tickformat": ",d",
               "tick0": 0, "dtick": count_step(int(frame["executions"].max()))},
        # whole 1/2/5 percent steps: left to itself the overlaying axis ticked 0%, 9%, 18%, 27%
        yaxis2={"overlaying": "y", "side": "left", "tickformat": ".0%", "rangemode": "tozero", "title": None,
                "showgrid": True, "tick0": 0, "dtick": count_step(math.ceil(frame["rate"].max() * 100)) / 100},
    )
    return fig


def count_step(maximum: int, ticks: int = 4) -> int:
    """A whole 1, 2 or 5 x 10^n tick step that splits 0..maximum into about `ticks` parts."""
    rough = max(maximum / ticks, 1)
    power = 10 ** (len(str(int(rough))) - 1)
    return next(step * power for step in (1, 2, 5, 10) if step * power >= rough)


def top_failures(df: pd.DataFrame, *, label: str, title: str, limit: int = 10) -> go.Figure:
    """Horizontal bars of failure counts per `label` value, largest at the top, top `limit` only."""
    if df.empty:
        return theme.empty_figure("No failures in this period")
    frame = df.sort_values(["failures", label], ascending=[False, True], kind="stable").head(limit)
    names = frame[label].astype(str).tolist()
    fig = theme.new_figure()
    fig.add_trace(
        go.Bar(
            orientation="h",
            x=frame["failures"],
            y=names,
            marker={"color": theme.RED},
            text=frame["failures"],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}<br>%{x} failures<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=60 + 26 * len(frame),
        showlegend=False,
        margin={"r": 40},
        yaxis={
            "autorange": "reversed",
            "tickmode": "array",
            "tickvals": names,
            # The overview shows these three abreast: longer labels were clipped at the panel's left edge.
            "ticktext": [truncate(name, LABEL_CHARS) for name in names],
            "title": None,
        },
        xaxis={"title": None, "rangemode": "tozero"},
    )
    return fig


def status_counts(df: pd.DataFrame) -> go.Figure:
    """Donut of execution counts per status (columns `status`, `count`), in status colours."""
    if df.empty or df["count"].sum() == 0:
        return theme.empty_figure("No executions in this period")
    frame = df.sort_values("count", ascending=False)
    fig = theme.new_figure()
    fig.add_trace(
        go.Pie(
            labels=frame["status"],
            values=frame["count"],
            hole=0.6,
            sort=False,
            # timed out is a failure (red everywhere) but its own slice here: the darker red tells the two apart
            marker={"colors": [theme.RED_DARK if status == "timed_out" else theme.status_color(status)
                               for status in frame["status"]]},
            textinfo="percent",
            textposition="inside",
            hovertemplate="%{label}: %{value} (%{percent})<extra></extra>",
        )
    )
    # Slices too thin for their percentage show it on hover only, instead of over the title.
    fig.update_layout(title="Executions by status", height=280, legend={"orientation": "v", "x": 1, "y": 0.5},
                      uniformtext={"minsize": 10, "mode": "hide"})
    return fig
