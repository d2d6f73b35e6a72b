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
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
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
    """Deepest the queue was just after one of this producer's puts."""
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
    # The item that waits for room, and since when; `blocked_at` is None while none waits.
    held: Any = None
    blocked_at: float | None = None

    def wait_for_room(params: Any) -> Awaitable[None]:
        """Note the item that must wait, and when it started to: the queue is full."""
        nonlocal held, blocked_at
        held, blocked_at = params, now() - start
        return work_queue.wait_for_room()  # the backpressure

    def put(params: Any) -> None:
        """Put the next item on the queue, which has room: numbered, stamped, counted."""
        nonlocal held, blocked_at
        enqueued_at = now() - start
        if blocked_at is not None:  # it waited for room: count the wait
            report.wait += enqueued_at - blocked_at
            if blocked_periods is not None and enqueued_at > blocked_at:
                blocked_periods.append((blocked_at, enqueued_at))
            held, blocked_at = None, None
        work_queue.put_nowait((next(task_ids), params, enqueued_at))
        if (depth := work_queue.qsize()) > report.max_depth:
            report.max_depth = depth

    # The same three lines for an async source and a plain one: `async for` cannot read a
    # plain iterable, and wrapping one in an async generator would cost every item a step of
    # that generator. An item is numbered and stamped when it goes in, so a blocked item's
    # enqueue time is when it got its place, and task ids follow the order items entered.
    try:
        if isinstance(source, AsyncIterable):
            async for params in source:
                if work_queue.full():
                    await wait_for_room(params)
                put(params)
        else:
            for params in source:
                if work_queue.full():
                    await wait_for_room(params)
                put(params)
    except (KeyboardInterrupt, SystemExit) as interrupt:
        raise Interrupted(interrupt) from None  # stops the job; run_job raises it again
    except BaseException as error:
        task = asyncio.current_task()
        if isinstance(error, asyncio.CancelledError) and task is not None and cancelled_by_others(task):
            if blocked_at is not None and control.reason is not None:
                control.held_back(held)  # the job stopped while this item waited for room
            raise
        # Only the source can raise here (putting raises nothing but a cancel): a broken
        # source ends producing, not the job.
        report.error = error
        control.source_failed(error)
