"""A log of every call a job makes, each attempt of each task: `Call` and `CallLog`.

A `TaskResult` has a task's window and how many attempts it took; a `CallLog` wraps the job's
function and places each attempt in the job's time, for `plot_timeline(summary, calls=...)`.
Import it from `pcmodel.workloads`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from pcmodel.records import JobSummary, TaskResult

__all__ = ["Call", "CallLog"]


class Call(NamedTuple):
    """One call (one attempt) of a task, as recorded by a `CallLog`."""

    task_id: int
    """The task it belongs to."""
    worker: int
    """The worker that made it."""
    attempt: int
    """1 for the task's first call, 2 for its first retry, and so on."""
    started_at: float
    """When the call started, in seconds since the job started."""
    finished_at: float
    """When it returned or raised."""
    error: BaseException | None
    """What it raised (`asyncio.CancelledError` if it was cut off by a timeout or a cancel)."""

    @property
    def outcome(self) -> Literal["ok", "failed", "rate-limited", "cut off"]:
        """How the call ended: "ok", "failed", "rate-limited" (an error with a `retry_after`), "cut off"."""
        if self.error is None:
            return "ok"
        if isinstance(self.error, asyncio.CancelledError):
            return "cut off"
        if getattr(self.error, "retry_after", None) is not None:
            return "rate-limited"
        return "failed"


@dataclass(slots=True)
class CallLog:
    """Wraps an async function and records every call of it: each attempt of each task.

    A `TaskResult` has a task's window and how many attempts it took; between its attempts it
    waited (for a retry's backoff, or for the rate limit). Pass a `CallLog` as the job's
    function to see each attempt: `log.calls(summary)` places them in the job's time, ready
    for `plot_timeline(summary, calls=...)`.

        log = workloads.CallLog(fetch_price)
        summary = pcmodel.run_job(log, cars, retries=3, clock="virtual")
        pcmodel.plot_timeline(summary, calls=log.calls(summary))

    Use a fresh log for each job.
    """

    function: Callable[[Any], Awaitable[Any]]
    """The async function whose calls are recorded."""
    records: list[tuple[Any, float, float, BaseException | None]] = field(default_factory=list)
    """(params, start, end, error) per call, times on the loop's clock, in the order they ended."""

    async def __call__(self, params: Any) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            value = await self.function(params)
        except BaseException as error:
            self.records.append((params, started, loop.time(), error))
            raise
        self.records.append((params, started, loop.time(), None))
        return value

    def calls(self, summary: JobSummary) -> list[Call]:
        """Every recorded call, matched to its task in `summary` and placed in the job's time.

        The loop's clock is turned into job time by the earliest gap between a task starting
        and its first call: exact on the virtual clock (the first task's first call starts
        the moment its worker takes it), within microseconds on the real clock. Calls are
        matched to tasks by their params (the same object), and by time when several tasks
        share one.

        Args:
            summary: the job's summary, from a run with `trace=True`.

        Returns:
            The calls, ordered by start time.

        Raises:
            ValueError: the job ran with `trace=False`.
        """
        if summary.results is None:
            raise ValueError("CallLog.calls needs the job's trace: run it with trace=True")
        tasks: dict[int, list[TaskResult]] = {}
        for result in summary.results:
            tasks.setdefault(id(result.params), []).append(result)
        records = sorted((r for r in self.records if id(r[0]) in tasks), key=lambda r: r[1])
        if not records:
            return []
        first_call: dict[int, float] = {}
        for params, started, _, _ in records:
            first_call.setdefault(id(params), started)
        origin = min(started - min(r.started_at for r in tasks[key]) for key, started in first_call.items())
        calls: list[Call] = []
        attempts: dict[int, int] = {}
        for params, started, finished, error in records:
            at = started - origin
            # The task of these params whose window holds the call (the latest to start, if any doubt).
            candidates = [r for r in tasks[id(params)] if r.started_at <= at + 1e-9] or tasks[id(params)][:1]
            task = max(candidates, key=lambda r: r.started_at)
            attempts[task.task_id] = attempts.get(task.task_id, 0) + 1
            calls.append(
                Call(task.task_id, task.worker, attempts[task.task_id], at, finished - origin, error)
            )
        return calls
