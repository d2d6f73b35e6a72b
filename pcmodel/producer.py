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

from pcmodel.stopping import JobControl

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

    items: int = 0
    """Items put on the work queue."""
    wait: float = 0.0
    """Seconds spent blocked on a full queue."""
    max_depth: int = 0
    """Deepest the queue was just after one of this producer's puts."""
    blocked: list[tuple[float, float]] | None = field(default=None)
    """(start, end) of each blocked period, relative to the job's start; None without trace."""
    error: Exception | None = None
    """The exception the source raised, if it did."""


async def produce(
    source: Iterable[Any] | AsyncIterable[Any],
    work_queue: asyncio.Queue[Any],
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
    put_nowait = work_queue.put_nowait
    qsize = work_queue.qsize
    # Once the queue has been full, no put can make it deeper: stop asking for its size.
    full_depth = work_queue.maxsize if work_queue.maxsize > 0 else -1
    count = 0
    max_depth = 0
    wait = 0.0

    async def wait_and_put(item: list[Any]) -> None:
        """The slow path: wait for room, then stamp the item's enqueue time."""
        nonlocal count, max_depth, wait
        blocked_at = now()
        try:
            await work_queue.put(item)
        except asyncio.CancelledError:
            if control.reason is not None:
                control.held_back(item[1])  # the job stopped while this item waited
            raise
        count += 1
        # Nothing else runs between the put taking its place and this line, so no worker has
        # seen the item yet: stamping its enqueue time now is exact.
        unblocked_at = now()
        item[2] = unblocked_at - start
        wait += unblocked_at - blocked_at
        max_depth = max(max_depth, qsize())
        if blocked_periods is not None and unblocked_at > blocked_at:
            blocked_periods.append((blocked_at - start, unblocked_at - start))

    # The two loops are the same, written out twice: a function call per item (a shared
    # helper) is a large part of the producer's cost.
    try:
        if isinstance(source, AsyncIterable):
            async for params in source:
                task_id = next(task_ids)
                try:
                    put_nowait((task_id, params, now() - start))
                except asyncio.QueueFull:
                    await wait_and_put([task_id, params, 0.0])
                    continue
                count += 1
                if max_depth != full_depth and (depth := qsize()) > max_depth:
                    max_depth = depth
        else:
            for params in source:
                task_id = next(task_ids)
                try:
                    put_nowait((task_id, params, now() - start))
                except asyncio.QueueFull:
                    await wait_and_put([task_id, params, 0.0])
                    continue
                count += 1
                if max_depth != full_depth and (depth := qsize()) > max_depth:
                    max_depth = depth
    except Exception as error:  # noqa: BLE001 - a broken source ends producing, not the job
        # Only the source can raise here: putting raises nothing but CancelledError.
        report.error = error
        control.source_failed(error)
    finally:
        report.items = count
        report.max_depth = max_depth
        report.wait = wait
