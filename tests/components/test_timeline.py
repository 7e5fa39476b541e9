"""The execution Gantt: geometry, colours by rule, annotations, critical path, scale."""

from __future__ import annotations

from datetime import timedelta, timezone

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components import theme
from components.figures import execution_timeline, timeline_window
from components.timeline import BACKOFF_NAME, CRITICAL_LINE_WIDTH, MAX_ERROR_ANNOTATIONS
from components.timeline_layout import label_width
from tests.components.factories import T0, attempt, frame, sequential


def bar(fig: go.Figure, step_id: str, number: int = 1) -> dict:
    """The bar drawn for one attempt, as plain values."""
    for trace in fig.data:
        ids = list(trace.ids if trace.ids is not None else [])
        key = f"{step_id}:{number}"
        if key in ids:
            i = ids.index(key)
            widths = trace.marker.line.width
            opacities = trace.marker.opacity
            return {
                "trace": trace.name,
                "color": trace.marker.color,
                "length": float(trace.x[i]),
                "base": pd.Timestamp(trace.base[i]),
                "text": trace.text[i] if trace.text is not None else "",
                "y": trace.y[i],
                "outline": float(widths[i]) if widths is not None else 0.0,
                "opacity": float(opacities[i]) if opacities is not None else 1.0,
                "hover": "|".join(str(v) for v in trace.customdata[i]),
            }
    raise AssertionError(f"no bar for {step_id} attempt {number}")


def notes(fig: go.Figure) -> list:
    """The figure's annotations."""
    return list(fig.layout.annotations)


def test_each_bar_length_equals_its_attempt_duration_in_milliseconds(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice)
    assert bar(fig, "fetch")["length"] == 1200
    assert bar(fig, "invoice", 1)["length"] == 3000
    assert bar(fig, "invoice", 2)["length"] == 2500
    assert bar(fig, "email")["length"] == 30000


def test_bars_start_at_the_attempt_start_on_a_shared_utc_date_axis(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice)
    assert fig.layout.xaxis.type == "date"
    assert bar(fig, "fetch")["base"] == pd.Timestamp("2024-05-01 10:00:00")
    assert bar(fig, "invoice", 2)["base"] == pd.Timestamp("2024-05-01 10:00:06.200")


def test_start_times_in_another_timezone_are_drawn_in_utc():
    plus_two = timezone(timedelta(hours=2))
    steps = frame(attempt("a", 1, "a", at=0, ms=10))
    steps["started_at"] = steps["started_at"].dt.tz_convert(plus_two)
    assert bar(execution_timeline(steps), "a")["base"] == pd.Timestamp("2024-05-01 10:00:00")


def test_bar_length_falls_back_to_completed_minus_started_when_duration_is_missing():
    steps = frame(attempt("a", 1, "a", at=0, ms=750))
    steps["duration_ms"] = None
    assert bar(execution_timeline(steps), "a")["length"] == 750


def test_step_completed_at_its_first_attempt_is_green(deal_to_invoice):
    assert bar(execution_timeline(deal_to_invoice), "fetch")["color"] == theme.GREEN


def test_retried_step_is_amber_with_each_attempt_a_separate_labelled_segment_on_its_row(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice)
    first, second = bar(fig, "invoice", 1), bar(fig, "invoice", 2)
    assert first["color"] == theme.RED and second["color"] == theme.AMBER
    assert (first["text"], second["text"]) == ("#1", "#2")
    assert first["y"] == second["y"] == "2 · create_invoice"
    assert first["base"] + pd.Timedelta(milliseconds=first["length"]) <= second["base"]


def test_single_attempt_bars_carry_no_attempt_label(deal_to_invoice):
    assert bar(execution_timeline(deal_to_invoice), "fetch")["text"] == ""


def test_completed_step_slower_than_one_and_a_half_times_its_p95_is_amber(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice, p95_by_step={"fetch_deal": 700})
    assert bar(fig, "fetch")["color"] == theme.AMBER


def test_completed_step_within_one_and_a_half_times_its_p95_stays_green(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice, p95_by_step={"fetch_deal": 800, "other": 1})
    assert bar(fig, "fetch")["color"] == theme.GREEN


def test_failed_step_bar_is_red_and_annotated_with_its_error(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice)
    assert bar(fig, "email")["color"] == theme.RED
    [note] = [n for n in notes(fig) if "error:email" in (n.name or "")]
    assert "SMTP timeout after 30s" in note.text
    assert note.y == "4 · send_email"
    assert pd.Timestamp(note.x) == pd.Timestamp("2024-05-01 10:00:43.700")


def test_a_retried_attempts_error_is_annotated_on_its_row_with_the_attempt_number(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice)
    [note] = [n for n in notes(fig) if "error:invoice" in (n.name or "")]
    assert note.text == "#1 HTTP 503 from billing"


def test_long_error_is_cut_to_80_characters_in_the_annotation_and_kept_whole_in_the_hover():
    message = "Upstream refused the invoice: " + "x" * 300
    fig = execution_timeline(frame(attempt("a", 1, "post", at=0, ms=5, status="failed", error=message)))
    [note] = [n for n in notes(fig) if "error:a" in (n.name or "")]
    assert len(note.text) == 80 and note.text.endswith("…")
    assert note.hovertext.replace("<br>", "") == message
    assert message in bar(fig, "a")["hover"].replace("<br>", "")


def test_timed_out_is_red_and_skipped_or_cancelled_are_grey():
    fig = execution_timeline(
        frame(
            attempt("t", 1, "t", at=0, ms=5, status="timed_out"),
            attempt("s", 2, "s", at=1, ms=0, status="skipped"),
            attempt("c", 3, "c", at=1, ms=0, status="cancelled"),
        )
    )
    assert bar(fig, "t")["color"] == theme.RED
    assert bar(fig, "s")["color"] == bar(fig, "c")["color"] == theme.GREY


def test_running_step_is_blue_and_reaches_the_now_passed_in():
    steps = frame(attempt("a", 1, "a", at=0, ms=1000), attempt("r", 2, "r", at=1, ms=0, status="running"))
    fig = execution_timeline(steps, now=T0 + timedelta(seconds=5))
    assert bar(fig, "r")["color"] == theme.BLUE
    assert bar(fig, "r")["length"] == 4000


def test_backoff_before_a_retry_is_a_lighter_segment_ending_where_the_attempt_starts(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice)
    [wait] = [t for t in fig.data if t.name == BACKOFF_NAME]
    assert list(wait.ids) == ["invoice:2:wait"] and float(wait.x[0]) == 2000
    end = pd.Timestamp(wait.base[0]) + pd.Timedelta(milliseconds=2000)
    assert end == bar(fig, "invoice", 2)["base"]
    assert wait.marker.color == theme.WAIT


def test_completed_wait_step_is_drawn_in_the_lighter_waiting_colour(deal_to_invoice):
    assert bar(execution_timeline(deal_to_invoice), "pause")["color"] == theme.WAIT


def test_hover_shows_start_end_duration_attempt_and_status(deal_to_invoice):
    hover = bar(execution_timeline(deal_to_invoice), "invoice", 2)["hover"]
    for part in ("invoice", "|2|", "completed", "2024-05-01 10:00:06.200", "2024-05-01 10:00:08.700", "2.5 s"):
        assert part in hover


def test_slowest_step_is_marked_even_when_it_failed(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice)
    [note] = [n for n in notes(fig) if "slowest" in (n.name or "")]
    assert note.y == "4 · send_email" and "slowest" in note.text


def test_slowest_marker_ignores_wait_steps_and_sits_after_the_slowest_bar():
    fig = execution_timeline(
        frame(
            attempt("w", 1, "sleep", at=0, ms=60000, step_type="wait"),
            attempt("a", 2, "render_pdf", at=60, ms=9000),
            attempt("b", 3, "upload", at=69, ms=1000),
        )
    )
    [note] = [n for n in notes(fig) if n.name == "slowest"]
    assert note.y == "2 · render_pdf" and note.text.startswith("◀ slowest")
    assert pd.Timestamp(note.x) == pd.Timestamp("2024-05-01 10:01:09")


def test_critical_path_outlines_the_final_attempts_that_set_the_end_time():
    steps = frame(
        attempt("start", 1, "start", at=0, ms=1000),
        attempt("slow", 2, "slow_branch", at=1, ms=8000),
        attempt("fast", 3, "fast_branch", at=1, ms=2000),
        attempt("join", 4, "join", at=9, ms=3000, status="failed", error="boom"),
        attempt("join", 4, "join", at=12, ms=1000, number=2),
    )
    fig = execution_timeline(steps)
    on_path = {key: bar(fig, *key)["outline"] for key in [("start", 1), ("slow", 1), ("join", 2)]}
    off_path = {key: bar(fig, *key)["outline"] for key in [("fast", 1), ("join", 1)]}
    assert set(on_path.values()) == {CRITICAL_LINE_WIDTH}
    assert set(off_path.values()) == {0}
    assert bar(fig, "fast")["opacity"] < bar(fig, "slow")["opacity"]
    assert any("critical path" in n.text for n in notes(fig))


def test_rows_follow_seq_order_and_are_labelled_with_seq_and_name(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice.sample(frac=1, random_state=3))
    assert list(fig.layout.yaxis.categoryarray) == [
        "1 · fetch_deal",
        "2 · create_invoice",
        "3 · pause",
        "4 · send_email",
        "5 · notify_slack",
    ]
    assert fig.layout.yaxis.autorange == "reversed"


def test_500_steps_grow_the_figure_by_a_fixed_row_height_with_one_tick_per_row():
    small, large = execution_timeline(sequential(50)), execution_timeline(sequential(500))
    assert large.layout.height - small.layout.height == 450 * 28
    assert len(large.layout.yaxis.tickvals) == 500
    assert len(set(large.layout.yaxis.tickvals)) == 500


def test_the_timeline_draws_no_rangeslider_copy_of_its_bars_and_keeps_time_zoom():
    fig = execution_timeline(sequential(150))
    assert fig.layout.xaxis.rangeslider.visible is not True
    assert fig.layout.xaxis.fixedrange is not True and fig.layout.yaxis.fixedrange is True


def test_bars_are_one_trace_per_colour_not_one_per_step():
    steps = sequential(150)
    steps.loc[steps["seq"] == 70, ["status", "error_message"]] = ["failed", "boom"]
    fig = execution_timeline(steps)
    assert sorted(t.name for t in fig.data) == ["Completed first attempt", "Failed / timed out"]


def test_height_per_row_sets_the_row_height():
    fig_a = execution_timeline(sequential(100), height_per_row=20)
    fig_b = execution_timeline(sequential(200), height_per_row=20)
    assert fig_b.layout.height - fig_a.layout.height == 100 * 20


def test_error_annotations_are_capped_with_a_note_for_the_rest():
    steps = sequential(10_000, ms=10)
    failing = steps.index % 100 == 0
    steps.loc[failing, "status"] = "failed"
    steps.loc[failing, "error_message"] = "boom"
    fig = execution_timeline(steps)
    errors = [n for n in notes(fig) if "error:" in (n.name or "")]
    assert len(errors) == MAX_ERROR_ANNOTATIONS
    assert any("50 more failing steps not annotated" in n.text for n in notes(fig))


def test_window_of_a_10000_step_execution_holds_only_the_requested_steps_with_all_their_attempts():
    steps = sequential(10_000, ms=10)
    retry = steps[steps["seq"] == 2501].assign(attempt=2)
    steps = pd.concat([retry, steps.sample(frac=1, random_state=1)], ignore_index=True)
    window = timeline_window(steps, start=2500, size=100)
    assert window["seq"].nunique() == 100
    assert (window["seq"].min(), window["seq"].max()) == (2501, 2600)
    assert len(window) == 101
    assert list(window["seq"]) == sorted(window["seq"])


def test_window_past_the_end_is_empty_and_draws_the_empty_state():
    window = timeline_window(sequential(10), start=50, size=100)
    assert window.empty
    fig = execution_timeline(window)
    assert [n.text for n in notes(fig)] == ["No steps recorded"]


def test_empty_steps_say_no_steps_recorded():
    fig = execution_timeline(pd.DataFrame())
    assert len(fig.data) == 0
    assert notes(fig)[0].text == "No steps recorded"


def test_all_bars_use_the_flowledger_template(deal_to_invoice):
    fig = execution_timeline(deal_to_invoice)
    assert fig.layout.template.layout.font.family == theme.FONT_FAMILY
    assert all(np.isfinite(np.asarray(t.x, dtype=float)).all() for t in fig.data)


def test_row_labels_get_a_fixed_left_margin_wide_enough_for_the_longest_so_plotly_never_measures_them():
    steps = sequential(20)
    narrow = execution_timeline(steps)
    steps.loc[steps["seq"] == 7, "step_name"] = "SendInvoiceEmailToCustomerViaMailgunAPI"
    wide = execution_timeline(steps)
    assert narrow.layout.yaxis.automargin is False and narrow.layout.xaxis.automargin is False
    assert wide.layout.margin.l > narrow.layout.margin.l
    assert wide.layout.margin.l >= label_width("7 · SendInvoiceEmailToCustomerViaMailgunAPI")
    # widths measured in Chromium at 11 px: 269 px and 481 px
    assert label_width("7 · SendInvoiceEmailToCustomerViaMailgunAPI") >= 269
    assert label_width("12345 · " + "W" * 39 + "…") >= 481
