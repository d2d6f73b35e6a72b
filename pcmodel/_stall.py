"""The stall warning: a real-time job that stops making progress says what it is waiting for.

A job whose function never returns (a server that accepts the connection and never answers,
a lock never released) would otherwise sit silent. The controller runs `watch_for_stalls`
beside the pieces of a real-time job: when no task has finished for `stall_after` seconds, it
logs one warning naming the calls in flight (which task, on which worker, for how long) and
what the producers and the result handlers wait for. It warns again only after the job has
made progress and stalled anew. It reads what the pieces already keep; it adds nothing to
their hot path but the worker's note of the task it is calling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from pcmodel._queues import STOP, JobQueue
from pcmodel.worker import WorkerReport

__all__ = ["describe_stall", "watch_for_stalls"]

logger = logging.getLogger("pcmodel")

_LISTED = 5
"""Calls in flight named one by one in the warning; the rest are counted."""


async def watch_for_stalls(
    stall_after: float,
    workers: Sequence[WorkerReport],
    producers: Sequence[asyncio.Task[Any]],
    handlers: Sequence[asyncio.Task[Any]],
    work_queue: JobQueue[Any],
    result_queue: JobQueue[Any],
    *,
    since_start: Callable[[], float],
    held: Callable[[], bool] | None = None,
) -> None:
    """Log one warning each time no task finishes for `stall_after` seconds; runs until cancelled.

    `held` says whether the job is held on purpose (paused through its handle, or waiting out
    a Retry-After): that time is no stall.
    """
    # Checking four times per period bounds how late the warning comes (by a quarter period)
    # at a cost of a few wake-ups a minute.
    period = stall_after / 4
    done = sum(report.tasks for report in workers)
    progress_at = since_start()
    warned = False
    while True:
        await asyncio.sleep(period)
        now = since_start()
        finished = sum(report.tasks for report in workers)
        if finished != done or (held is not None and held()):
            done, progress_at, warned = finished, now, False
        elif not warned and now - progress_at >= stall_after:
            warned = True
            logger.warning(
                "%s",
                describe_stall(
                    now - progress_at, now, workers, producers, handlers, work_queue, result_queue
                ),
            )


def describe_stall(
    quiet_for: float,
    now: float,
    workers: Sequence[WorkerReport],
    producers: Sequence[asyncio.Task[Any]],
    handlers: Sequence[asyncio.Task[Any]],
    work_queue: JobQueue[Any],
    result_queue: JobQueue[Any],
) -> str:
    """One paragraph on what a stalled job is doing (see the module's docstring)."""
    calls: list[tuple[float, int, int]] = []  # (started_at, task_id, worker), oldest call first
    for report in workers:
        if report.running is not None:
            task_id, started_at = report.running
            calls.append((started_at, task_id, report.index))
    calls.sort()
    parts = [f"no task has finished for {quiet_for:.1f} s."]
    if calls:
        listed = ", ".join(
            f"task {task_id} on worker {worker} for {now - started_at:.1f} s"
            for started_at, task_id, worker in calls[:_LISTED]
        )
        more = f" and {len(calls) - _LISTED} more" if len(calls) > _LISTED else ""
        parts.append(f"In flight (longest first): {listed}{more}.")
    else:
        parts.append("No call is in flight.")
    idle = len(workers) - len(calls)
    if idle:
        parts.append(f"{idle} of {len(workers)} workers are between calls.")
    waiting = [queue.qsize() - queue.count(STOP) for queue in (work_queue, result_queue)]
    parts.append(f"The work queue holds {waiting[0]} items, the result queue {waiting[1]}.")
    parts.append(_producers_state(producers, work_queue))
    parts.append(_handlers_state(handlers, result_queue))
    return " ".join(parts)


def _producers_state(producers: Sequence[asyncio.Task[Any]], work_queue: JobQueue[Any]) -> str:
    active = sum(not task.done() for task in producers)
    if not active:
        return "The producers are done."
    if work_queue.full():
        return f"{active} producer(s) wait for room in the full work queue."
    return f"{active} producer(s) wait for the next item of their source."


def _handlers_state(handlers: Sequence[asyncio.Task[Any]], result_queue: JobQueue[Any]) -> str:
    if all(task.done() for task in handlers):
        return "The result handlers are done."
    if result_queue.empty():
        return "The result handlers wait for results."
    return "The result handlers are in on_task_complete, with results waiting behind it."
