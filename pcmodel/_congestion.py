"""Congestion over a job's lanes: the concurrency limit as a step line, the drops as markers.

An adaptive pool (`workers=pcmodel.Adaptive(...)`) moves its limit on the calls in flight as
the API answers: up while calls succeed, down when one is turned away (429) or times out.
On a timeline the two belong together: the limit as a step line over the lanes, on an axis of
its own on the right ("concurrency limit") scaled so that a limit of L sits below the L-th
lane (the lanes above the line may work, those below go quiet), and each drop as a marker in
the lane of the worker whose attempt it ended, when it ended, so the eye sees each cut follow
its 429s. Markers too close to tell apart share one, with a count ("3\N{MULTIPLICATION SIGN}"
in print): a burst of 429s comes back within microseconds, and nine markers on one spot would
read as one.

`draw_lanes` (`pcmodel/_lanes.py`) calls these for every timeline, one job or several; the
429s of a `CallLog` use the same clustered markers. matplotlib is imported inside the
functions, only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from pcmodel._plotting import FAILED_COLOR, LIMIT_COLOR, RATE_LIMITED_COLOR
from pcmodel.records import Drop, LimitChange

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

__all__ = [
    "CLUSTER_SPAN",
    "DROP_STYLES",
    "clusters",
    "draw_drops",
    "draw_limit",
    "limit_axis_width",
    "limit_changed",
    "mark_clusters",
]

TIMES: Final = "\N{MULTIPLICATION SIGN}"

CLUSTER_SPAN: Final = 0.04
"""A cluster of markers spans at most this share of the time axis: room for its count."""

DROP_STYLES: Final = {
    "rate_limited": ("v", RATE_LIMITED_COLOR, f"429: rate limited ({TIMES}n: n at once)"),
    "timeout": ("X", FAILED_COLOR, f"timed out ({TIMES}n: n at once)"),
}
"""Drop kind -> (marker, colour, legend label)."""


def clusters(points: Sequence[tuple[int, float]], gap: float) -> list[tuple[int, float, int]]:
    """Group (lane, time) points closer than `gap` in the same lane: (lane, first time, count)."""
    grouped: list[tuple[int, float, int]] = []
    for lane, time in sorted(points):
        if grouped and grouped[-1][0] == lane and time - grouped[-1][1] < gap:
            first_lane, first, count = grouped[-1]
            grouped[-1] = (first_lane, first, count + 1)
        else:
            grouped.append((lane, time, 1))
    return grouped


def mark_clusters(
    ax: Axes, points: Sequence[tuple[int, float]], span: float, *, marker: str, color: str
) -> list[tuple[int, float, int]]:
    """Mark (lane, time) points in `ax`, one marker per cluster, its count beside it if > 1.

    Returns the clusters drawn, (lane, first time, count).
    """
    grouped = clusters(points, span * CLUSTER_SPAN)
    ax.plot(
        [time for _, time, _ in grouped],
        [lane for lane, _, _ in grouped],
        linestyle="none",
        marker=marker,
        markersize=6,
        color=color,
    )
    for lane, time, count in grouped:
        if count > 1:
            ax.annotate(
                f"{count}{TIMES}",
                (time, lane),
                xytext=(5, -3),  # below and right: the task labels sit above the calls
                textcoords="offset points",
                fontsize=8,
                fontweight="bold",
                color=color,
                va="top",
            )
    return grouped


def draw_drops(
    ax: Axes, drops: Sequence[Drop], span: float, lanes: int, *, kinds: Sequence[str] = tuple(DROP_STYLES)
) -> list[Artist]:
    """Mark each drop of a kind in `kinds` in its worker's lane; return the legend handles needed.

    A drop from a worker outside `lanes` (none is, in a job's own summary) is left out rather
    than drawn off the panel.
    """
    from matplotlib.lines import Line2D

    handles: list[Artist] = []
    for kind in kinds:
        points = [
            (drop.worker, drop.time) for drop in drops if drop.kind == kind and 0 <= drop.worker < lanes
        ]
        if not points:
            continue
        marker, color, label = DROP_STYLES[kind]
        mark_clusters(ax, points, span, marker=marker, color=color)
        handles.append(Line2D([], [], linestyle="none", marker=marker, color=color, label=label))
    return handles


def draw_limit(ax: Axes, changes: Sequence[LimitChange], end: float, lanes: int) -> Line2D:
    """Draw the limit's steps over `ax`'s `lanes` worker lanes, to `end`; return the line.

    The limit holds from each change to the next, and the last one to `end` (the job's end),
    so the line is a staircase of `changes` and one last point: `(end, last limit)`.

    It is drawn on an axis of its own, on the right, scaled to the lanes: a limit of L sits
    on the boundary below lane L - 1, worker 0 on top. A resizable pool works through lanes
    0 to L - 1 (`pcmodel._pool`), so the lanes above the line are those allowed to work and
    the lanes below it go quiet once their calls end. A limit beyond the lanes drawn (none
    was reached by the job's own workers) stretches the scale to fit.
    """
    from matplotlib.patheffects import withStroke
    from matplotlib.ticker import MaxNLocator

    limits = [change.limit for change in changes]
    times = [change.time for change in changes]
    limit_ax = ax.twinx()
    (line,) = limit_ax.step(
        [*times, max(end, times[-1])],
        [*limits, limits[-1]],
        where="post",
        color=LIMIT_COLOR,
        linewidth=2,
        label="concurrency limit",
        zorder=3,
        path_effects=[withStroke(linewidth=4, foreground="white")],  # a halo: readable over the bars
    )
    # The lanes run from -0.5 (top) to lanes - 0.5: a limit of L lands between lanes L-1 and L.
    limit_ax.set_ylim(max(lanes, *limits), 0)
    limit_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    limit_ax.set_ylabel("concurrency limit", color=LIMIT_COLOR)
    limit_ax.tick_params(axis="y", colors=LIMIT_COLOR)
    return line


def limit_axis_width(changes: Sequence[LimitChange], lanes: int) -> float:
    """Points the limit's axis over `lanes` lanes takes on the right: its tick labels and its label."""
    digits = len(str(max(lanes, *(change.limit for change in changes))))
    return 30.0 + 7.0 * digits


def limit_changed(changes: Sequence[LimitChange] | None) -> bool:
    """True when there is a limit worth drawing: it changed at least once after its start."""
    return changes is not None and len({change.limit for change in changes}) > 1
