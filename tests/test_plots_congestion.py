"""The concurrency limit and the drops over a timeline's lanes: the step line, the markers, their counts."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation

from pcmodel._congestion import DROP_STYLES, draw_drops, draw_limit, limit_axis_width, limit_changed
from pcmodel._plotting import FAILED_COLOR, LIMIT_COLOR, RATE_LIMITED_COLOR
from pcmodel.records import Drop, LimitChange

CHANGES = [
    LimitChange(0.0, 1, "start"),
    LimitChange(0.2, 2, "grow"),
    LimitChange(0.4, 4, "grow"),
    LimitChange(0.5, 3, "congestion"),
    LimitChange(1.5, 4, "grow"),
]


def _axes() -> Axes:
    return Figure().subplots()


def _markers(ax: Axes) -> list[tuple[str, str, list[tuple[float, float]]]]:
    """(marker, colour, points) of each marker-only line drawn on `ax`."""
    return [
        (
            str(line.get_marker()),
            str(line.get_color()),
            list(
                zip(np.asarray(line.get_xdata()).tolist(), np.asarray(line.get_ydata()).tolist(), strict=True)
            ),
        )
        for line in ax.lines
        if line.get_linestyle() == "None"
    ]


def test_the_limit_is_a_step_line_on_its_own_axis_holding_its_last_value_to_the_end() -> None:
    ax = _axes()
    line = draw_limit(ax, CHANGES, end=2.0, lanes=6)
    assert isinstance(line, Line2D)
    assert np.asarray(line.get_xdata()).tolist() == [0.0, 0.2, 0.4, 0.5, 1.5, 2.0]
    assert np.asarray(line.get_ydata()).tolist() == [1, 2, 4, 3, 4, 4]
    assert line.get_drawstyle() == "steps-post"
    assert line.get_label() == "concurrency limit"
    assert line.get_color() == LIMIT_COLOR
    figure = ax.get_figure()
    assert figure is not None
    limit_ax = figure.axes[1]
    assert line.axes is limit_ax
    assert limit_ax.get_ylabel() == "concurrency limit"
    # Scaled to the six lanes, worker 0 on top: a limit of L sits right below lane L - 1.
    assert limit_ax.get_ylim() == (6, 0)
    # One time axis for the lanes and the limit.
    assert limit_ax.get_shared_x_axes().joined(ax, limit_ax)


def test_a_limit_that_changed_after_the_end_is_drawn_to_its_last_change() -> None:
    changes = [LimitChange(0.0, 5, "start"), LimitChange(3.0, 2, "set_workers")]
    line = draw_limit(_axes(), changes, end=1.0, lanes=5)
    assert np.asarray(line.get_xdata()).tolist() == [0.0, 3.0, 3.0]
    assert np.asarray(line.get_ydata()).tolist() == [5, 2, 2]


def test_a_limit_beyond_the_lanes_stretches_its_scale_to_fit() -> None:
    line = draw_limit(_axes(), [LimitChange(0.0, 3, "start"), LimitChange(1.0, 40, "set_workers")], 2.0, 8)
    assert line.axes is not None
    assert line.axes.get_ylim() == (40, 0)


@pytest.mark.parametrize(
    ("changes", "drawn"),
    [
        (None, False),
        ((), False),
        ([LimitChange(0.0, 10, "start")], False),
        ([LimitChange(0.0, 10, "start"), LimitChange(1.0, 10, "set_workers")], False),
        ([LimitChange(0.0, 10, "start"), LimitChange(1.0, 9, "congestion")], True),
    ],
)
def test_only_a_limit_that_moved_is_worth_a_line(changes: list[LimitChange] | None, drawn: bool) -> None:
    assert limit_changed(changes) is drawn


def test_each_drop_is_marked_in_its_workers_lane_with_a_marker_per_kind() -> None:
    ax = _axes()
    drops = [
        Drop(0.10, 1, 0, "rate_limited"),
        Drop(1.20, 2, 2, "timeout"),
        Drop(0.70, 3, 1, "rate_limited"),
    ]
    handles = draw_drops(ax, drops, span=2.0, lanes=3)
    assert _markers(ax) == [
        ("v", RATE_LIMITED_COLOR, [(0.1, 0), (0.7, 1)]),
        ("X", FAILED_COLOR, [(1.2, 2)]),
    ]
    assert [handle.get_label() for handle in handles] == [
        DROP_STYLES[k][2] for k in ("rate_limited", "timeout")
    ]
    assert not [child for child in ax.get_children() if isinstance(child, Annotation)]


def test_drops_too_close_to_tell_apart_share_a_marker_with_their_count() -> None:
    ax = _axes()
    burst = [Drop(1.0 + i * 1e-6, i, 3, "rate_limited") for i in range(9)]
    late = [Drop(5.0, 20, 3, "rate_limited"), Drop(5.01, 21, 3, "timeout"), Drop(5.02, 22, 3, "timeout")]
    draw_drops(ax, burst + late, span=10.0, lanes=4)
    assert _markers(ax) == [
        ("v", RATE_LIMITED_COLOR, [(1.0, 3), (5.0, 3)]),
        ("X", FAILED_COLOR, [(5.01, 3)]),
    ]
    counts = sorted(
        (child.get_text(), child.get_color()) for child in ax.get_children() if isinstance(child, Annotation)
    )
    assert counts == [
        ("2\N{MULTIPLICATION SIGN}", FAILED_COLOR),
        ("9\N{MULTIPLICATION SIGN}", RATE_LIMITED_COLOR),
    ]


def test_only_the_kinds_asked_for_are_marked_and_strays_are_left_out() -> None:
    ax = _axes()
    drops = [Drop(0.1, 0, 0, "rate_limited"), Drop(0.2, 1, 1, "timeout"), Drop(0.3, 2, 7, "timeout")]
    handles = draw_drops(ax, drops, span=1.0, lanes=2, kinds=("timeout",))
    assert _markers(ax) == [("X", FAILED_COLOR, [(0.2, 1)])]
    assert len(handles) == 1
    assert draw_drops(_axes(), [], span=1.0, lanes=2) == []


def test_the_legend_moves_right_by_as_many_digits_as_the_limits_axis_prints() -> None:
    small = [LimitChange(0.0, 5, "start")]
    assert limit_axis_width(small, 8) == limit_axis_width(small, 9) < limit_axis_width(small, 10)
    assert limit_axis_width(small, 10) < limit_axis_width([LimitChange(0.0, 120, "start")], 8)
