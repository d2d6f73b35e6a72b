"""Read-only records: what a job reports about each task and about itself.

`TaskResult` is built once for every task, on the hot path, so it is a named tuple built
straight from a tuple (about 0.1 us here, against 0.2 us for a slotted dataclass and 1.4 us
for a frozen one). `JobSummary` is built once per job, so it can afford to be a frozen
dataclass with derived properties.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "DepthSample",
    "Drop",
    "JobSummary",
    "LimitChange",
    "LiveStats",
    "Row",
    "TaskResult",
    "ideal_makespan",
    "queue_depth",
]

Row = tuple[Any, ...]
"""A `TaskResult`'s fields as a plain tuple, in field order: how a result travels from its
worker to the result handler, which builds the `TaskResult` only if a callback or the trace
needs one (`tuple.__new__(TaskResult, row)`)."""


class TaskResult(NamedTuple):
    """The outcome of one task: its params, its value or its error, and when it ran.

    Times are seconds since the job started, on the job's clock (real or virtual).
    """

    task_id: int
    """0-based position of the item in production order."""
    params: Any
    """The item the function was called with."""
    value: Any
    """What the function returned, or None if it raised."""
    error: BaseException | None
    """The exception the function raised, or None if it returned."""
    worker: int
    """0-based index of the worker that ran the task."""
    enqueued_at: float
    """When the producer put the item on the work queue."""
    started_at: float
    """When a worker took the item (a wait for the rate limit and any retries are part of the task)."""
    finished_at: float
    """When the function returned or raised."""
    attempts: int = 1
    """How many calls it took, retries included."""

    @property
    def ok(self) -> bool:
        """True if the function returned, False if it raised."""
        return self.error is None

    @property
    def duration(self) -> float:
        """Seconds the function ran: `finished_at - started_at`."""
        return self.finished_at - self.started_at

    @property
    def wait(self) -> float:
        """Seconds the item waited in the work queue: `started_at - enqueued_at`."""
        return self.started_at - self.enqueued_at


class DepthSample(NamedTuple):
    """The work queue's depth just after an item entered or left it."""

    time: float
    """Seconds since the job started."""
    depth: int
    """Items waiting in the work queue at that time."""


class LimitChange(NamedTuple):
    """A change of how many calls a job lets run at once: adaptive, or by hand."""

    time: float
    """Seconds since the job started."""
    limit: int
    """The limit from then on."""
    cause: str
    """Why: "start" (the job's first limit), "grow" (calls succeeded while the pool was busy),
    "congestion" (an attempt was rate limited or timed out), "gradient" (latency rose or fell),
    or "set_workers" (set by hand on the running job)."""


class Drop(NamedTuple):
    """An attempt the API turned away (rate limited) or that ran out of time."""

    time: float
    """Seconds since the job started, when the attempt ended."""
    task_id: int
    """The task the attempt belonged to (a retried task can have several drops)."""
    worker: int
    """The worker that made the attempt."""
    kind: str
    """ "rate_limited" (HTTP 429 or 503, or an error marked as congestion) or "timeout"."""


def ideal_makespan(durations: Iterable[float], workers: int) -> float:
    """The makespan of the ideal greedy schedule of `durations` on `workers` lanes.

    Each task, in order, goes to the lane that frees up first, with no overhead at all: what
    a perfect producer-consumer pipeline with all work available at the start achieves.

    Args:
        durations: task durations in seconds, in production order.
        workers: number of lanes (>= 1).

    Returns:
        The time the last lane finishes, 0.0 for no tasks.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    lanes = [0.0] * workers
    for duration in durations:
        # The lane that frees up first takes the next task.
        heapq.heapreplace(lanes, lanes[0] + duration)
    return max(lanes)


def queue_depth(
    results: Iterable[TaskResult], drained: Iterable[tuple[float, float]] = ()
) -> tuple[DepthSample, ...]:
    """The work queue's depth over time, rebuilt from the tasks' enqueue and start times.

    An item is in the work queue from the moment a producer puts it (`enqueued_at`) to the
    moment a worker takes it (`started_at`), so the trace alone gives the depth at any time:
    nothing needs to be sampled while the job runs. Several puts and takes can happen at the
    same instant (often, on the virtual clock); the sample for that instant is the depth once
    they are all done.

    Args:
        results: the job's `TaskResult`s, in any order.
        drained: (enqueued_at, stopped_at) of the items a stop took back out of the queue.

    Returns:
        One `DepthSample` per instant at which an item entered or left the queue, in time
        order.
    """
    changes: dict[float, int] = {}
    for result in results:
        changes[result.enqueued_at] = changes.get(result.enqueued_at, 0) + 1
        changes[result.started_at] = changes.get(result.started_at, 0) - 1
    for entered, left in drained:
        changes[entered] = changes.get(entered, 0) + 1
        changes[left] = changes.get(left, 0) - 1
    samples = []
    depth = 0
    for time in sorted(changes):
        depth += changes[time]
        samples.append(DepthSample(time, depth))
    return tuple(samples)


@dataclass(frozen=True, slots=True)
class LiveStats:
    """A running job at a glance (`JobHandle.stats()`); a transport's `counts()` gives the
    figures it knows, with `recent_rate` and `elapsed` left at 0."""

    in_flight: int
    """Tasks being called now (retries and their waits included)."""
    queued: int
    """Items waiting in the work queue for a worker."""
    done: int
    """Tasks finished, succeeded or failed."""
    failed: int
    """Tasks that failed."""
    limit: int
    """The most calls allowed in flight now: the adaptive limit, or the pool's size."""
    workers: int
    """Worker tasks started so far (an adaptive pool starts them as its limit first grows)."""
    recent_rate: float
    """Tasks finished per second since the previous `stats()` call (since the start, the
    first time)."""
    paused: bool
    """True while paused by `pause()`."""
    elapsed: float
    """Seconds since the job started, on its clock (0.0 before it starts)."""


@dataclass(frozen=True, slots=True)
class JobSummary:
    """What a whole job did: counts, times, and (with `trace=True`) every task.

    `busy_time` is the sum of every task's duration, the time the job would take with one
    worker and no overhead; `speedup` compares it with `elapsed`.
    """

    tasks: int
    """Items processed (succeeded + failed)."""
    succeeded: int
    """Tasks whose function returned."""
    failed: int
    """Tasks whose function raised."""
    elapsed: float
    """Seconds from the job's start until the last result was handled."""
    busy_time: float
    """Sum of task durations in seconds: the sequential time."""
    workers: int
    """Size of the worker pool (for a pool that changed size while it ran, an adaptive one or
    one resized through its `JobHandle`: the most worker lanes it started)."""
    max_queue_depth: int
    """Most items ever waiting in the work queue at once."""
    producer_wait: float
    """Seconds producers spent blocked on a full work queue (summed over producers)."""
    callback_errors: int
    """Exceptions raised by `on_task_complete`, or by `on_job_complete` (counted, never fatal:
    a failing `on_job_complete` is logged, and the summary it was given is returned with this
    count one higher)."""
    queue_size: int = 0
    """Capacity of the work queue (0: unbounded)."""
    clock: str = "real"
    """The clock the job ran on: "real" or "virtual"."""
    results: tuple[TaskResult, ...] | None = field(default=None, repr=False)
    """Every `TaskResult` in task-id order; None unless the job ran with `trace=True`."""
    producer_blocked: tuple[tuple[float, float], ...] | None = field(default=None, repr=False)
    """(start, end) of every period a producer waited on a full queue; None unless `trace=True`."""
    retries: int = 0
    """Attempts beyond the first, summed over all tasks."""
    cancelled: int = 0
    """Calls in flight cancelled by a fail-fast stop (counted in `failed` too)."""
    stop_reason: str | None = None
    """Why the job ended early: "stop" (requested), "fail_fast", "source_error"; None if it ran out of input."""
    error: BaseException | None = None
    """The exception that ended the job early: the first failure, or the source's error."""
    unprocessed: int = 0
    """Items taken from the sources but never started, because the job stopped early."""
    unprocessed_params: tuple[Any, ...] | None = field(default=None, repr=False)
    """The params of those items, in queue order; None unless `trace=True`."""
    drained: tuple[tuple[float, float], ...] | None = field(default=None, repr=False)
    """(enqueued_at, stopped_at) of each item a stop took back out of the work queue; None
    unless `trace=True`."""
    abandoned_threads: int = 0
    """Calls of a plain function given up while still running in their thread (a timeout, or a
    stop that cancelled them). Threads cannot be killed: each such call goes on until it
    returns by itself, in a daemon thread that neither the job nor the program waits for."""
    limit_changes: tuple[LimitChange, ...] | None = field(default=None, repr=False)
    """Every change of the most calls allowed in flight, in time order, from the "start" one:
    the adaptive limit's steps (`workers=pcmodel.Adaptive(...)`) and changes made by hand on
    the running job (`JobHandle.set_workers`); None unless `trace=True`."""
    drops: tuple[Drop, ...] | None = field(default=None, repr=False)
    """Every attempt that was rate limited (see `pcmodel.adaptive.is_rate_limited`) or timed
    out, retried ones included, in time order, in any pool; None unless `trace=True`."""
    skipped: int = 0
    """Items the job's ledger skipped: already recorded (or, with `rerun="failed"`, not
    recorded as failed), or repeating the key of an earlier item of the same run (the ledger
    keeps one outcome per key, so that item runs once). Not counted in `tasks`."""
    dead_letters: int = 0
    """Failed items that used every attempt they were allowed (1 + retries): each one was
    handed to `on_retry_exhausted`, and a ledger marks it. Calls a stop cancelled (fail-fast,
    or `JobHandle.stop(graceful=False)`) are not among them: they have no outcome, and a
    ledger runs them again on resume. A CancelledError the function raised of its own is a
    failure like any other."""

    @property
    def queue_depth(self) -> tuple[DepthSample, ...] | None:
        """Work-queue depth over time, rebuilt from the trace; None unless `trace=True`.

        One sample per instant at which the depth changed (see the function `queue_depth`).
        """
        if self.results is None:
            return None
        return queue_depth(self.results, self.drained or ())

    @property
    def speedup(self) -> float:
        """`busy_time / elapsed`: how many tasks ran at once on average (0.0 if nothing ran)."""
        return self.busy_time / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ideal_makespan(self) -> float | None:
        """Makespan of the ideal greedy schedule of the traced durations; None without trace."""
        if self.results is None:
            return None
        return ideal_makespan((r.duration for r in self.results), self.workers)

    @property
    def traced(self) -> bool:
        """True if the job kept per-task results and queue-depth samples."""
        return self.results is not None

    def scalars(self) -> dict[str, Any]:
        """The summary's scalar figures as a plain dict (JSON-ready), derived ones included."""
        return {
            "tasks": self.tasks,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "elapsed": self.elapsed,
            "busy_time": self.busy_time,
            "speedup": self.speedup,
            "ideal_makespan": self.ideal_makespan,
            "workers": self.workers,
            "queue_size": self.queue_size,
            "max_queue_depth": self.max_queue_depth,
            "producer_wait": self.producer_wait,
            "callback_errors": self.callback_errors,
            "retries": self.retries,
            "cancelled": self.cancelled,
            "unprocessed": self.unprocessed,
            "abandoned_threads": self.abandoned_threads,
            "skipped": self.skipped,
            "dead_letters": self.dead_letters,
            "stop_reason": self.stop_reason,
            "error": None if self.error is None else repr(self.error),
            "clock": self.clock,
        }

    def __str__(self) -> str:
        ideal = self.ideal_makespan
        ideal_text = "" if ideal is None else f", ideal makespan {ideal:.3f} s"
        text = (
            f"{self.tasks} tasks ({self.succeeded} ok, {self.failed} failed) on "
            f"{self.workers} workers in {self.elapsed:.3f} s; sequential {self.busy_time:.3f} s, "
            f"speedup {self.speedup:.2f}x{ideal_text}"
        )
        if self.stop_reason is not None:
            text += f"; stopped early ({self.stop_reason}), {self.unprocessed} items unprocessed"
        if self.abandoned_threads:
            text += f"; {self.abandoned_threads} calls abandoned in their threads"
        if self.skipped:
            text += f"; {self.skipped} items skipped by the ledger"
        return text
