"""The one place a `JobSummary` is added up, for a finished job and for one still running.

The controller builds a job's summary here whatever carried its items (one process or many,
see `pcmodel.transport`), and `pcmodel.widgets.summary_so_far` builds the live one here from
the results that have come in: the counts cannot drift apart between the three.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from pcmodel.adaptive import drops_of_results
from pcmodel.producer import ProducerReport
from pcmodel.records import Drop, JobSummary, LimitChange, TaskResult
from pcmodel.stopping import JobControl

__all__ = ["Tally", "build_summary"]


@dataclass(slots=True)
class Tally:
    """The counts of a job's outcomes, however they were counted."""

    tasks: int = 0
    failed: int = 0
    busy: float = 0.0
    """Sum of the tasks' durations."""
    retries: int = 0
    cancelled: int = 0
    """Calls a fail-fast stop cancelled; a CancelledError a function raised itself is not one."""

    def count(self, error: BaseException | None, started: float, finished: float, attempts: int) -> None:
        """Count one outcome (not whether a stop cancelled it: see `cancelled`)."""
        self.tasks += 1
        self.busy += finished - started
        self.retries += max(attempts - 1, 0)
        if error is not None:
            self.failed += 1

    @classmethod
    def of_results(cls, results: Iterable[TaskResult]) -> Tally:
        """Count `results` alone. They cannot say which CancelledError was a stop's, so every
        one counts as cancelled."""
        tally = cls()
        for result in results:
            tally.count(result.error, result.started_at, result.finished_at, result.attempts)
            tally.cancelled += isinstance(result.error, asyncio.CancelledError)
        return tally


def build_summary(
    tally: Tally,
    *,
    elapsed: float,
    workers: int,
    clock: str,
    results: Iterable[TaskResult] | None,
    trace: bool,
    queue_size: int = 0,
    producers: Sequence[ProducerReport] = (),
    callback_errors: int = 0,
    control: JobControl | None = None,
    kind: type[JobSummary] = JobSummary,
    limit_changes: Sequence[LimitChange] | None = None,
    drops: Sequence[Drop] | None = None,
    **extras: Any,
) -> JobSummary:
    """Add up a job's counts into its summary.

    Args:
        tally: the outcomes' counts.
        elapsed: seconds from the job's start to its end (or to the latest finish so far).
        workers: the worker lanes.
        clock: "real" or "virtual".
        results: every result (sorted here by task id), or None without trace.
        trace: whether the job kept a trace (the blocked periods are None without one).
        queue_size: the work queue's capacity.
        producers: what each producer reported.
        callback_errors: exceptions `on_task_complete` raised.
        control: the job's stop state: why it stopped and what it left; None for a live view.
        kind: the summary's type; `extras` are the fields only that type has.
        limit_changes: every change of the concurrency limit; None for a fixed pool (one
            "start" change at its size).
        drops: every rate-limited or timed-out attempt; None to read them from `results`
            (exact when each task made one attempt).
    """
    ordered = tuple(sorted(results, key=itemgetter(0))) if results is not None else None
    if trace:
        if limit_changes is None:
            limit_changes = (LimitChange(0.0, workers, "start"),)
        if drops is None:  # nothing failed, nothing dropped: no need to read every result
            drops = drops_of_results(ordered or ()) if tally.failed else ()
    blocked = sorted(period for report in producers for period in (report.blocked or ()))
    unprocessed_params = control.unprocessed_params if control is not None else None
    drained = control.drained if control is not None else None
    return kind(
        tasks=tally.tasks,
        succeeded=tally.tasks - tally.failed,
        failed=tally.failed,
        elapsed=elapsed,
        busy_time=tally.busy,
        workers=workers,
        max_queue_depth=max((report.max_depth for report in producers), default=0),
        producer_wait=sum(report.wait for report in producers),
        callback_errors=callback_errors,
        queue_size=queue_size,
        clock=clock,
        results=ordered,
        producer_blocked=tuple(blocked) if trace else None,
        retries=tally.retries,
        cancelled=tally.cancelled,
        stop_reason=control.reason if control is not None else None,
        error=control.error if control is not None else None,
        unprocessed=control.unprocessed if control is not None else 0,
        unprocessed_params=tuple(unprocessed_params) if unprocessed_params is not None else None,
        drained=tuple(drained) if drained is not None else None,
        limit_changes=tuple(limit_changes) if trace and limit_changes is not None else None,
        drops=tuple(drops) if trace and drops is not None else None,
        **extras,
    )
