"""Gantt timeline of one execution: one row per step, one bar segment per attempt."""

from __future__ import annotations

import html
import textwrap
from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components import theme, timeline_layout, timeline_notes
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
LABEL_LIMIT = 40
CRITICAL_LINE_WIDTH = 2.5

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
    layout = timeline_layout.figure_layout(labels, height_per_row)
    layout["annotations"] = timeline_notes.annotations(frame, max_annotations, slowest=_slowest_step(frame))
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
