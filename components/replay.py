"""Side-by-side comparison of a replayed execution with its original, step by step."""

from __future__ import annotations

import pandas as pd
from dash import html

from components.cards import status_badge
from components.format import format_duration

DIFF_COLUMNS = [
    "seq",
    "step_name",
    "original_status",
    "original_attempts",
    "original_duration_ms",
    "replay_status",
    "replay_attempts",
    "replay_duration_ms",
    "outcome",
    "output_differs",
]
RERUN, SKIPPED, NEW = "re-run", "skipped", "new in replay"


def _final_attempts(steps: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """One row per (seq, step_name): final status and output hash, attempt count, total duration."""
    columns = [f"{prefix}_{name}" for name in ("status", "attempts", "duration_ms", "hash")]
    if steps.empty:
        index = pd.MultiIndex.from_arrays([[], []], names=["seq", "step_name"])
        return pd.DataFrame(index=index, columns=columns, dtype=object)
    ordered = steps if "output_hash" in steps else steps.assign(output_hash=None)
    grouped = ordered.sort_values(["seq", "attempt"], kind="stable").groupby(["seq", "step_name"])
    frame = pd.concat(
        [
            grouped["status"].last(),
            grouped["attempt"].max(),
            grouped["duration_ms"].sum(min_count=1),
            grouped["output_hash"].last(),
        ],
        axis=1,
    )
    frame.columns = columns
    return frame


def replay_diff(original: pd.DataFrame, replay: pd.DataFrame) -> pd.DataFrame:
    """Per step of either run: statuses, attempts, durations, outcome (re-run/skipped/new) and output_differs."""
    merged = _final_attempts(original, "original").join(_final_attempts(replay, "replay"), how="outer")
    if merged.empty:
        return pd.DataFrame(columns=DIFF_COLUMNS)
    merged = merged.reset_index()
    in_original = merged["original_status"].notna()
    replayed = merged["replay_status"].notna() & (merged["replay_status"] != "skipped")
    merged["outcome"] = [
        (RERUN if ran else SKIPPED) if was else NEW for was, ran in zip(in_original, replayed, strict=True)
    ]
    both = merged["original_hash"].notna() & merged["replay_hash"].notna()
    merged["output_differs"] = replayed & both & (merged["original_hash"] != merged["replay_hash"])
    return merged.sort_values("seq", kind="stable")[DIFF_COLUMNS].reset_index(drop=True)


def replay_comparison(original: pd.DataFrame, replay: pd.DataFrame) -> html.Div:
    """A summary line and a table: each step's original and replay status, and what the replay did."""
    diff = replay_diff(original, replay)
    if diff.empty:
        return html.Div("No steps to compare.", className="fl-muted")
    summary = (
        f"{(diff['outcome'] == RERUN).sum()} re-run · {(diff['outcome'] == SKIPPED).sum()} skipped · "
        f"{int(diff['output_differs'].sum())} with different output"
    )
    head = html.Thead(
        html.Tr(
            [
                html.Th(text)
                for text in (
                    "#",
                    "step",
                    "original",
                    "attempts",
                    "duration",
                    "replay",
                    "attempts",
                    "duration",
                    "replay did",
                )
            ]
        )
    )
    body = html.Tbody([_diff_row(row) for row in diff.itertuples()])
    return html.Div(
        [html.P(summary, className="fl-replay__summary"), html.Table([head, body], className="fl-table")],
        className="fl-replay",
    )


def _diff_row(row) -> html.Tr:
    """One table row of the replay comparison."""
    outcome = row.outcome + (" · output differs" if row.output_differs else "")
    cells = [
        row.seq,
        row.step_name,
        _badge(row.original_status),
        _count(row.original_attempts),
        _duration(row.original_duration_ms),
        _badge(row.replay_status),
        _count(row.replay_attempts),
        _duration(row.replay_duration_ms),
        outcome,
    ]
    tone = "differs" if row.output_differs else row.outcome.replace(" ", "-")
    return html.Tr([html.Td(cell) for cell in cells], className=f"fl-replay__row fl-replay__row--{tone}")


def _badge(status: object) -> html.Span | str:
    """A status badge, or a dash when the step did not run."""
    return status_badge(str(status)) if isinstance(status, str) else "—"


def _count(value: object) -> str:
    """Attempt count as text, a dash when missing."""
    return "—" if pd.isna(value) else str(int(value))


def _duration(value: object) -> str:
    """Duration as text, a dash when missing."""
    return "—" if pd.isna(value) else format_duration(float(value))
