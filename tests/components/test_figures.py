"""Overview figures: hourly and daily failure rates, top failures, status counts."""

from __future__ import annotations

import pandas as pd

from components import theme
from components.figures import failure_rate_daily, failure_rate_hourly, status_counts, top_failures


def hourly(*rates: float) -> pd.DataFrame:
    """Consecutive hours with 100 executions each and the given failure rates."""
    hours = pd.date_range("2024-05-01", periods=len(rates), freq="h", tz="UTC")
    failed = [round(rate * 100) for rate in rates]
    return pd.DataFrame({"hour": hours, "executions": 100, "failed": failed, "rate": list(rates)})


def test_hourly_rate_has_a_dashed_threshold_line_at_five_percent_labelled_5_percent_alert():
    fig = failure_rate_hourly(hourly(0.01, 0.02))
    [line] = fig.layout.shapes
    assert (line.y0, line.y1, line.line.dash) == (0.05, 0.05, "dash")
    assert any(note.text == "5% alert" for note in fig.layout.annotations)


def test_hours_above_the_threshold_are_highlighted_with_red_markers():
    fig = failure_rate_hourly(hourly(0.01, 0.08, 0.05, 0.2))
    [markers] = [t for t in fig.data if t.type == "scatter"]
    assert list(markers.y) == [0.08, 0.2]
    assert [pd.Timestamp(x).hour for x in markers.x] == [1, 3]
    assert markers.marker.color == theme.RED
    [bars] = [t for t in fig.data if t.type == "bar"]
    assert list(bars.marker.color) == [theme.GREY, theme.RED, theme.GREY, theme.RED]


def test_an_hour_above_the_line_with_too_few_runs_to_page_stays_grey():
    frame = hourly(0.5, 0.2).assign(crossed=[False, True])
    fig = failure_rate_hourly(frame)
    [markers] = [t for t in fig.data if t.type == "scatter"]
    assert list(markers.y) == [0.2]
    [bars] = [t for t in fig.data if t.type == "bar"]
    assert list(bars.marker.color) == [theme.GREY, theme.RED]


def test_the_title_says_why_a_grey_bar_above_the_line_is_not_red():
    quiet = hourly(1.0, 0.01).assign(executions=[1, 100], failed=[1, 1], crossed=[False, False])
    assert "fewer than 20 finished runs" in failure_rate_hourly(quiet, min_runs=20).layout.title.text
    # nothing to explain when every grey bar is under the line, or every bar above it is red
    assert failure_rate_hourly(hourly(0.01, 0.02), min_runs=20).layout.title.text == "Failure rate per hour"
    paged = hourly(0.5, 0.01).assign(crossed=[True, False])
    assert failure_rate_hourly(paged, min_runs=20).layout.title.text == "Failure rate per hour"


def test_a_custom_threshold_moves_and_relabels_the_alert_line():
    fig = failure_rate_hourly(hourly(0.08, 0.12), threshold=0.1)
    assert fig.layout.shapes[0].y0 == 0.1
    assert any(note.text == "10% alert" for note in fig.layout.annotations)
    [markers] = [t for t in fig.data if t.type == "scatter"]
    assert list(markers.y) == [0.12]


def test_threshold_line_stays_visible_when_every_hour_is_below_it():
    fig = failure_rate_hourly(hourly(0.0, 0.01))
    assert fig.layout.yaxis.range[1] > 0.05


def test_daily_rate_is_a_trend_line_in_day_order():
    days = pd.to_datetime(["2024-05-03", "2024-05-01", "2024-05-02"])
    df = pd.DataFrame({"day": days, "executions": [10, 20, 30], "failed": [1, 2, 3], "rate": [0.3, 0.1, 0.2]})
    fig = failure_rate_daily(df)
    [line] = [t for t in fig.data if t.type == "scatter"]
    assert "lines" in line.mode
    assert list(line.y) == [0.1, 0.2, 0.3]


def test_the_daily_volume_axis_counts_in_whole_round_steps():
    days = pd.date_range("2024-05-01", periods=3, freq="D", tz="UTC")
    for volumes, step in (([1, 3, 2], 1), ([40, 145, 90], 50), ([900, 12_345, 70], 5000)):
        df = pd.DataFrame({"day": days, "executions": volumes, "failed": 0, "rate": 0.0})
        axis = failure_rate_daily(df).layout.yaxis
        assert (axis.dtick, axis.tick0, axis.tickformat) == (step, 0, ",d")


def test_the_daily_rate_line_is_drawn_over_the_volume_bars_in_the_middle_of_each_day():
    days = pd.date_range("2024-05-01", periods=2, freq="D", tz="UTC")
    fig = failure_rate_daily(pd.DataFrame({"day": days, "executions": [5, 50], "failed": [0, 10],
                                           "rate": [0.0, 0.2]}))
    [bars] = [t for t in fig.data if t.type == "bar"]
    [line] = [t for t in fig.data if t.type == "scatter"]
    # plotly draws an overlaying axis's traces last: the line must be on it, or a tall bar hides it
    assert line.yaxis == "y2" and fig.layout.yaxis2.overlaying == "y" and bars.yaxis in (None, "y")
    assert (fig.layout.yaxis2.tickformat, fig.layout.yaxis2.dtick) == (".0%", 0.05)  # 0, 5, 10, 15, 20%
    assert {t.xperiodalignment for t in (bars, line)} == {"middle"} and bars.xperiod == line.xperiod == 86_400_000


def test_top_failures_keeps_the_ten_largest_with_the_largest_on_top():
    df = pd.DataFrame({"workflow": [f"wf{i}" for i in range(15)], "failures": list(range(15))})
    fig = top_failures(df, label="workflow", title="Failures by workflow")
    [bars] = fig.data
    assert list(bars.x) == list(range(14, 4, -1))
    assert list(bars.y)[0] == "wf14"
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.title.text == "Failures by workflow"


def test_top_failures_shortens_long_labels_only_on_the_axis():
    label = "ConnectionError: " + "y" * 200
    fig = top_failures(pd.DataFrame({"error": [label], "failures": [3]}), label="error", title="By error")
    assert fig.data[0].y[0] == label
    assert len(fig.layout.yaxis.ticktext[0]) <= 48


def test_status_counts_colour_each_status_by_the_theme():
    fig = status_counts(pd.DataFrame({"status": ["completed", "failed", "timed_out"], "count": [90, 10, 5]}))
    # both failures are red; timed out a darker one, so its slice and legend entry stand apart from failed
    assert list(fig.data[0].marker.colors) == [theme.GREEN, theme.RED, theme.RED_DARK]


def test_empty_inputs_draw_a_message_instead_of_an_empty_axis():
    empty = pd.DataFrame()
    for fig in (
        failure_rate_hourly(empty),
        failure_rate_daily(empty),
        top_failures(empty, label="x", title="t"),
        status_counts(pd.DataFrame({"status": [], "count": []})),
    ):
        assert len(fig.data) == 0
        assert fig.layout.annotations[0].text.startswith("No ")
