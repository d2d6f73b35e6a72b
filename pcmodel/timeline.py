"""Timeline plots: one lane per worker, one bar per task window, and the queue below.

A timeline makes concurrency visible: bars that overlap in time are calls in flight at once.
The lower panel shows the work queue's depth and, shaded, the periods when a producer was
blocked on a full queue (backpressure). An adaptive pool's limit is drawn over the lanes, its
429s and timeouts marked where they happened (`pcmodel._congestion`), and `mean_limit` and
`settled_at` say where and when the limit settled. The title gives the job's figures: elapsed time,
sequential time (the sum of the bars), speedup, and the ideal makespan to compare with.

matplotlib is imported only when a plot is drawn, so `import pcmodel` stays light. Figures
are plain `matplotlib.figure.Figure` objects, not pyplot ones: they are safe to build in any
thread, and a notebook shows one when it is a cell's last expression, once the inline backend
is active (`%matplotlib inline`, or any import of `matplotlib.pyplot`).

This module draws the timeline of one job (`plot_timeline`, and its queue-depth panel) and is
the one import path of every plot; the others live in a module per subject and are imported
here:

- `pcmodel._lanes`: the worker lanes, the upper panel of every timeline, and
  `pcmodel._congestion` the concurrency limit and the drops drawn over them;
- `pcmodel.comparison`: several jobs one above the other (`plot_timelines`);
- `pcmodel.sweep_plots`: the sweeps of `pcmodel.sweeps` (`plot_speedup`, `plot_queue_sweep`);
- `pcmodel.pipeline_diagram`: the map of the pipeline's pieces (`plot_pipeline`);
- `pcmodel._plotting`: what they share (the palette, the trace check, `describe`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pcmodel._lanes import draw_lanes
from pcmodel._plotting import (
    BLOCKED_COLOR,
    CANCELLED_COLOR,
    FAILED_COLOR,
    HANDLER_COLOR,
    OK_COLOR,
    RATE_LIMITED_COLOR,
    RETRIED_COLOR,
    describe,
    require_trace,
)
from pcmodel.comparison import plot_timelines
from pcmodel.pipeline_diagram import plot_pipeline
from pcmodel.records import JobSummary, LimitChange
from pcmodel.sweep_plots import plot_queue_sweep, plot_speedup

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from pcmodel.workloads import Call

__all__ = [
    "CANCELLED_COLOR",
    "FAILED_COLOR",
    "HANDLER_COLOR",
    "OK_COLOR",
    "RATE_LIMITED_COLOR",
    "RETRIED_COLOR",
    "describe",
    "mean_limit",
    "peak_concurrency",
    "plot_pipeline",
    "plot_queue_sweep",
    "plot_speedup",
    "plot_timeline",
    "plot_timelines",
    "settled_at",
]


def plot_timeline(
    summary: JobSummary,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    calls: Sequence[Call] | None = None,
) -> Figure:
    """Draw a job's timeline: a lane per worker, a bar per task window, the queue below.

    Failed tasks are drawn in red and hatched, tasks cancelled by a fail-fast stop in grey.
    A task that needed retries gets a dark outline, and its label the number of attempts. A
    dashed line marks the ideal makespan. With `ax=None` a new figure gets two panels, the
    lanes and the work queue's depth (with the periods a producer was blocked shaded); with
    an `ax`, only the lanes are drawn into it (handy to put two jobs side by side).

    A task's window runs from the moment its worker takes it to its end, so it includes any
    wait for the rate limit and between retries. Pass `calls` (from a
    `pcmodel.workloads.CallLog`) to see inside: the windows turn pale, and each call is drawn
    as a thinner bar within its task's window (a 429 answer, which takes no time, as a
    marker); the gaps between them are the waits.

    When the job's concurrency limit moved (`workers=pcmodel.Adaptive(...)`, or a pool resized
    by hand), its steps (`summary.limit_changes`) are drawn as a step line over the lanes, on
    an axis of its own on the right ("concurrency limit") scaled so that a limit of L sits
    below lane L - 1: the lanes above the line may work. Each drop (`summary.drops`: a 429, a
    timeout) is marked where it happened, in its worker's lane; drops too close to tell
    apart share a marker with their count. With `calls`, the 429s are marked from the calls.

    Args:
        summary: the `JobSummary` of a job run with `trace=True`.
        ax: matplotlib axes to draw the lanes into; None for a new figure.
        title: a title line above the job's figures; None for none.
        calls: every call of the job, from `CallLog.calls(summary)`; None to draw tasks only.

    Returns:
        The figure drawn into.

    Raises:
        TypeError: `summary` is not a `JobSummary`.
        ValueError: the job ran with `trace=False`, so there is nothing per task to draw.
    """
    require_trace(summary)
    from matplotlib.figure import Figure

    if ax is None:
        lanes_height = min(0.32 * summary.workers, 7.0)
        fig = Figure(figsize=(10, 1.9 + lanes_height + 1.6), layout="constrained")
        lanes_ax, depth_ax = fig.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [max(lanes_height, 1.0), 1.6]}
        )
        draw_lanes(lanes_ax, summary, calls=calls)
        _draw_depth(depth_ax, summary)
        lanes_ax.set_xlabel("")  # the depth panel below carries the shared time axis's label
        header = describe(summary) if title is None else f"{title}\n{describe(summary)}"
        fig.suptitle(header, fontsize=11)
        return fig
    draw_lanes(ax, summary, calls=calls)
    ax.set_title(describe(summary) if title is None else f"{title}\n{describe(summary)}", fontsize=10)
    figure = ax.get_figure()
    assert figure is not None
    return figure  # type: ignore[return-value]


def _draw_depth(ax: Axes, summary: JobSummary) -> None:
    """Draw the work queue's depth over time, the producer's blocked periods and the capacity."""
    samples = summary.queue_depth or ()
    times = [0.0] + [s.time for s in samples] + [summary.elapsed]
    depths = [0] + [s.depth for s in samples] + [0]
    ax.step(times, depths, where="post", color=OK_COLOR, linewidth=1.2, label="items waiting")
    for index, (start, end) in enumerate(summary.producer_blocked or ()):
        ax.axvspan(
            start,
            end,
            color=BLOCKED_COLOR,
            alpha=0.25,
            linewidth=0,
            label="producer blocked" if index == 0 else None,
        )
    top = max(depths)
    if summary.queue_size and summary.queue_size <= 2 * top:
        # The capacity line only when it is close enough to the depth to tell something.
        ax.axhline(
            summary.queue_size,
            color="gray",
            linestyle="--",
            linewidth=1,
            label=f"queue_size {summary.queue_size}",
        )
        top = summary.queue_size
    ax.set_ylim(0, max(top, 1) * 1.15)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a depth is a count of items
    ax.set_ylabel("work queue")
    ax.set_xlabel("seconds since the job started")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize=9, frameon=False)
    ax.grid(alpha=0.3)


def _limit_changes(summary: JobSummary) -> tuple[LimitChange, ...]:
    """The job's limit changes, or a ValueError that says how to get them."""
    require_trace(summary)
    changes = summary.limit_changes
    if not changes:
        raise ValueError(
            "this job recorded no concurrency limit: run it again with trace=True "
            "(and workers=pcmodel.Adaptive(...) for a limit that moves)"
        )
    return changes


def mean_limit(summary: JobSummary, start: float = 0.0, end: float | None = None) -> float:
    """The concurrency limit's mean over `start` to `end` seconds of the job, weighted by time.

    Where an adaptive pool settled: its limit saws up and down around the API's capacity,
    and the mean over the second half of a job (`mean_limit(summary, summary.elapsed / 2)`)
    says where, in one number. A fixed pool's mean is its worker count.

    Args:
        summary: a job run with `trace=True`.
        start: from this job time (seconds since it started).
        end: to this job time; None for the job's end (`summary.elapsed`).

    Raises:
        TypeError: `summary` is not a `JobSummary`.
        ValueError: the job kept no trace, or `end` is not after `start`.
    """
    changes = _limit_changes(summary)
    end = summary.elapsed if end is None else end
    if not end > start:
        raise ValueError(f"end must be after start, got start={start!r} and end={end!r}")
    area = 0.0
    for change, following in zip(changes, [*changes[1:], None], strict=True):
        # The limit holds from its change to the next one (the last to the end of the window).
        since = max(change.time, start)
        until = min(end, following.time if following is not None else end)
        if until > since:
            area += change.limit * (until - since)
    if changes[0].time > start:  # before the first record: the first limit
        area += changes[0].limit * (min(changes[0].time, end) - start)
    return area / (end - start)


def settled_at(summary: JobSummary, low: float, high: float) -> float | None:
    """When the concurrency limit entered `low`..`high` (inclusive) for good; None if it ended outside.

    The time to settle of an adaptive pool: from this job time on, every step of its limit
    stayed within the band (say within 20% of the API's capacity K:
    `settled_at(summary, 0.8 * K, 1.2 * K)`).

    Raises:
        TypeError: `summary` is not a `JobSummary`.
        ValueError: the job kept no trace.
    """
    settled: float | None = None
    for change in reversed(_limit_changes(summary)):
        if not low <= change.limit <= high:
            break
        settled = change.time
    return settled


def peak_concurrency(summary: JobSummary) -> int:
    """The most tasks that ran at the same moment, from the job's trace.

    A task that starts exactly when another finishes does not overlap it. This is a count,
    not a time, so it is a robust fact to print even about a real-clock job.

    Raises:
        TypeError: `summary` is not a `JobSummary`.
        ValueError: the job ran with `trace=False`.
    """
    require_trace(summary)
    # At equal times, process ends (0) before starts (1).
    events = sorted(
        [(r.started_at, 1) for r in summary.results or ()]
        + [(r.finished_at, 0) for r in summary.results or ()]
    )
    running = peak = 0
    for _, is_start in events:
        running += 1 if is_start else -1
        peak = max(peak, running)
    return peak
