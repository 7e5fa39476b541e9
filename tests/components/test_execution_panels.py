"""The execution page's panels: failure callout, payload panels, audit and log tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from dash import html

from components.execution_panels import audit_and_logs, failure_callout, payload_panel
from tests.components.test_cards import find, texts


def failure(seq: int, **extra) -> dict:
    return {"seq": seq, "attempt": 1, "step_name": f"step_{seq}", "status": "failed", "error_message": f"boom {seq}",
            "response_status": None, "external_request_id": None, **extra}


def test_the_callout_names_the_first_three_failures_each_with_a_way_to_its_step_and_counts_the_rest():
    run = {"status": "failed", "error_message": None,
           "failures": [failure(2, attempt=3, response_status=503, external_request_id="req_9")]
           + [failure(seq) for seq in (5, 7, 9, 11)]}
    callout = failure_callout(run)
    text = " ".join(texts(callout))
    assert "✖ Step 2 · step_2 failed after 3 attempts: " in text and "HTTP 503 · request req_9" in text
    assert "step_9" not in text and "…and 2 more failing steps (red bars below)" in text
    assert [b.id["step"] for b in find(callout, html.Button)] == ["2:3", "5:1", "7:1"]


def test_a_failed_run_without_a_failing_step_still_says_why_and_a_clean_run_has_no_callout():
    assert "✖ timed out: no error recorded" in texts(failure_callout(
        {"status": "timed_out", "error_message": None, "failures": []}))
    assert failure_callout({"status": "completed", "error_message": None, "failures": []}) is None


def step(**meta) -> dict:
    return {"step_id": uuid.uuid4(), "input_meta": {"size_bytes": 300 * 1024, "stored_bytes": 40 * 1024,
                                                    "codec": "zstd-dict", "sha256": "ab" * 32, "uri": None, **meta},
            "output_meta": None}


def test_a_payload_panel_shows_the_payload_it_was_given_or_a_button_naming_its_size():
    shown = payload_panel(step(), "input", html.Pre("the payload"))
    assert "the payload" in texts(shown) and not find(shown, html.Button)
    offloaded = payload_panel(step(uri="s3://cold/p/1"), "input")
    assert "Load input (300.0 KB)" in texts(offloaded)
    assert any("offloaded to s3://cold/p/1" in t for t in texts(offloaded))
    assert "no payload recorded" in texts(payload_panel(step(), "output"))


def test_audit_details_leave_out_empty_values_and_log_rows_carry_their_level():
    at = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    tables = audit_and_logs({"audit_events": [{"timestamp": at, "event_type": "FAILED",
                                               "metadata": {"error_message": "boom", "failed_task_id": None,
                                                            "note": ""}}],
                             "logs": [{"timestamp": at, "level": "error", "message": "attempt #1: HTTP 503"}]})
    text = texts(tables)
    assert "error_message=boom" in text and "2026-11-22 12:00:00 UTC" in text
    assert [getattr(r, "className", None) for r in find(tables, html.Tr)] == [None, None, None, "fl-log fl-log--error"]
