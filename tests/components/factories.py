"""Builders for step frames shaped like the ledger's step rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def attempt(
    step_id: str,
    seq: int,
    name: str,
    *,
    at: float,
    ms: float,
    number: int = 1,
    status: str = "completed",
    error: str | None = None,
    step_type: str = "action",
    wait_ms: float = 0,
    output_hash: str | None = None,
) -> dict:
    """One step attempt starting `at` seconds after T0 and lasting `ms` milliseconds."""
    started = T0 + timedelta(seconds=at)
    completed = None if status == "running" else started + timedelta(milliseconds=ms)
    return {
        "step_id": step_id,
        "seq": seq,
        "step_name": name,
        "step_type": step_type,
        "attempt": number,
        "status": status,
        "started_at": started,
        "completed_at": completed,
        "duration_ms": None if status == "running" else ms,
        "error_message": error,
        "wait_ms": wait_ms,
        "output_hash": output_hash,
    }


def frame(*rows: dict) -> pd.DataFrame:
    """A steps frame with tz-aware timestamp columns, as the services return it."""
    df = pd.DataFrame(list(rows))
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True)
    df["completed_at"] = pd.to_datetime(df["completed_at"], utc=True)
    return df


def sequential(count: int, *, ms: float = 1000) -> pd.DataFrame:
    """`count` steps run one after another, each completing at its first attempt."""
    starts = pd.Series(range(count)) * ms
    start = pd.Timestamp(T0) + pd.to_timedelta(starts, unit="ms")
    return pd.DataFrame(
        {
            "step_id": [f"s{i}" for i in range(count)],
            "seq": range(1, count + 1),
            "step_name": [f"step_{i}" for i in range(count)],
            "step_type": "action",
            "attempt": 1,
            "status": "completed",
            "started_at": start,
            "completed_at": start + pd.Timedelta(milliseconds=ms),
            "duration_ms": float(ms),
            "error_message": None,
        }
    )
