"""Several jobs compared: their worker lanes one above the other, on one time axis.

Where `plot_timeline` reads one job, `plot_timelines` puts two or more side by side in time:
the same work with more workers, or a slow callback in the worker against one in the result
handler (drawn as lanes of its own under the workers). Equal lengths mean equal times, so the
job that ends first is the one whose bars stop first. Import it from `pcmodel.timeline`, the
one import path of every plot.

matplotlib is imported inside the function, only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pcmodel._lanes import draw_lanes, handler_lanes
from pcmodel._plotting import describe, require_trace
from pcmodel.records import JobSummary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pcmodel.workloads import Call

__all__ = ["plot_timelines"]


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
        require_trace(summary)
    handler = handler or {}
    from matplotlib.figure import Figure

    heights = [
        0.3 * (s.workers + max(len(handler_lanes(handler.get(title, ()))), title in handler)) + 0.8
        for title, s in jobs.items()
    ]
    fig = Figure(figsize=(10, sum(heights) + 0.4), layout="constrained")
    axes = fig.subplots(len(jobs), 1, sharex=sharex, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (title, summary) in zip(axes[:, 0], jobs.items(), strict=True):
        draw_lanes(ax, summary, handler.get(title), (calls or {}).get(title))
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
