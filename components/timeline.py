"""Gantt timeline of one execution: one row per step, one bar segment per attempt."""

from __future__ import annotations

import html
import textwrap
import unicodedata
from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components import theme
from components.format import format_duration, truncate

TIMELINE_COLUMNS = (
    "step_id",
    "seq",
    "step_name",
    "step_type",
    "attempt",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "error_message",
)
# A completed step is only "slow" when it is well past its usual p95; at 1.0x a twentieth of
# normal runs would light up amber by definition, so the bar turns amber from 1.5x p95.
SLOW_FACTOR = 1.5
MAX_ERROR_ANNOTATIONS = 50
ERROR_TEXT_LIMIT = 80
LABEL_LIMIT = 40
CRITICAL_LINE_WIDTH = 2.5
_MARGIN_PX = 150
TICK_FONT_PX = 11
_TICK_GAP_PX = 14

OFF_PATH_OPACITY = 0.6
# category -> (legend name, fill, text colour, critical-path outline: a darker shade of the fill)
CATEGORIES: dict[str, tuple[str, str, str, str]] = {
    "ok": ("Completed first attempt", theme.GREEN, "#ffffff", theme.GREEN_DARK),
    "warn": ("Retried or slow", theme.AMBER, theme.INK, theme.AMBER_DARK),
    "failed": ("Failed / timed out", theme.RED, "#ffffff", theme.RED_DARK),
    "inactive": ("Skipped / cancelled", theme.GREY, theme.INK, theme.INK),
    "running": ("Running", theme.BLUE, "#ffffff", theme.BLUE_DARK),
    "waiting": ("Waiting", theme.WAIT, theme.INK, theme.MUTED),
}
BACKOFF_NAME = "Backoff / wait before attempt"


def timeline_window(steps: pd.DataFrame, *, start: int, size: int) -> pd.DataFrame:
    """Rows of the steps at positions [start, start + size) in `seq` order, all attempts kept."""
    if steps.empty or size <= 0:
        return steps.iloc[0:0].copy()
    seqs = np.sort(steps["seq"].unique())
    chosen = seqs[max(start, 0) : max(start, 0) + size]
    window = steps[steps["seq"].isin(chosen)]
    return window.sort_values(["seq", "attempt"], kind="stable").reset_index(drop=True)


def execution_timeline(
    steps: pd.DataFrame,
    *,
    p95_by_step: Mapping[str, float] | None = None,
    height_per_row: int = 28,
    now: datetime | None = None,
    max_annotations: int = MAX_ERROR_ANNOTATIONS,
) -> go.Figure:
    """Gantt of one execution's step attempts on a shared time axis (UTC)."""
    if steps.empty:
        return theme.empty_figure("No steps recorded")
    frame = _prepare(steps, now)
    frame["category"] = _categories(frame, p95_by_step or {})
    frame["critical"] = frame.index.isin(_critical_path(frame))
    labels = list(dict.fromkeys(frame.sort_values(["seq", "attempt"])["label"]))
    traces = [_backoff_trace(frame)]
    traces += [_bar_trace(frame[frame["category"] == category], category) for category in CATEGORIES]
    layout = _layout(labels, height_per_row)
    layout["annotations"] = _annotations(frame, max_annotations)
    # Built as plain dicts and validated once here: add_trace/add_annotation/update_layout on a growing figure
    # re-walk it on every call, which was most of the server's time for a 150-row window.
    return go.Figure(data=[t for t in traces if t is not None], layout=layout)


def _prepare(steps: pd.DataFrame, now: datetime | None) -> pd.DataFrame:
    """Normalise times to naive UTC, fill durations and compute bar geometry."""
    frame = steps.reset_index(drop=True).copy()
    start = _utc(frame["started_at"])
    done = _utc(frame["completed_at"]) if "completed_at" in frame else pd.Series(pd.NaT, index=frame.index)
    latest = _utc(pd.Series([now])).iloc[0] if now is not None else pd.concat([start, done]).max()
    measured = (done - start).dt.total_seconds() * 1000
    until_now = (latest - start).dt.total_seconds().clip(lower=0) * 1000
    duration = _numeric(frame, "duration_ms")
    frame["duration"] = duration.fillna(measured).fillna(until_now).fillna(0.0).astype(float)
    frame["start"] = start
    frame["end"] = start + pd.to_timedelta(frame["duration"], unit="ms")
    frame["wait"] = _numeric(frame, "wait_ms").fillna(0.0)
    frame["status"] = frame["status"].fillna("").astype(str).str.lower()
    frame["attempt"] = frame["attempt"].fillna(1).astype(int)
    if "error_message" not in frame:
        frame["error_message"] = None
    if "step_type" not in frame:
        frame["step_type"] = "action"
    frame["label"] = [
        f"{seq} · {truncate(name, LABEL_LIMIT)}" for seq, name in zip(frame["seq"], frame["step_name"], strict=True)
    ]
    frame["attempts"] = frame.groupby("step_id")["attempt"].transform("max")
    return frame


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column as floats, all NaN when the column is absent."""
    if column not in frame:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _utc(values: pd.Series) -> pd.Series:
    """Datetimes as naive UTC, because plotly date axes ignore offsets."""
    parsed = pd.to_datetime(values, utc=True, errors="coerce")
    return parsed.dt.tz_localize(None)


def _categories(frame: pd.DataFrame, p95_by_step: Mapping[str, float]) -> np.ndarray:
    """Colour category of each attempt; the first matching rule wins."""
    status = frame["status"]
    p95 = frame["step_name"].map(lambda name: p95_by_step.get(name, np.nan)).astype(float)
    slow = frame["duration"] > p95 * SLOW_FACTOR
    completed = status.isin(["completed", "succeeded", "success"])
    conditions = [
        status.isin(theme.FAILED_STATUSES),
        status.isin(theme.INACTIVE_STATUSES),
        status.isin(["running", "pending"]),
        completed & (frame["step_type"] == "wait"),
        completed & ((frame["attempt"] > 1) | slow),
        completed,
    ]
    choices = ["failed", "inactive", "running", "waiting", "warn", "ok"]
    return np.select(conditions, choices, default="inactive")


def _critical_path(frame: pd.DataFrame) -> list[int]:
    """Index labels of the final attempts on the chain of steps that determined the end time."""
    finals = frame.loc[frame.groupby("step_id")["attempt"].idxmax()]
    finals = finals[~finals["status"].isin(theme.INACTIVE_STATUSES)]
    if finals.empty:
        return []
    first_start = (frame["start"] - pd.to_timedelta(frame["wait"], unit="ms")).groupby(frame["step_id"]).min()
    finals = finals.assign(ready=finals["step_id"].map(first_start)).sort_values("end", kind="stable")
    ends, ready = finals["end"].to_numpy(), finals["ready"].to_numpy()
    current, seen = len(finals) - 1, set()
    while current >= 0 and current not in seen:
        seen.add(current)
        # the predecessor is whichever step finished last before this one could start
        candidate = int(np.searchsorted(ends, ready[current], side="right")) - 1
        current = candidate if candidate != current else candidate - 1
    return list(finals.index[sorted(seen)])


def _slowest_step(frame: pd.DataFrame) -> str | None:
    """step_id with the most active time among two or more; waits and skips are intentional, not bottlenecks."""
    active = frame[(frame["step_type"] != "wait") & ~frame["status"].isin(theme.INACTIVE_STATUSES)]
    if active["step_id"].nunique() < 2 or active["duration"].sum() <= 0:
        return None
    return active.groupby("step_id", sort=False)["duration"].sum().idxmax()


def _hover(part: pd.DataFrame) -> np.ndarray:
    """customdata: step_id, attempt, status, start, end, duration, error html, step name."""
    errors = [
        ""
        if not isinstance(text, str) or not text
        else "<br>error: " + "<br>".join(textwrap.wrap(html.escape(text), 100) or [""])
        for text in part["error_message"]
    ]
    return np.column_stack(
        [
            part["step_id"].astype(str),
            part["attempt"],
            part["status"],
            part["start"].dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3],
            part["end"].dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3],
            [format_duration(ms) for ms in part["duration"]],
            errors,
            [html.escape(str(name)) for name in part["step_name"]],
        ]
    )


_HOVER = (
    "<b>%{customdata[7]}</b> · attempt #%{customdata[1]} · %{customdata[2]}<br>"
    "start %{customdata[3]}<br>end %{customdata[4]}<br>duration %{customdata[5]}"
    "%{customdata[6]}<extra></extra>"
)


def _bar_trace(part: pd.DataFrame, category: str) -> dict | None:
    """One horizontal bar per attempt of the given colour category (None when the category has none)."""
    if part.empty:
        return None
    name, fill, ink, outline = CATEGORIES[category]
    retried = part["attempts"] > 1
    # attempt numbers only on traces that have retries: plotly lays out in-bar text for every bar that has any
    labels = {"text": np.where(retried, "#" + part["attempt"].astype(str), ""), "textposition": "inside",
              "insidetextanchor": "middle", "textfont": {"color": ink, "size": 10}} if retried.any() else {}
    return dict(
        type="bar",
        name=name,
        orientation="h",
        y=part["label"],
        base=part["start"],
        x=part["duration"],
        ids=part["step_id"].astype(str) + ":" + part["attempt"].astype(str),
        **labels,
        # off-path bars are faded so the critical path reads first even when every bar is thin
        marker={
            "color": fill,
            "opacity": np.where(part["critical"], 1.0, OFF_PATH_OPACITY),
            "line": {"color": outline, "width": np.where(part["critical"], CRITICAL_LINE_WIDTH, 0)},
        },
        customdata=_hover(part),
        hovertemplate=_HOVER,
        width=0.7,
    )


def _backoff_trace(frame: pd.DataFrame) -> dict | None:
    """Lighter segments for the backoff or wait time before each attempt."""
    part = frame[frame["wait"] > 0]
    if part.empty:
        return None
    base = part["start"] - pd.to_timedelta(part["wait"], unit="ms")
    hover = [
        f"waited {format_duration(ms)} before attempt #{n}" for ms, n in zip(part["wait"], part["attempt"], strict=True)
    ]
    return dict(
        type="bar",
        name=BACKOFF_NAME,
        orientation="h",
        y=part["label"],
        base=base,
        x=part["wait"],
        ids=part["step_id"].astype(str) + ":" + part["attempt"].astype(str) + ":wait",
        marker={"color": theme.WAIT, "pattern": {"shape": "/", "fgcolor": theme.GREY, "solidity": 0.2}},
        hovertext=hover,
        hovertemplate="%{hovertext}<extra></extra>",
        width=0.5,
    )


def _annotations(frame: pd.DataFrame, limit: int) -> list[dict]:
    """Inline error text at the end of each failing row (capped), the slowest marker and a legend note."""
    slowest = _slowest_step(frame)
    rows = _error_rows(frame).head(limit + 1)
    notes: list[dict] = []
    for row in rows.head(limit).itertuples():
        is_slowest = row.step_id == slowest
        prefix = f"slowest · {format_duration(row.total)} · " if is_slowest else ""
        name = ("slowest;" if is_slowest else "") + f"error:{row.step_id}"
        notes.append(_row_note(row, prefix + row.short, name=name, hover=row.full))
    hidden = int(frame.loc[_failing(frame), "step_id"].nunique()) - limit
    if hidden > 0:
        notes.append(_paper_note(f"{hidden} more failing steps not annotated; hover a red bar for its error"))
    if slowest is not None and slowest not in set(rows.head(limit)["step_id"]):
        row = next(_row_summary(frame[frame["step_id"] == slowest]).itertuples())
        notes.append(_row_note(row, f"◀ slowest · {format_duration(row.total)}", name="slowest"))
    if frame["critical"].any():
        notes.append(_paper_note("outlined bars: critical path", x=1, xanchor="right"))
    return notes


def _row_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per step: its row label, the end of its last segment and its total active time."""
    grouped = frame.groupby("step_id", sort=False)
    return pd.DataFrame(
        {
            "step_id": list(grouped.groups),
            "label": grouped["label"].first().to_numpy(),
            "seq": grouped["seq"].first().to_numpy(),
            "end": grouped["end"].max().to_numpy(),
            "total": grouped["duration"].sum().to_numpy(),
        }
    )


def _failing(frame: pd.DataFrame) -> pd.Series:
    """Attempts that failed or timed out and carry an error message."""
    return frame["status"].isin(theme.FAILED_STATUSES) & frame["error_message"].notna()


def _error_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Steps with an error, final failures first, each with its latest error short and in full."""
    failed = frame[_failing(frame)]
    if failed.empty:
        return pd.DataFrame(columns=["step_id", "label", "seq", "end", "total", "short", "full", "final"])
    rows = _row_summary(frame[frame["step_id"].isin(failed["step_id"])])
    latest = failed.sort_values("attempt").groupby("step_id").last()
    last_status = frame.sort_values("attempt").groupby("step_id")["status"].last()
    rows["final"] = rows["step_id"].map(last_status).isin(theme.FAILED_STATUSES)
    attempts = rows["step_id"].map(frame.groupby("step_id")["attempt"].max())
    attempt = rows["step_id"].map(latest["attempt"])
    error = rows["step_id"].map(latest["error_message"]).astype(str)
    prefix = np.where(attempts > 1, "#" + attempt.astype(str) + " ", "")
    rows["short"] = [p + truncate(text, ERROR_TEXT_LIMIT) for p, text in zip(prefix, error, strict=True)]
    rows["full"] = error
    return rows.sort_values(["final", "seq"], ascending=[False, True], kind="stable")


def _row_note(row, text: str, *, name: str, hover: str | None = None) -> dict:
    """An annotation just right of a row's last segment."""
    return dict(
        x=row.end,
        y=row.label,
        xref="x",
        yref="y",
        text=html.escape(text),
        name=name,
        hovertext=html.escape(hover) if hover else None,
        showarrow=False,
        xanchor="left",
        xshift=6,
        font={"size": 11, "color": theme.RED if "error:" in name else theme.INK},
        bgcolor="rgba(255,255,255,0.85)",
    )


def _paper_note(text: str, *, x: float = 0, xanchor: str = "left") -> dict:
    """A small caption above the plot area."""
    return dict(
        text=text,
        x=x,
        xanchor=xanchor,
        y=1,
        yref="paper",
        xref="paper",
        yanchor="bottom",
        yshift=44,
        showarrow=False,
        font={"size": 11, "color": theme.MUTED},
        name="note",
    )


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


def _layout(labels: list[str], height_per_row: int) -> dict:
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
