"""The worker: takes work items, calls the function, hands each result on.

A job runs a fixed pool of workers. Each one loops: take an item from the work queue, call
`function(params)`, record what happened (the fields of its `TaskResult`, as a plain tuple,
`records.Row`: the result handler builds the record only if someone needs it), put it on the
result queue. The pool size is the concurrency limit: at most `workers` calls are in flight,
however many items are waiting.

A failing call never kills its worker: the exception becomes the result's `error` and the
worker takes the next item. That holds for any exception, odd ones included: a CancelledError
the function raised of its own (it awaited something that was cancelled) is an outcome, told
apart from a cancel of the worker itself by `cancelled_by_others`. Only KeyboardInterrupt and
SystemExit stop the job, as they stop any program. (A hand-written worker that lets the
exception escape before it calls `task_done()` leaves `queue.join()` waiting forever; the
notebooks show that bug.)
The worker stops when it takes the `STOP` marker, which the controller puts once per worker
after the producers are done, behind every real item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from pcmodel._queues import STOP, ItemSource, JobQueue
from pcmodel._threads import in_threads
from pcmodel.policies import AttemptGate, RateLimiter, Retry, call_with_policies
from pcmodel.records import Row
from pcmodel.stopping import Interrupted, JobControl, cancelled_by_others

__all__ = ["Policies", "PolicyCall", "WorkerReport", "in_threads", "work"]


class Policies(NamedTuple):
    """What wraps each call: a timeout, a retry policy, a rate limit, a gate (each may be None).

    The gate sees every attempt (an adaptive or resizable pool's, see `pcmodel._pool`).
    """

    timeout: float | None
    retry: Retry | None
    limiter: RateLimiter | None
    gate: AttemptGate | None = None


@dataclass(slots=True)
class WorkerReport:
    """What one worker did."""

    index: int
    """The worker's 0-based index."""
    tasks: int = 0
    """Items it took."""
    failed: int = 0
    """Items whose function raised."""
    busy_time: float = 0.0
    """Seconds its function calls took, summed."""
    cancelled: int = 0
    """Calls cancelled by a fail-fast stop (counted in `failed` too)."""
    retries: int = 0
    """Attempts beyond the first, summed over its tasks."""
    running: tuple[int, float] | None = None
    """The task it is calling now and when that call started (job time); None between calls."""


class PolicyCall:
    """`function` called under a timeout, a retry policy and a rate limit (see `pcmodel.policies`).

    Only jobs that use a policy pay for this wrapper; the worker's own loop stays one await.
    """

    __slots__ = ("attempts", "function", "policies", "retries")

    def __init__(self, function: Callable[[Any], Awaitable[Any]], policies: Policies) -> None:
        self.function = function
        self.policies = policies
        self.attempts = 1
        """Attempts the latest call made, retries included."""
        self.retries = 0
        """Attempts beyond the first, summed over every call."""

    async def __call__(self, params: Any) -> Any:
        attempts = [1]  # set by call_with_policies, whatever the outcome
        try:
            return await call_with_policies(self.function, params, attempts, *self.policies)
        finally:
            self.attempts = attempts[0]
            self.retries += attempts[0] - 1


async def work(
    index: int,
    function: Callable[[Any], Awaitable[Any]],
    work_queue: ItemSource[Any],
    result_queue: JobQueue[Any],
    now: Callable[[], float],
    start: float,
    control: JobControl,
    policies: Policies | None = None,
    report: WorkerReport | None = None,
) -> WorkerReport:
    """Run items from `work_queue` through `function` until `STOP`; report what was done.

    Args:
        index: this worker's 0-based index, recorded in each `TaskResult`.
        function: an async callable of one argument (plain functions are adapted first,
            see `in_threads`).
        work_queue: where items come from, as `(task_id, params, enqueued_at)` (the job's
            work queue, or this worker's lane of it in a resizable pool, see `pcmodel._pool`).
        result_queue: where each result goes, as a row of `TaskResult` fields.
        now: the job's clock; `start` is the job's start on that clock.
        control: the job's stop state (fail-fast, cancelled calls).
        policies: timeout, retries and rate limit for each call; None for plain calls.
        report: where the counts go, kept up to date while the worker runs (the controller
            reads it to tell what a stalled job is doing); None for a new one.
    """
    me = asyncio.current_task()
    assert me is not None, "work() runs as a task"
    if report is None:
        report = WorkerReport(index)
    policy_call = None if policies is None else PolicyCall(function, policies)
    call = function if policy_call is None else policy_call
    busy = 0.0  # seconds spent in calls

    # Invariant: every item taken from the work queue yields exactly one result on the
    # result queue, whatever the function does (only a hard cancel of the job skips it).
    #
    # Speed, measured side by side on a job of quick calls (tests/test_pieces.py checks that
    # both paths give the same times):
    # - `get_nowait()` first (and `put_nowait()` below) skip the coroutine that every
    #   `await queue.get()` creates even when it has nothing to wait for: 10-12%;
    # - an item taken at once starts at `last_read`, the clock's reading when the previous
    #   call ended: nothing awaited since, so the clock has not moved (2-3%).
    # `_take` and `_put` are the plain waits, used only when there is a wait.
    last_read = now() - start
    while True:
        try:
            item = work_queue.get_nowait()
            started_at = last_read
        except asyncio.QueueEmpty:
            item = await _take(work_queue, control)
            started_at = now() - start
        if item is STOP:
            break
        task_id, params, enqueued_at = item
        report.running = (task_id, started_at)

        # 1. Call the function. Whatever it raises is this task's outcome, not the worker's end.
        try:
            value = await call(params)
            error: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - a failing call is an outcome, not a crash
            value, error = None, exc
        except asyncio.CancelledError as exc:
            if cancelled_by_others(me):
                # Someone cancelled this worker: the whole job (the error goes on up), or a
                # fail-fast stop (the call is reported like any result).
                if not control.absorb_cancel():
                    raise
                report.cancelled += 1
                control.note_stop_cancel(exc)  # not an outcome of the call (see `JobBook`)
            # Otherwise the function raised a CancelledError of its own (it awaited something
            # that was cancelled): that is the call's outcome, and the worker goes on.
            value, error = None, exc
        except (KeyboardInterrupt, SystemExit) as exc:
            raise Interrupted(exc) from None  # stops the job; run_job raises `exc` again
        except BaseException as exc:  # noqa: BLE001 - any other odd exception is an outcome too
            value, error = None, exc
        last_read = finished_at = now() - start
        report.running = None

        # 2. Count it.
        report.tasks += 1
        busy += finished_at - started_at
        attempts = 1 if policy_call is None else policy_call.attempts
        if error is not None:
            report.failed += 1

        # 3. Hand the result on: a row of the `TaskResult`'s fields, in its order (the
        # result handler makes the record, only if a callback or the trace needs one).
        row: Row = (task_id, params, value, error, index, enqueued_at, started_at, finished_at, attempts)
        try:
            result_queue.put_nowait(row)
        except asyncio.QueueFull:
            await _put(result_queue, row, control)
            last_read = now() - start  # the wait for room moved the clock
        if error is not None and control.fail_fast:
            control.task_failed(error)
    report.busy_time = busy
    if policy_call is not None:
        report.retries = policy_call.retries
    return report


async def _take(work_queue: ItemSource[Any], control: JobControl) -> Any:
    """The next item (or `STOP`); a fail-fast stop that finds this worker idle is absorbed."""
    while True:
        try:
            return await work_queue.get()
        except asyncio.CancelledError:
            if not control.absorb_cancel():
                raise


async def _put(result_queue: JobQueue[Any], row: Row, control: JobControl) -> None:
    """Put `row` on the result queue, waiting for room (backpressure when the handler is behind).

    A fail-fast stop that cancels this worker while it waits is absorbed: the result is
    still delivered.
    """
    while True:
        try:
            return await result_queue.put(row)
        except asyncio.CancelledError:
            if not control.absorb_cancel():
                raise
