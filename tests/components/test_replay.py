"""Replay comparison: which steps re-ran, were skipped, or changed their output."""

from __future__ import annotations

from dash import html

from components.replay import replay_comparison, replay_diff
from tests.components.factories import attempt, frame


def original():
    """A run that failed at its third step."""
    return frame(
        attempt("o1", 1, "fetch", at=0, ms=100, output_hash="h1"),
        attempt("o2", 2, "transform", at=1, ms=100, output_hash="h2"),
        attempt("o3", 3, "post", at=2, ms=100, status="failed", error="503"),
        attempt("o3", 3, "post", at=3, ms=100, number=2, status="failed", error="503"),
    )


def replay():
    """Its replay: step 1 skipped, step 2 re-ran with a different output, step 3 succeeded."""
    return frame(
        attempt("r1", 1, "fetch", at=10, ms=0, status="skipped"),
        attempt("r2", 2, "transform", at=10, ms=90, output_hash="h2-changed"),
        attempt("r3", 3, "post", at=11, ms=120, output_hash="h3"),
        attempt("r4", 4, "notify", at=12, ms=10, output_hash="h4"),
    )


def test_each_step_is_marked_re_run_skipped_or_new():
    diff = replay_diff(original(), replay())
    assert list(diff["outcome"]) == ["skipped", "re-run", "re-run", "new in replay"]


def test_a_re_run_step_whose_output_hash_changed_is_flagged():
    diff = replay_diff(original(), replay())
    assert list(diff["output_differs"]) == [False, True, False, False]


def test_steps_missing_from_the_replay_count_as_skipped():
    diff = replay_diff(original(), replay().iloc[1:])
    assert diff.loc[diff["seq"] == 1, "outcome"].item() == "skipped"


def test_the_diff_keeps_final_status_and_attempt_counts_of_both_runs():
    row = replay_diff(original(), replay()).set_index("seq").loc[3]
    assert (row["original_status"], row["original_attempts"]) == ("failed", 2)
    assert (row["replay_status"], row["replay_attempts"]) == ("completed", 1)


def test_comparison_renders_a_summary_and_one_row_per_step():
    view = replay_comparison(original(), replay())
    summary, table = view.children
    assert summary.children == "2 re-run · 1 skipped · 1 with different output"
    assert isinstance(table, html.Table)
    assert len(table.children[1].children) == 4


def test_comparison_of_nothing_says_so():
    empty = original().iloc[0:0]
    assert replay_comparison(empty, empty).children == "No steps to compare."
