"""The sweeps drawn: speedup against workers, and what a work queue's capacity costs and saves.

`pcmodel.sweeps` runs one job many times with one knob turned and returns plain records;
`plot_speedup` and `plot_queue_sweep` draw them, the measured curve framed by the references
that explain it. Import them from `pcmodel.timeline`, the one import path of every plot.

matplotlib is imported inside the functions, only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pcmodel._plotting import BLOCKED_COLOR, FAILED_COLOR, HANDLER_COLOR, OK_COLOR

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pcmodel.sweeps import QueuePoint, WorkersPoint

__all__ = ["plot_queue_sweep", "plot_speedup"]


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
    colors = [OK_COLOR, BLOCKED_COLOR, HANDLER_COLOR, FAILED_COLOR]
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
