"""Timeline plots: one lane per worker, one bar per task window, and the queue below.

A timeline makes concurrency visible: bars that overlap in time are calls in flight at once.
The lower panel shows the work queue's depth and, shaded, the periods when a producer was
blocked on a full queue (backpressure). The title gives the job's figures: elapsed time,
sequential time (the sum of the bars), speedup, and the ideal makespan to compare with.

matplotlib is imported only when a plot is drawn, so `import pcmodel` stays light. Figures
are plain `matplotlib.figure.Figure` objects, not pyplot ones: they are safe to build in any
thread, and a notebook shows one when it is a cell's last expression, once the inline backend
is active (`%matplotlib inline`, or any import of `matplotlib.pyplot`).

Besides the timeline of one job, this module draws comparisons of several jobs
(`plot_timelines`), the sweeps of `pcmodel.sweeps` (`plot_speedup`, `plot_queue_sweep`) and
the map of the pipeline's pieces (`plot_pipeline`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pcmodel.records import JobSummary, TaskResult

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from pcmodel.sweeps import QueuePoint, WorkersPoint
    from pcmodel.workloads import Call

__all__ = [
    "CANCELLED_COLOR",
    "FAILED_COLOR",
    "HANDLER_COLOR",
    "OK_COLOR",
    "RATE_LIMITED_COLOR",
    "RETRIED_COLOR",
    "describe",
    "peak_concurrency",
    "plot_pipeline",
    "plot_queue_sweep",
    "plot_speedup",
    "plot_timeline",
    "plot_timelines",
]

OK_COLOR = "#4C72B0"
FAILED_COLOR = "#C44E52"
HANDLER_COLOR = "#55A868"
CANCELLED_COLOR = "#8C8C8C"
RETRIED_COLOR = "#1A1A1A"
RATE_LIMITED_COLOR = "#8172B3"
_BLOCKED_COLOR = "#DD8452"
_MAX_LABELLED_TASKS = 80
_TIMES = "\N{MULTIPLICATION SIGN}"


def describe(summary: JobSummary) -> str:
    """The job's figures on one line: elapsed, sequential time, speedup, ideal makespan.

    A job that retried calls, or stopped early, says so too.
    """
    text = (
        f"elapsed {summary.elapsed:.3f} s · sequential {summary.busy_time:.3f} s · "
        f"speedup {summary.speedup:.2f}x"
    )
    ideal = summary.ideal_makespan
    if ideal is not None:
        text += f" · ideal makespan {ideal:.3f} s"
    if summary.retries:
        text += f" · {summary.retries} {'retry' if summary.retries == 1 else 'retries'}"
    if summary.stop_reason is not None:
        text += f" · stopped ({summary.stop_reason}), {summary.unprocessed} unprocessed"
    return text


def _require_trace(summary: JobSummary) -> None:
    if not isinstance(summary, JobSummary):
        raise TypeError(f"summary must be a JobSummary, got {type(summary).__name__}")
    if summary.results is None:
        raise ValueError(
            "plot_timeline needs the per-task trace, and this job ran with trace=False: "
            "run it again with trace=True"
        )


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
    _require_trace(summary)
    from matplotlib.figure import Figure

    if ax is None:
        lanes_height = min(0.32 * summary.workers, 7.0)
        fig = Figure(figsize=(10, 1.9 + lanes_height + 1.6), layout="constrained")
        lanes_ax, depth_ax = fig.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [max(lanes_height, 1.0), 1.6]}
        )
        _draw_lanes(lanes_ax, summary, calls=calls)
        _draw_depth(depth_ax, summary)
        lanes_ax.set_xlabel("")  # the depth panel below carries the shared time axis's label
        header = describe(summary) if title is None else f"{title}\n{describe(summary)}"
        fig.suptitle(header, fontsize=11)
        return fig
    _draw_lanes(ax, summary, calls=calls)
    ax.set_title(describe(summary) if title is None else f"{title}\n{describe(summary)}", fontsize=10)
    figure = ax.get_figure()
    assert figure is not None
    return figure  # type: ignore[return-value]


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
        # A 429 takes no time: a marker where it came back. Turned-away calls come back within
        # microseconds of each other, so those too close to tell apart share one marker and
        # a count: nine markers on one spot would read as one. A cluster spans 4% of the
        # axis at most, room for its count before the next marker.
        clusters = _clusters([(call.worker, call.started_at) for call in limited], _span(summary) * 0.04)
        ax.plot(
            [start for _, start, _ in clusters],
            [lane for lane, _, _ in clusters],
            linestyle="none",
            marker="v",
            markersize=6,
            color=RATE_LIMITED_COLOR,
        )
        for lane, start, count in clusters:
            if count > 1:
                ax.annotate(
                    f"{count}{_TIMES}",
                    (start, lane),
                    xytext=(5, -3),  # below and right: the task labels sit above the calls
                    textcoords="offset points",
                    fontsize=8,
                    fontweight="bold",
                    color=RATE_LIMITED_COLOR,
                    va="top",
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


def _clusters(points: Sequence[tuple[int, float]], gap: float) -> list[tuple[int, float, int]]:
    """Group (lane, time) points closer than `gap` in the same lane: (lane, first time, count)."""
    clusters: list[tuple[int, float, int]] = []
    for lane, time in sorted(points):
        if clusters and clusters[-1][0] == lane and time - clusters[-1][1] < gap:
            first_lane, first, count = clusters[-1]
            clusters[-1] = (first_lane, first, count + 1)
        else:
            clusters.append((lane, time, 1))
    return clusters


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
        text = str(result.task_id) if result.attempts == 1 else f"{result.task_id} {_TIMES}{result.attempts}"
        if labels and labels[-1][0] == result.worker and result.started_at < end:
            lane, x, joined = labels[-1]
            labels[-1] = (lane, x, f"{joined},{text}")
        else:
            labels.append((result.worker, result.started_at, text))
        end = labels[-1][1] + char * (len(labels[-1][2]) + 1.5)
    return labels


def _draw_lanes(
    ax: Axes,
    summary: JobSummary,
    handler: Sequence[tuple[float, float]] | None = None,
    calls: Sequence[Call] | None = None,
) -> None:
    results = summary.results or ()
    label = len(results) <= _MAX_LABELLED_TASKS
    bar = 0.7 if summary.workers <= 60 else 1.0
    task_handles = _draw_tasks(ax, summary, bar, calls)
    if label and calls is None:
        for result in results:
            text = (
                str(result.task_id) if result.attempts == 1 else f"{result.task_id} {_TIMES}{result.attempts}"
            )
            ax.text(
                result.started_at + result.duration / 2,
                result.worker,
                text,
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

    lanes = summary.workers
    end = summary.elapsed
    handler_lanes = _handler_lanes(handler or ())
    if handler is not None:
        # Lanes below the workers: when callbacks ran. Overlapping calls (several result
        # handlers) go to separate lanes.
        for offset, windows in enumerate(handler_lanes):
            ax.broken_barh(
                [(start, stop - start) for start, stop in windows],
                (lanes + offset - bar / 2, bar),
                facecolors=HANDLER_COLOR,
                edgecolors="white",
                linewidth=0.8,
            )
        end = max([end] + [stop for _, stop in handler])
        lanes += max(len(handler_lanes), 1)
    handles, _ = ax.get_legend_handles_labels()
    handles = (
        task_handles
        + ([Patch(facecolor=HANDLER_COLOR, label="on_task_complete")] if handler is not None else [])
        + handles
    )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1), fontsize=9, frameon=False)
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


def _handler_lanes(windows: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
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
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a depth is a count of items
    ax.set_ylabel("work queue")
    ax.set_xlabel("seconds since the job started")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize=9, frameon=False)
    ax.grid(alpha=0.3)


def peak_concurrency(summary: JobSummary) -> int:
    """The most tasks that ran at the same moment, from the job's trace.

    A task that starts exactly when another finishes does not overlap it. This is a count,
    not a time, so it is a robust fact to print even about a real-clock job.

    Raises:
        TypeError: `summary` is not a `JobSummary`.
        ValueError: the job ran with `trace=False`.
    """
    _require_trace(summary)
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


def plot_timelines(
    jobs: Mapping[str, JobSummary],
    *,
    handler: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    calls: Mapping[str, Sequence[Call]] | None = None,
    sharex: bool = True,
    figures: bool = True,
) -> Figure:
    """Draw several jobs' worker lanes one above the other, on one time axis, to compare them.

    Args:
        jobs: a title for each job, mapped to its `JobSummary` (run with `trace=True`); drawn
            top to bottom in the mapping's order.
        handler: for some of the titles, the (start, end) windows of the result handler's
            callback calls (see `pcmodel.workloads.SlowCallback.windows`), drawn as one more
            lane under the workers.
        calls: for some of the titles, every call of the job (`CallLog.calls(summary)`),
            drawn inside the task windows as in `plot_timeline`.
        sharex: one time axis for every panel (True), so equal lengths mean equal times.
        figures: each panel's title gives the job's figures (`describe`); False for its
            elapsed time and the time its last call was done (when the workers were free)
            only. Use False when the designs compared do different work per task, or hold
            calls up: a save done inside the called function, or a call held up by a blocked
            loop, counts as task time, so the worse design would show the higher "speedup".

    Returns:
        The figure.

    Raises:
        ValueError: `jobs` is empty, or a job ran with `trace=False`.
    """
    if not jobs:
        raise ValueError("jobs must name at least one JobSummary, got none")
    for summary in jobs.values():
        _require_trace(summary)
    handler = handler or {}
    from matplotlib.figure import Figure

    heights = [
        0.3 * (s.workers + max(len(_handler_lanes(handler.get(title, ()))), title in handler)) + 0.8
        for title, s in jobs.items()
    ]
    fig = Figure(figsize=(10, sum(heights) + 0.4), layout="constrained")
    axes = fig.subplots(len(jobs), 1, sharex=sharex, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (title, summary) in zip(axes[:, 0], jobs.items(), strict=True):
        _draw_lanes(ax, summary, handler.get(title), (calls or {}).get(title))
        figures_text = describe(summary) if figures else _elapsed_and_calls_done(summary)
        ax.set_title(f"{title}: {figures_text}", fontsize=11, loc="left")
    if sharex:
        end = max(
            max([s.elapsed] + [stop for _, stop in handler.get(title, ())]) for title, s in jobs.items()
        )
        for ax in axes[:-1, 0]:
            ax.set_xlabel("")
        axes[0, 0].set_xlim(0, max(end, 1e-9) * 1.02)
    return fig


def _elapsed_and_calls_done(summary: JobSummary) -> str:
    """The job's elapsed time, and when its last task was done: the workers' part of it."""
    done = max((r.finished_at for r in summary.results or ()), default=0.0)
    return f"elapsed {summary.elapsed:.3f} s · calls done at {done:.3f} s"


def plot_speedup(points: Sequence[WorkersPoint], *, title: str | None = None) -> Figure:
    """Draw speedup against the number of workers, from `pcmodel.sweeps.sweep_workers`.

    Three references frame the measured curve: perfect scaling (speedup = workers), the ideal
    greedy schedule of the same tasks, and the ceiling no pool can pass: the sequential time
    over the longest task, since a job cannot end before its longest task does.

    Args:
        points: the sweep, one point per pool size.
        title: a title above the plot; None for a default one.

    Returns:
        The figure.
    """
    if not points:
        raise ValueError("points must hold at least one WorkersPoint, got none")
    from matplotlib.figure import Figure

    ordered = sorted(points, key=lambda p: p.workers)
    workers = [p.workers for p in ordered]
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(workers, workers, color="gray", linestyle=":", label="perfect: speedup = workers")
    # Wide and pale, so the measured curve stays visible where the two coincide.
    ax.plot(
        workers,
        [p.ideal_speedup for p in ordered],
        color="black",
        alpha=0.2,
        linewidth=7,
        solid_capstyle="round",
        label="ideal greedy schedule",
    )
    ax.plot(workers, [p.speedup for p in ordered], "o-", color=OK_COLOR, label="measured (virtual clock)")
    ceiling = max(p.ideal_speedup for p in ordered)
    ax.axhline(ceiling, color=FAILED_COLOR, linewidth=1, alpha=0.7, label=f"ceiling {ceiling:.2f}x")
    ax.set_ylim(0, max(ceiling, 1.0) * 1.25)
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup (sequential time / elapsed)")
    ax.set_title(title or "Speedup against the number of workers", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_queue_sweep(sweeps: Mapping[str, Sequence[QueuePoint]], *, title: str | None = None) -> Figure:
    """Draw what a work queue's capacity costs and saves, from `pcmodel.sweeps.sweep_queue_size`.

    Three panels share the capacity axis: memory (peak requests held and the measured peak
    memory), the producer's blocked time, and the requests' mean wait in the queue and mean
    latency from arrival to done. The sizes measured are evenly spaced, each with its tick, and
    an unbounded queue (`queue_size=0`) is drawn at the right end, as "inf".

    Args:
        sweeps: a label (the kind of traffic) mapped to its sweep.
        title: a title above the panels; None for a default one.

    Returns:
        The figure.
    """
    if not sweeps:
        raise ValueError("sweeps must name at least one sweep, got none")
    from matplotlib.figure import Figure

    bounded = sorted({p.queue_size for points in sweeps.values() for p in points if p.queue_size})
    sizes = [*bounded, 0] if any(not p.queue_size for points in sweeps.values() for p in points) else bounded
    # One evenly spaced place per size measured, each with its tick: on a log axis 16 and 20
    # sat too close to label both, and the size that matches a burst is the one to read.
    where = {size: index for index, size in enumerate(sizes)}

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    memory_ax, wait_ax, latency_ax = fig.subplots(1, 3, sharex=True)
    colors = [OK_COLOR, _BLOCKED_COLOR, HANDLER_COLOR, FAILED_COLOR]
    for index, (label, points) in enumerate(sweeps.items()):
        color = colors[index % len(colors)]
        ordered = sorted(points, key=lambda p: where[p.queue_size])
        x = [where[p.queue_size] for p in ordered]
        memory_ax.plot(x, [p.peak_memory / 1e6 for p in ordered], "o-", color=color, label=label)
        wait_ax.plot(x, [p.producer_wait for p in ordered], "o-", color=color, label=label)
        latency_ax.plot(
            x, [p.mean_queue_wait for p in ordered], "o-", color=color, label=f"{label}: in queue"
        )
        latency_ax.plot(
            x,
            [p.mean_latency for p in ordered],
            "s--",
            color=color,
            alpha=0.6,
            label=f"{label}: arrival to done",
        )
    memory_ax.set_ylabel("peak memory (MB)", fontsize=11)
    memory_ax.set_title("memory held", fontsize=12)
    wait_ax.set_ylabel("seconds", fontsize=11)
    wait_ax.set_title("producer blocked (total)", fontsize=12)
    latency_ax.set_ylabel("seconds", fontsize=11)
    latency_ax.set_title("request wait (mean)", fontsize=12)
    for ax in (memory_ax, wait_ax, latency_ax):
        ax.set_xticks(range(len(sizes)), [str(size) if size else "inf" for size in sizes])
        ax.tick_params(labelsize=10)
        ax.set_xlabel("queue_size (evenly spaced)", fontsize=11)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=10)
    # Room above the curves for the four-line legend, which would otherwise cover one.
    latency_ax.set_ylim(0, latency_ax.get_ylim()[1] * 1.7)
    latency_ax.legend(fontsize=10, loc="upper left")
    fig.suptitle(title or "What the work queue's capacity costs and saves", fontsize=13)
    return fig


def plot_pipeline() -> Figure:
    """Draw the map of pcmodel's pieces: producers, work queue, workers, result queue, handler.

    The controller, which starts and stops every piece, frames the pipeline; each box names
    the module that holds the piece.

    Returns:
        The figure.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 110)
    ax.set_ylim(0, 46)
    ax.axis("off")

    def box(x: float, y: float, w: float, h: float, text: str, color: str, *, size: float = 9) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x, y), w, h, boxstyle="round,pad=0.6", facecolor=color, edgecolor="#333333", linewidth=1
            )
        )
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(start: tuple[float, float], end: tuple[float, float], text: str = "") -> None:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#333333"))
        if text:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 1.6, text, ha="center", fontsize=8)

    def queue(x: float, y: float, slots: int, filled: int, label: str) -> None:
        for slot in range(slots):
            color = "#F2C894" if slot >= slots - filled else "white"
            ax.add_patch(
                FancyBboxPatch(
                    (x + slot * 2.6, y),
                    2.2,
                    5,
                    boxstyle="square,pad=0",
                    facecolor=color,
                    edgecolor="#333333",
                    linewidth=0.8,
                )
            )
        ax.text(x + slots * 1.3, y - 2.6, label, ha="center", va="top", fontsize=8.5)

    ax.add_patch(
        FancyBboxPatch(
            (1, 1),
            108,
            36,
            boxstyle="round,pad=0.4",
            facecolor="#F4F4F4",
            edgecolor="#999999",
            linestyle="--",
        )
    )
    ax.text(
        3,
        34.5,
        "controller.py: checks the arguments, wires the queues, starts every piece in a TaskGroup,\n"
        "waits for the drain, stops the pieces, builds the JobSummary",
        fontsize=8.5,
        va="top",
        color="#444444",
    )
    box(3, 15, 12, 8, "params\n(iterable or\nasync iterable)", "white", size=8)
    box(20, 15, 12, 8, "producer(s)\nproducer.py", "#DCE6F2")
    queue(37, 16.5, 6, 4, "work queue\n(bounded: queue_size)")
    lane_y = [24.0, 15.5, 7.0]  # worker 0 on top, as in the timelines
    for lane, y in enumerate(lane_y):
        box(59, y, 11, 5, f"worker {lane}\nworker.py", "#C9D9EE", size=8)
    ax.text(64.5, 4.2, "workers = N", ha="center", fontsize=8)
    queue(75, 16.5, 5, 2, "result queue")
    box(91, 15, 15, 8, "result handler\nresult_handler.py", "#D5EBD9")
    arrow((15.8, 19), (19.4, 19))
    arrow((32.6, 19), (36.4, 19))
    ax.text(34.5, 25.5, "put: waits\nwhen full", ha="center", fontsize=8)
    for y in lane_y:
        arrow((53, 19), (58.4, y + 2.5))
        arrow((70.6, y + 2.5), (74.4, 19))
    # Workers put a row of fields (records.Row); the handler builds the TaskResult from it.
    ax.text(75, 25.5, "row of fields\n(value or error, times)", ha="left", fontsize=8)
    arrow((88.4, 19), (90.4, 19))
    box(86, 40, 22, 4.5, "on_task_complete(result)", "#D5EBD9", size=8.5)
    box(52, 40, 28, 4.5, "JobSummary -> on_job_complete(summary)", "#EFE3C8", size=8.5)
    arrow((98.5, 23.8), (97, 39.3))
    ax.text(96.8, 31.5, "builds a\nTaskResult", ha="right", va="center", fontsize=8)
    arrow((55, 36.8), (60, 39.3))
    ax.text(64.5, 31.5, "function(params)", ha="center", fontsize=8, style="italic")
    fig.suptitle("pcmodel: the producer-consumer pipeline", fontsize=12)
    return fig
