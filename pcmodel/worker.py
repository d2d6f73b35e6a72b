"""The worker: takes work items, calls the function, hands each result on.

A job runs a fixed pool of workers. Each one loops: take an item from the work queue, call
`function(params)`, wrap what happened in a `TaskResult`, put it on the result queue. The
pool size is the concurrency limit: at most `workers` calls are in flight, however many items
are waiting.

A failing call never kills its worker: the exception becomes the result's `error` and the
worker takes the next item. (A hand-written worker that lets the exception escape before it
calls `task_done()` leaves `queue.join()` waiting forever; the notebooks show that bug.)
The worker stops when it takes the `STOP` marker, which the controller puts once per worker
after the producers are done, behind every real item.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from pcmodel._queues import STOP
from pcmodel.policies import RateLimiter, Retry, call_with_policies
from pcmodel.records import TaskResult
from pcmodel.stopping import JobControl

__all__ = ["Policies", "WorkerReport", "in_threads", "work"]

_new_result = tuple.__new__  # builds a TaskResult without its keyword-parsing __new__


class Policies(NamedTuple):
    """What wraps each call: a timeout, a retry policy, a rate limit (each may be None)."""

    timeout: float | None
    retry: Retry | None
    limiter: RateLimiter | None


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


def in_threads(
    function: Callable[[Any], Any], executor: ThreadPoolExecutor
) -> Callable[[Any], Awaitable[Any]]:
    """Adapt a plain function so each call runs in `executor` and can be awaited.

    A plain function called on the event loop would block every other task while it runs;
    in a thread it only blocks that thread. If the function returns an awaitable (a lambda
    that returns a coroutine, say), the awaitable is awaited on the loop.
    """

    async def call_in_thread(params: Any) -> Any:
        value = await asyncio.get_running_loop().run_in_executor(executor, function, params)
        if inspect.isawaitable(value):
            value = await value
        return value

    return call_in_thread


async def work(
    index: int,
    function: Callable[[Any], Awaitable[Any]],
    work_queue: asyncio.Queue[Any],
    result_queue: asyncio.Queue[Any],
    now: Callable[[], float],
    start: float,
    control: JobControl,
    policies: Policies | None = None,
) -> WorkerReport:
    """Run items from `work_queue` through `function` until `STOP`; report what was done.

    Args:
        index: this worker's 0-based index, recorded in each `TaskResult`.
        function: an async callable of one argument (plain functions are adapted first,
            see `in_threads`).
        work_queue: where items come from, as `(task_id, params, enqueued_at)`.
        result_queue: where each `TaskResult` goes.
        now: the job's clock; `start` is the job's start on that clock.
        control: the job's stop state (fail-fast, cancelled calls).
        policies: timeout, retries and rate limit for each call; None for plain calls.
    """
    get, get_nowait = work_queue.get, work_queue.get_nowait
    put_nowait = result_queue.put_nowait
    fail_fast = control.fail_fast
    tasks = failed = cancelled = retries = 0
    busy = 0.0
    attempts = [1]
    # `last_read` is the latest reading of the clock (`last_read_at`: the same, since the
    # job's start). It stays the current time until this worker next awaits, so an item
    # taken without waiting starts then: one clock read per task, not two, and a traced task
    # shares its start time (the same float) with the finish of the task before it.
    last_read = now()
    last_read_at = last_read - start
    # Invariant: every item taken from the work queue yields exactly one TaskResult on the
    # result queue, whatever the function does (only a hard cancel of the job skips it).
    while True:
        try:
            item = get_nowait()
        except asyncio.QueueEmpty:
            try:
                item = await get()
            except asyncio.CancelledError:
                if control.absorb_cancel():
                    continue  # a fail-fast stop caught this worker idle: go on to the stop marker
                raise
            last_read = now()
            last_read_at = last_read - start
        if item is STOP:
            break
        task_id, params, enqueued_at = item
        started, started_at = last_read, last_read_at
        error: BaseException | None = None
        try:
            if policies is None:
                value = await function(params)
            else:
                value = await call_with_policies(function, params, attempts, *policies)
        except Exception as exc:  # noqa: BLE001 - a failing call is an outcome, not a crash
            value, error = None, exc
        except asyncio.CancelledError as exc:
            if not control.absorb_cancel():
                raise
            value, error = None, exc
            cancelled += 1
        finished = now()
        finished_at = finished - start
        result = _new_result(
            TaskResult,
            (
                task_id,
                params,
                value,
                error,
                index,
                enqueued_at,
                started_at,
                finished_at,
                attempts[0],
            ),
        )
        tasks += 1
        busy += finished - started
        last_read, last_read_at = finished, finished_at
        if policies is not None:
            retries += attempts[0] - 1
            attempts[0] = 1
        try:
            put_nowait(result)
        except asyncio.QueueFull:
            # The result handlers are behind: wait for room (backpressure on workers).
            await _put_surely(result_queue, result, control)
            last_read = now()
            last_read_at = last_read - start
        if error is not None:
            failed += 1
            if fail_fast:
                control.task_failed(error)
    return WorkerReport(index, tasks, failed, busy, cancelled, retries)


async def _put_surely(result_queue: asyncio.Queue[Any], result: TaskResult, control: JobControl) -> None:
    """Put `result` even if a fail-fast stop cancels this worker while it waits for room."""
    while True:
        try:
            await result_queue.put(result)
        except asyncio.CancelledError:
            if control.absorb_cancel():
                continue
            raise
        return
