"""The timeline's annotations: each failing row's error at the end of its bar, the slowest step, captions."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from components import theme
from components.format import format_duration, truncate

ERROR_TEXT_LIMIT = 80


def annotations(frame: pd.DataFrame, limit: int, *, slowest: str | None) -> list[dict]:
    """Inline error text at the end of each failing row (capped), the slowest marker and a legend note."""
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
