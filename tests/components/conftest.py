"""Shared step frames for the component tests."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.components.factories import attempt, frame


@pytest.fixture
def deal_to_invoice() -> pd.DataFrame:
    """CRM deal.won to invoice to email: a retry, a wait step, a timeout and a skipped step."""
    return frame(
        attempt("fetch", 1, "fetch_deal", at=0, ms=1200),
        attempt("invoice", 2, "create_invoice", at=1.2, ms=3000, status="failed", error="HTTP 503 from billing"),
        attempt("invoice", 2, "create_invoice", at=6.2, ms=2500, number=2, wait_ms=2000),
        attempt("pause", 3, "pause", at=8.7, ms=5000, step_type="wait"),
        attempt("email", 4, "send_email", at=13.7, ms=30000, status="timed_out", error="SMTP timeout after 30s"),
        attempt("notify", 5, "notify_slack", at=43.7, ms=0, status="skipped"),
    )
