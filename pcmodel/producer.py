"""The producer: turns a source of params into work items on the bounded work queue.

A producer iterates its source lazily (a generator of a million items is never held in
memory), numbers each item in production order, and puts `(task_id, params, enqueued_at)` on
the work queue. When the queue is full, `put` waits: that wait is the backpressure a bounded
queue puts on producers, and the producer measures it.

Several producers can feed one job: pass `producers(source_a, source_b, ...)` as `params`.
They share one numbering, so task ids stay unique and follow the order items entered the
queue.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pcmodel._queues import JobQueue
from pcmodel.stopping import Interrupted, JobControl, cancelled_by_others

__all__ = ["ProducerReport", "Producers", "produce", "producers"]


@dataclass(frozen=True, slots=True)
class Producers:
    """Several sources of params for one job, each read by its own producer task.

    Build it with `producers(...)`.
    """

    sources: tuple[Iterable[Any] | AsyncIterable[Any], ...]
    """One iterable or async iterable per producer."""


def producers(*sources: Iterable[Any] | AsyncIterable[Any]) -> Producers:
    """Feed one job from several sources at once, one producer task per source.

    Each source may be an iterable or an async iterable; the producers run concurrently and
    share the work queue, so a slow source does not hold up a fast one.

    Example:
        `run_job(fetch_price, producers(cars_from_file(), cars_from_api()))`

    Args:
        *sources: at least one iterable or async iterable of params.

    Returns:
        A `Producers` value to pass as `params` to `run_job`, `run_job_async` or `start_job`.

    Raises:
        ValueError: if no source is given.
        TypeError: if a source is not an iterable or an async iterable.
    """
    from pcmodel._validate import check_source

    if not sources:
        raise ValueError("producers() needs at least one source, got none")
    for index, source in enumerate(sources):
        check_source(f"producers() source {index}", source)
    return Producers(sources)


@dataclass(slots=True)
class ProducerReport:
    """What one producer did."""

    wait: float = 0.0
    """Seconds spent blocked on a full queue."""
    max_depth: int = 0
    """Deepest the queue was just after one of this producer's puts, or when it found the queue full."""
    blocked: list[tuple[float, float]] | None = field(default=None)
    """(start, end) of each blocked period, relative to the job's start; None without trace."""
    error: BaseException | None = None
    """The exception the source raised, if it did."""


async def produce(
    source: Iterable[Any] | AsyncIterable[Any],
    work_queue: JobQueue[Any],
    task_ids: itertools.count[int],
    now: Callable[[], float],
    start: float,
    report: ProducerReport,
    control: JobControl,
) -> None:
    """Put every item of `source` on `work_queue`, keeping count in `report`.

    Args:
        source: an iterable or async iterable of params, read lazily.
        work_queue: the bounded queue the workers read.
        task_ids: the job's counter of task ids, shared by all its producers.
        now: the job's clock; `start` is the job's start on that clock.
        report: where the counts go, kept up to date even if the producer is cancelled.
            Give it a `blocked` list to keep every blocked period, not only their sum.
        control: the job's stop state; a source that raises stops the job's producing.
    """
    blocked_periods = report.blocked
    put, put_nowait = work_queue.put, work_queue.put_nowait
    qsize, is_full = work_queue.qsize, work_queue.full
    # A put that finds the queue full proves it held `maxsize` items: the deepest it can be.
    # From then on no put can make it deeper, so the fast path stops asking for its size.
    full_depth = work_queue.maxsize if work_queue.maxsize > 0 else -1
    max_depth = 0
    wait = 0.0
    item: list[Any] | None = None

    # The two loops are the same, written out twice, slow path included: a function call per
    # item (a shared helper, or a coroutine for the blocked put) is a large part of the
    # producer's cost, and on a busy job every item takes the slow path.
    #
    # The clock is read once before each put: that reading is the item's enqueue time if the
    # queue has room, and the start of the blocked period if it has not. A blocked item is a
    # list so that its enqueue time can be stamped once `put` has placed it: nothing else
    # runs between the put taking its place and that stamp, so no worker has seen it yet.
    try:
        if isinstance(source, AsyncIterable):
            async for params in source:
                task_id = next(task_ids)
                enqueued_at = now() - start
                try:
                    put_nowait((task_id, params, enqueued_at))
                except asyncio.QueueFull:
                    item = [task_id, params, enqueued_at]
                    await put(item)
                    item[2] = unblocked_at = now() - start
                    item = None
                    wait += unblocked_at - enqueued_at
                    max_depth = full_depth
                    if blocked_periods is not None and unblocked_at > enqueued_at:
                        blocked_periods.append((enqueued_at, unblocked_at))
                    continue
                if max_depth != full_depth and (depth := qsize()) > max_depth:
                    max_depth = depth
        else:
            # Nothing else runs while the producer reads a plain iterable, so a queue it left
            # full is still full at the next item: that item waits at once, without the
            # attempt (and the exception) that would only tell so.
            full = False
            # zip takes the item first, so a source that has run dry uses up no task id.
            for params, task_id in zip(source, task_ids, strict=False):
                enqueued_at = now() - start
                if not full:
                    try:
                        put_nowait((task_id, params, enqueued_at))
                    except asyncio.QueueFull:
                        pass
                    else:
                        if max_depth != full_depth and (depth := qsize()) > max_depth:
                            max_depth = depth
                        continue
                item = [task_id, params, enqueued_at]
                await put(item)
                item[2] = unblocked_at = now() - start
                item = None
                wait += unblocked_at - enqueued_at
                max_depth = full_depth
                if blocked_periods is not None and unblocked_at > enqueued_at:
                    blocked_periods.append((enqueued_at, unblocked_at))
                full = is_full()
    except (KeyboardInterrupt, SystemExit) as interrupt:
        raise Interrupted(interrupt) from None  # stops the job; run_job raises it again
    except BaseException as error:
        task = asyncio.current_task()
        if isinstance(error, asyncio.CancelledError) and task is not None and cancelled_by_others(task):
            if item is not None and control.reason is not None:
                control.held_back(item[1])  # the job stopped while this item waited for room
            raise
        # Only the source can raise here (putting raises nothing but a cancel): a broken
        # source ends producing, not the job.
        report.error = error
        control.source_failed(error)
    finally:
        report.max_depth = max_depth
        report.wait = wait
