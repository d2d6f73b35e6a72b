"""Timeline plots: one lane per worker, one bar per task window, and the queue below.

A timeline makes concurrency visible: bars that overlap in time are calls in flight at once.
The lower panel shows the work queue's depth and, shaded, the periods when a producer was
blocked on a full queue (backpressure). The title gives the job's figures: elapsed time,
sequential time (the sum of the bars), speedup, and the ideal makespan to compare with.

matplotlib is imported only when a plot is drawn, so `import pcmodel` stays light. Figures
are plain `matplotlib.figure.Figure` objects, not pyplot ones: they are safe to build in any
thread, and a notebook shows one when it is a cell's last expression.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcmodel.records import JobSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FAILED_COLOR", "OK_COLOR", "describe", "plot_timeline"]

OK_COLOR = "#4C72B0"
FAILED_COLOR = "#C44E52"
_BLOCKED_COLOR = "#DD8452"
_MAX_LABELLED_TASKS = 80


def describe(summary: JobSummary) -> str:
    """The job's figures on one line: elapsed, sequential time, speedup, ideal makespan."""
    text = (
        f"elapsed {summary.elapsed:.3f} s · sequential {summary.busy_time:.3f} s · "
        f"speedup {summary.speedup:.2f}x"
    )
    ideal = summary.ideal_makespan
    if ideal is not None:
        text += f" · ideal makespan {ideal:.3f} s"
    return text


def _require_trace(summary: JobSummary) -> None:
    if not isinstance(summary, JobSummary):
        raise TypeError(f"summary must be a JobSummary, got {type(summary).__name__}")
    if summary.results is None:
        raise ValueError(
            "plot_timeline needs the per-task trace, and this job ran with trace=False: "
            "run it again with trace=True"
        )


def plot_timeline(summary: JobSummary, ax: Axes | None = None, *, title: str | None = None) -> Figure:
    """Draw a job's timeline: a lane per worker, a bar per task window, the queue below.

    Failed tasks are drawn in red and hatched. A dashed line marks the ideal makespan. With
    `ax=None` a new figure gets two panels, the lanes and the work queue's depth (with the
    periods a producer was blocked shaded); with an `ax`, only the lanes are drawn into it
    (handy to put two jobs side by side).

    Args:
        summary: the `JobSummary` of a job run with `trace=True`.
        ax: matplotlib axes to draw the lanes into; None for a new figure.
        title: a title line above the job's figures; None for none.

    Returns:
        The figure drawn into.

    Raises:
        TypeError: `summary` is not a `JobSummary`.
        ValueError: the job ran with `trace=False`, so there is nothing per task to draw.
    """
    _require_trace(summary)
    from matplotlib.figure import Figure

    if ax is None:
        lanes_height = min(0.32 * summary.workers, 7.0)
        fig = Figure(figsize=(10, 1.9 + lanes_height + 1.6), layout="constrained")
        lanes_ax, depth_ax = fig.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [max(lanes_height, 1.0), 1.6]}
        )
        _draw_lanes(lanes_ax, summary)
        _draw_depth(depth_ax, summary)
        header = describe(summary) if title is None else f"{title}\n{describe(summary)}"
        fig.suptitle(header, fontsize=11)
        return fig
    _draw_lanes(ax, summary)
    ax.set_title(describe(summary) if title is None else f"{title}\n{describe(summary)}", fontsize=10)
    figure = ax.get_figure()
    assert figure is not None
    return figure  # type: ignore[return-value]


def _draw_lanes(ax: Axes, summary: JobSummary) -> None:
    results = summary.results or ()
    label = len(results) <= _MAX_LABELLED_TASKS
    bar = 0.7 if summary.workers <= 60 else 1.0
    for failed in (False, True):
        by_lane: dict[int, list[tuple[float, float]]] = {}
        for result in results:
            if result.ok is failed:
                continue
            by_lane.setdefault(result.worker, []).append((result.started_at, result.duration))
        for lane, windows in by_lane.items():
            ax.broken_barh(
                windows,
                (lane - bar / 2, bar),
                facecolors=FAILED_COLOR if failed else OK_COLOR,
                edgecolors="white",
                linewidth=0.8,
                hatch="///" if failed else None,
            )
    if label:
        for result in results:
            ax.text(
                result.started_at + result.duration / 2,
                result.worker,
                str(result.task_id),
                ha="center",
                va="center",
                fontsize=8,
                color="white",
                clip_on=True,
            )
    ideal = summary.ideal_makespan
    if ideal is not None and results:
        ax.axvline(ideal, color="black", linestyle="--", linewidth=1, label=f"ideal makespan {ideal:.3f} s")
    ax.axvline(
        summary.elapsed, color="gray", linestyle=":", linewidth=1, label=f"elapsed {summary.elapsed:.3f} s"
    )
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles = (
        [Patch(facecolor=OK_COLOR, label="task ok")]
        + ([Patch(facecolor=FAILED_COLOR, hatch="///", label="task failed")] if summary.failed else [])
        + handles
    )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1), fontsize=8, frameon=False)
    ax.set_ylim(summary.workers - 0.5, -0.5)  # worker 0 on top
    if summary.workers <= 30:
        ax.set_yticks(range(summary.workers), [f"worker {w}" for w in range(summary.workers)])
    ax.set_ylabel("worker lanes")
    ax.set_xlim(0, max(summary.elapsed, 1e-9) * 1.02)
    ax.set_xlabel("seconds since the job started")
    ax.grid(axis="x", alpha=0.3)


def _draw_depth(ax: Axes, summary: JobSummary) -> None:
    samples = summary.queue_depth or ()
    times = [0.0] + [s.time for s in samples] + [summary.elapsed]
    depths = [0] + [s.depth for s in samples] + [0]
    ax.step(times, depths, where="post", color=OK_COLOR, linewidth=1.2, label="items waiting")
    for index, (start, end) in enumerate(summary.producer_blocked or ()):
        ax.axvspan(
            start,
            end,
            color=_BLOCKED_COLOR,
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
    ax.set_ylabel("work queue")
    ax.set_xlabel("seconds since the job started")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
