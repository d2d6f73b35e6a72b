"""The result handler: takes results off the result queue and calls `on_task_complete`.

Workers never call the callback themselves; they put each `TaskResult` on the result queue and
go back to work. A dedicated handler task calls `on_task_complete(result)`, so a slow callback
delays only the handler (and, once the result queue is full, pushes back on workers) instead
of holding a worker hostage on every item.

A callback may be a plain function or an `async def`. A plain one runs on the event loop:
keep it quick (printing, counting, updating a widget), or make it async, or hand heavy work to
a thread. An exception in the callback is counted and logged once, never fatal.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pcmodel._queues import STOP
from pcmodel._validate import is_async_callable
from pcmodel.records import TaskResult

__all__ = ["HandlerReport", "handle_results"]

logger = logging.getLogger("pcmodel")


@dataclass(slots=True)
class HandlerReport:
    """What one result handler did."""

    handled: int = 0
    """Results taken off the result queue."""
    callback_errors: int = 0
    """Exceptions raised by `on_task_complete`."""


async def handle_results(
    result_queue: asyncio.Queue[Any],
    on_task_complete: Callable[[TaskResult], Any] | None,
    trace: list[TaskResult] | None,
) -> HandlerReport:
    """Call `on_task_complete` for every result on `result_queue` until `STOP`.

    Args:
        result_queue: the queue the workers fill.
        on_task_complete: called once per result, sync or async; None to only collect.
        trace: if a list, every result is appended to it (the job's trace).
    """
    get = result_queue.get
    keep = trace.append if trace is not None else None
    handled = errors = 0
    is_async = on_task_complete is not None and is_async_callable(on_task_complete)
    while (result := await get()) is not STOP:
        handled += 1
        if keep is not None:
            keep(result)
        if on_task_complete is None:
            continue
        try:
            if is_async:
                await on_task_complete(result)
            else:
                outcome = on_task_complete(result)
                if outcome is not None and inspect.isawaitable(outcome):
                    await outcome
        except Exception:
            errors += 1
            if errors == 1:
                logger.exception(
                    "on_task_complete raised on task %d; the job goes on (further callback "
                    "errors are only counted, in JobSummary.callback_errors)",
                    result.task_id,
                )
    return HandlerReport(handled, errors)
