"""A job's worker lanes, drawn into one matplotlib `Axes`: the upper panel of every timeline.

One lane per worker, worker 0 on top, and a bar per task window, coloured by how the task
ended; retried tasks outlined; with `calls=`, each call as a thinner bar inside its window and
each 429 answer as a marker; each drop of the summary (a 429 or a timeout) as a marker; the
concurrency limit, when it moved, as a step line on an axis of its own on the right (see
`pcmodel._congestion`); task labels where there is room; the ideal makespan and the elapsed
time as vertical lines; optionally, lanes for the result handler's callbacks; and the legend
beside the panel. `plot_timeline` (one job) and `plot_timelines` (several, one above
the other) both draw their lanes with `draw_lanes`.

matplotlib is imported inside the functions, only when a figure is drawn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pcmodel._congestion import (
    DROP_STYLES,
    draw_drops,
    draw_limit,
    limit_axis_width,
    limit_changed,
    mark_clusters,
)
from pcmodel._plotting import (
    CANCELLED_COLOR,
    FAILED_COLOR,
    HANDLER_COLOR,
    OK_COLOR,
    RATE_LIMITED_COLOR,
    RETRIED_COLOR,
)
from pcmodel.records import JobSummary, TaskResult

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

    from pcmodel.workloads import Call

__all__ = ["draw_lanes", "handler_lanes"]

_MAX_LABELLED_TASKS = 80
_TIMES = "\N{MULTIPLICATION SIGN}"


def _task_label(result: TaskResult) -> str:
    """A task's label: its id, followed by the number of attempts if it took more than one."""
    return str(result.task_id) if result.attempts == 1 else f"{result.task_id} {_TIMES}{result.attempts}"


def _task_kind(result: TaskResult) -> str:
    if result.error is None:
        return "ok"
    return "cancelled" if isinstance(result.error, asyncio.CancelledError) else "failed"


# Task bars: kind -> (color, hatch, legend label).
_TASK_STYLES = {
    "ok": (OK_COLOR, None, "task ok"),
    "failed": (FAILED_COLOR, "///", "task failed"),
    "cancelled": (CANCELLED_COLOR, "\\\\\\", "task cancelled (fail_fast)"),
}
# Call bars (with `calls=`): outcome -> (color, hatch, legend label).
_CALL_STYLES = {
    "ok": (OK_COLOR, None, "call ok"),
    "failed": (FAILED_COLOR, None, "call failed"),
    "cut off": (FAILED_COLOR, "xxxx", "call cut off (timeout or cancel)"),
}


def _draw_tasks(ax: Axes, summary: JobSummary, bar: float, calls: Sequence[Call] | None) -> list[Artist]:
    """Draw the task bars (and each call inside them); return the legend handles they need."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    results = summary.results or ()
    detailed = calls is not None
    handles: list[Artist] = []
    for kind, (color, hatch, name) in _TASK_STYLES.items():
        by_lane: dict[int, list[tuple[float, float]]] = {}
        for result in results:
            if _task_kind(result) == kind:
                by_lane.setdefault(result.worker, []).append((result.started_at, result.duration))
        for lane, windows in by_lane.items():
            ax.broken_barh(
                windows,
                (lane - bar / 2, bar),
                facecolors=color,
                alpha=0.3 if detailed else 1.0,
                edgecolors="white",
                linewidth=0.8,
                hatch=hatch,
            )
        if by_lane or kind == "ok":
            label = f"{name} (pale: waiting)" if detailed and kind == "ok" else name
            handles.append(Patch(facecolor=color, alpha=0.3 if detailed else 1.0, hatch=hatch, label=label))
    retried = [r for r in results if r.attempts > 1]
    for result in retried:
        # An outline: the bar's colour still says how the task ended.
        ax.add_patch(
            Rectangle(
                (result.started_at, result.worker - bar / 2),
                result.duration,
                bar,
                fill=False,
                edgecolor=RETRIED_COLOR,
                linewidth=1.5,
            )
        )
    if retried:
        handles.append(
            Patch(
                facecolor="none",
                edgecolor=RETRIED_COLOR,
                linewidth=1.5,
                label=f"retried ({_TIMES}n: attempts)",
            )
        )
    if calls is None:
        return handles
    # Each call as a thinner bar inside its task's window: the gaps between them are waits,
    # for a slot under the rate limit or for a retry's backoff.
    inner = bar * 0.5
    for outcome, (color, hatch, name) in _CALL_STYLES.items():
        by_lane = {}
        for call in calls:
            if call.outcome == outcome:
                by_lane.setdefault(call.worker, []).append(
                    (call.started_at, call.finished_at - call.started_at)
                )
        for lane, windows in by_lane.items():
            ax.broken_barh(
                windows,
                (lane - inner / 2, inner),
                facecolors=color,
                edgecolors="white",
                linewidth=0.5,
                hatch=hatch,
            )
        if by_lane:
            handles.append(Patch(facecolor=color, hatch=hatch, label=name))
    limited = [call for call in calls if call.outcome == "rate-limited"]
    if limited:
        # A 429 takes no time: a marker where it came back, those too close to tell apart
        # sharing one with a count.
        mark_clusters(
            ax,
            [(call.worker, call.started_at) for call in limited],
            _span(summary),
            marker="v",
            color=RATE_LIMITED_COLOR,
        )
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="v",
                color=RATE_LIMITED_COLOR,
                label=f"429: wait Retry-After ({_TIMES}n: n at once)",
            )
        )
    return handles


def _span(summary: JobSummary) -> float:
    """The length of a job's time axis, to size gaps and labels by."""
    return max(summary.elapsed, 1e-9)


def _window_labels(results: Sequence[TaskResult], span: float) -> list[tuple[int, float, str]]:
    """Task labels at their windows' starts, (lane, x, text), joined where they would overprint.

    With calls drawn, a label sits at its window's start, in small print; windows that start
    a few milliseconds apart (workers turned away by a 429 race through the queue) would
    print their labels on top of each other, so those share one label: "11,12,13".
    """
    char = span * 0.0068  # one character of 6.5-point text on a 10-inch-wide timeline
    labels: list[tuple[int, float, str]] = []
    end = float("-inf")
    for result in sorted(results, key=lambda r: (r.worker, r.started_at, r.task_id)):
        text = _task_label(result)
        if labels and labels[-1][0] == result.worker and result.started_at < end:
            lane, x, joined = labels[-1]
            labels[-1] = (lane, x, f"{joined},{text}")
        else:
            labels.append((result.worker, result.started_at, text))
        end = labels[-1][1] + char * (len(labels[-1][2]) + 1.5)
    return labels


def draw_lanes(
    ax: Axes,
    summary: JobSummary,
    handler: Sequence[tuple[float, float]] | None = None,
    calls: Sequence[Call] | None = None,
) -> None:
    """Draw `summary`'s worker lanes into `ax`, with `handler`'s callback windows in lanes below.

    Args:
        ax: the axes to draw into; its legend, limits, ticks and labels are set too.
        summary: a job run with `trace=True` (the caller checks).
        handler: (start, end) windows of the result handler's callback calls; None for no lane.
        calls: every call of the job, drawn inside the task windows; None for tasks only.
    """
    results = summary.results or ()
    label = len(results) <= _MAX_LABELLED_TASKS
    bar = 0.7 if summary.workers <= 60 else 1.0
    task_handles = _draw_tasks(ax, summary, bar, calls)
    # With the calls drawn, their 429s are marked already: only the timeouts are left.
    kinds = ("timeout",) if calls is not None else tuple(DROP_STYLES)
    task_handles += draw_drops(ax, summary.drops or (), _span(summary), summary.workers, kinds=kinds)
    if label and calls is None:
        for result in results:
            ax.text(
                result.started_at + result.duration / 2,
                result.worker,
                _task_label(result),
                ha="center",
                va="center",
                fontsize=8,
                color="white",
                clip_on=True,
            )
    elif label:
        # Above the calls, at the window's start: the calls fill the middle.
        for lane, x, text in _window_labels(results, _span(summary)):
            ax.text(
                x,
                lane - bar / 2,
                f" {text}",
                ha="left",
                va="top",
                fontsize=6.5,
                color="#222222",
                clip_on=True,
            )
    ideal = summary.ideal_makespan
    if ideal is not None and results:
        ax.axvline(ideal, color="black", linestyle="--", linewidth=1, label=f"ideal makespan {ideal:.3f} s")
    ax.axvline(
        summary.elapsed, color="gray", linestyle=":", linewidth=1, label=f"elapsed {summary.elapsed:.3f} s"
    )
    from matplotlib.patches import Patch
    from matplotlib.transforms import offset_copy

    lanes = summary.workers
    end = summary.elapsed
    callback_lanes = handler_lanes(handler or ())
    if handler is not None:
        # Lanes below the workers: when callbacks ran. Overlapping calls (several result
        # handlers) go to separate lanes.
        for offset, windows in enumerate(callback_lanes):
            ax.broken_barh(
                [(start, stop - start) for start, stop in windows],
                (lanes + offset - bar / 2, bar),
                facecolors=HANDLER_COLOR,
                edgecolors="white",
                linewidth=0.8,
            )
        end = max([end] + [stop for _, stop in handler])
        lanes += max(len(callback_lanes), 1)
    handles, _ = ax.get_legend_handles_labels()
    handles = (
        task_handles
        + ([Patch(facecolor=HANDLER_COLOR, label="on_task_complete")] if handler is not None else [])
        + handles
    )
    legend_at = ax.transAxes
    if limit_changed(summary.limit_changes):
        changes = summary.limit_changes or ()
        handles.insert(len(task_handles), draw_limit(ax, changes, summary.elapsed, lanes))
        # The limit's axis takes the right edge: the legend moves past its ticks and label.
        figure = ax.get_figure()
        assert figure is not None
        width = limit_axis_width(changes, lanes)
        # offset_copy only reads the figure's dpi, which a SubFigure has too.
        legend_at = offset_copy(ax.transAxes, fig=figure, x=width, units="points")  # type: ignore[arg-type]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.005, 1),
        bbox_transform=legend_at,
        fontsize=9,
        frameon=False,
    )
    ax.set_ylim(lanes - 0.5, -0.5)  # worker 0 on top
    if lanes <= 30:
        names = [f"worker {w}" for w in range(summary.workers)]
        if handler is not None:
            extra = lanes - summary.workers
            names += ["handler"] if extra == 1 else [f"handler {n}" for n in range(extra)]
        ax.set_yticks(range(lanes), names)
    ax.set_ylabel("worker lanes")
    ax.set_xlim(0, max(end, 1e-9) * 1.02)
    ax.set_xlabel("seconds since the job started")
    ax.grid(axis="x", alpha=0.3)


def handler_lanes(windows: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """Spread callback windows over as few lanes as possible, none overlapping in a lane."""
    lanes: list[list[tuple[float, float]]] = []
    for start, stop in sorted(windows):
        for lane in lanes:
            if lane[-1][1] <= start + 1e-9:
                lane.append((start, stop))
                break
        else:
            lanes.append([(start, stop)])
    return lanes
