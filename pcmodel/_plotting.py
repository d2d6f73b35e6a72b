"""What every plot of a job shares: the palette, the trace check, the job's figures on one line.

The plot modules (`timeline`, `_lanes`, `comparison`, `sweep_plots`) take their colours from
here, so a task that failed is the same red on every figure, and they check a summary with
one function, so every plot refuses a job run with `trace=False` with the same message.
Nothing here imports matplotlib.
"""

from __future__ import annotations

from pcmodel.records import JobSummary

__all__ = [
    "BLOCKED_COLOR",
    "CANCELLED_COLOR",
    "FAILED_COLOR",
    "HANDLER_COLOR",
    "LIMIT_COLOR",
    "OK_COLOR",
    "RATE_LIMITED_COLOR",
    "RETRIED_COLOR",
    "describe",
    "require_trace",
]

# One palette for every figure, so a colour means the same on each.
OK_COLOR = "#4C72B0"
FAILED_COLOR = "#C44E52"
HANDLER_COLOR = "#55A868"
CANCELLED_COLOR = "#8C8C8C"
RETRIED_COLOR = "#1A1A1A"
RATE_LIMITED_COLOR = "#8172B3"
BLOCKED_COLOR = "#DD8452"  # a producer blocked on a full queue; a second sweep's curve
LIMIT_COLOR = "#B35806"  # the concurrency limit's step line, over the lanes


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


def require_trace(summary: JobSummary) -> None:
    """Refuse a summary that is not a `JobSummary`, or that kept no per-task trace."""
    if not isinstance(summary, JobSummary):
        raise TypeError(f"summary must be a JobSummary, got {type(summary).__name__}")
    if summary.results is None:
        raise ValueError(
            "plot_timeline needs the per-task trace, and this job ran with trace=False: "
            "run it again with trace=True"
        )
