"""Execution page in headless Chromium (500 and 10,000 steps): measured once pages/execution.py exists."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.runner import Row

PAGE = Path(__file__).resolve().parent.parent / "pages" / "execution.py"


def run(ctx: Any) -> None:
    """Report 'not measured' with the reason while the page or Playwright is missing."""
    reason = None
    if not PAGE.exists():
        reason = "pages/execution.py does not exist yet (dashboard being written)"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            reason = "playwright is not installed in this environment"
    if reason is None:
        reason = "page exists but the browser measure is not implemented yet"
    for steps, target in ((500, "<= 1 s"), (10_000, "<= 3 s")):
        ctx.add(Row(f"execution page, {steps:,} steps", "s", target=target, higher_is_better=False,
                    note=f"not measured: {reason}"))
