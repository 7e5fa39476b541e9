"""Small text formatters shared by figures, cards and tables."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from html import unescape
from typing import Any

ELLIPSIS = "…"


def truncate(text: object, limit: int) -> str:
    """Shorten text to at most `limit` characters, ending with an ellipsis when cut."""
    value = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: max(limit - 1, 0)].rstrip() + ELLIPSIS


def format_duration(ms: float | None) -> str:
    """Human duration: 850 ms, 12.3 s, 4m 05s, 2h 03m."""
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_bytes(size: int) -> str:
    """Human byte size: 512 B, 12.0 KB, 3.4 MB."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def format_percent(rate: float | None, *, digits: int = 1) -> str:
    """A 0..1 rate as a percentage string."""
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "—"
    return f"{rate * 100:.{digits}f}%"


def threshold_percent(rate: float) -> str:
    """An alert threshold as a percentage without needless digits: 0.05 -> '5%', 0.075 -> '7.5%'."""
    return f"{rate * 100:g}%"


def iso(value: Any) -> str:
    """A time as 'YYYY-MM-DD HH:MM:SS UTC', or a dash."""
    if not isinstance(value, datetime):
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_MARK = re.compile(r"<mark>(.*?)</mark>", re.DOTALL)


def snippet_parts(snippet: str | None) -> list[tuple[str, bool]]:
    """A search snippet (HTML-escaped text with <mark> around the matches) as (text, is_match) pieces, unescaped.

    No other markup is ever interpreted.
    """
    # split puts the marked text at odd positions
    return [(unescape(part), bool(index % 2)) for index, part in enumerate(_MARK.split(snippet or "")) if part]
