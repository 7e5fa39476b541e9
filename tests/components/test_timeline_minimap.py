"""The execution minimap: runs of steps coloured by their worst step, the drawn window shaded, clicks to offsets."""

from __future__ import annotations

import pandas as pd

from components import theme
from components.timeline_minimap import MINIMAP_HEIGHT, clicked_offset, execution_minimap


def buckets(total: int, per: int, **counts: dict[int, int]) -> pd.DataFrame:
    """Runs of `per` steps; counts maps a column (failed, retried, inactive) to {bucket: n}."""
    rows = []
    for n, first in enumerate(range(0, total, per)):
        last = min(first + per, total) - 1
        row = {"bucket": n, "first": first, "last": last, "steps": last - first + 1}
        for column in ("failed", "retried", "inactive"):
            row[column] = counts.get(column, {}).get(n, 0)
        rows.append(row)
    return pd.DataFrame(rows)


def test_each_run_of_steps_is_one_block_spanning_its_positions():
    fig = execution_minimap(buckets(10_000, 50), offset=0, size=150, total=10_000)
    bar = fig.data[0]
    assert len(fig.data) == 1 and len(bar.x) == 200
    assert (bar.x[0], bar.width[0]) == (24.5, 50)
    assert (bar.x[-1], bar.width[-1]) == (9974.5, 50)
    assert fig.layout.height == MINIMAP_HEIGHT and fig.layout.xaxis.range == (-0.5, 9999.5)


def test_a_run_with_a_failure_is_red_a_retry_amber_all_skipped_grey_else_green():
    data = buckets(400, 100, failed={1: 1}, retried={1: 2, 2: 1}, inactive={3: 100})
    colours = list(execution_minimap(data, offset=0, size=150, total=400).data[0].marker.color)
    assert colours == [theme.GREEN, theme.RED, theme.AMBER, theme.GREY]


def test_the_window_drawn_on_the_timeline_is_shaded_on_the_minimap():
    fig = execution_minimap(buckets(10_000, 50), offset=9_850, size=150, total=10_000)
    shape = fig.layout.shapes[0]
    assert (shape.x0, shape.x1, shape.name) == (9_849.5, 9_999.5, "window")


def test_hover_names_the_steps_and_what_went_wrong_in_them():
    fig = execution_minimap(buckets(400, 100, failed={1: 1}, retried={1: 2}), offset=0, size=150, total=400)
    assert fig.data[0].hovertext[1].startswith("steps 101–200 · 1 failed · 2 retried")


def test_a_click_on_a_block_centres_a_full_window_on_it():
    # plotly's click event carries the block's x, its middle step
    assert clicked_offset({"points": [{"x": 5024.5}]}, total=10_000, size=150) == 5024 - 75
    assert clicked_offset({"points": [{"x": 9974.5}]}, total=10_000, size=150) == 9_850
    assert clicked_offset({"points": [{"x": 24.5}]}, total=10_000, size=150) == 0


def test_a_click_outside_the_blocks_moves_nothing():
    assert clicked_offset(None, total=100, size=50) is None
    assert clicked_offset({"points": [{}]}, total=100, size=50) is None


def test_no_steps_draw_the_empty_state():
    fig = execution_minimap(pd.DataFrame(), offset=0, size=150, total=0)
    assert fig.layout.annotations[0].text == "No steps recorded"
