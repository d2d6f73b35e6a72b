"""The result handler: takes results off the result queue and calls `on_task_complete`.

Workers never call the callback themselves; they put each result on the result queue and go
back to work. A dedicated handler task calls `on_task_complete(result)`, so a slow callback
delays only the handler (and, once the result queue is full, pushes back on workers) instead
of holding a worker hostage on every item.

A callback may be a plain function or an `async def`. A plain one runs on the event loop:
keep it quick (printing, counting, updating a widget), or make it async, or hand heavy work to
a thread. An exception in the callback is counted and logged once, never fatal.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pcmodel._queues import STOP, JobQueue
from pcmodel.records import TaskResult
from pcmodel.stopping import raise_if_stopping

__all__ = ["HandlerReport", "handle_results"]

logger = logging.getLogger("pcmodel")

_new_tuple = tuple.__new__  # builds a TaskResult from a row, without its keyword-parsing __new__


@dataclass(slots=True)
class HandlerReport:
    """What one result handler did."""

    callback_errors: int = 0
    """Exceptions raised by `on_task_complete`."""


async def handle_results(
    result_queue: JobQueue[Any],
    on_task_complete: Callable[[TaskResult], Any] | None,
    trace: list[TaskResult] | None,
    book: Callable[[TaskResult], Awaitable[None] | None] | None = None,
) -> HandlerReport:
    """Call `on_task_complete` for every result on `result_queue` until `STOP`.

    Args:
        result_queue: the queue the workers fill, with rows of `TaskResult` fields.
        on_task_complete: called once per result with its `TaskResult`, sync or async; None
            to only collect.
        trace: if a list, every result's `TaskResult` is appended to it (the job's trace).
        book: called with each result once `on_task_complete` is done with it: the job's
            book of outcomes, which records it in the job's ledger (after the callback, so a
            crash never leaves an item recorded whose callback did not run) and calls
            `on_retry_exhausted` (see `pcmodel._ledger_job`). None for none.
    """
    report = HandlerReport()
    needed = on_task_complete is not None or trace is not None or book is not None
    while (row := await result_queue.get()) is not STOP:
        if not needed:
            continue  # nobody needs the record: it is never built
        # The worker sent the `TaskResult`'s fields, in its order: the record is made here,
        # once per task, straight from that tuple (see `pcmodel.records`).
        result = _new_tuple(TaskResult, row)
        if trace is not None:
            trace.append(result)
        if on_task_complete is not None:
            try:
                outcome = on_task_complete(result)
                if outcome is not None and inspect.isawaitable(outcome):
                    await outcome  # an async callback, or a plain one that returned a coroutine
            except Exception:  # noqa: BLE001 - a failing callback is counted, never fatal
                _callback_failed(report, result)
            except BaseException as error:  # noqa: BLE001 - sorted out by _odd_callback_error
                _odd_callback_error(error, report, result)
        if book is not None and (settled := book(result)) is not None:
            await settled  # the dead letter's on_retry_exhausted
    return report


def _odd_callback_error(error: BaseException, report: HandlerReport, result: TaskResult) -> None:
    """Sort out a callback's exception that is not an `Exception`.

    A cancel of the handler itself (the job was cancelled) goes on up; KeyboardInterrupt and
    SystemExit stop the job (see `Interrupted`). Anything else, a CancelledError the callback
    raised of its own included, is counted like any failing callback.
    """
    raise_if_stopping(error)
    _callback_failed(report, result)


def _callback_failed(report: HandlerReport, result: TaskResult) -> None:
    """Count a callback's exception; log the first one with its traceback."""
    report.callback_errors += 1
    if report.callback_errors == 1:
        logger.exception(
            "on_task_complete raised on task %d; the job goes on (further callback errors "
            "are only counted, in JobSummary.callback_errors)",
            result.task_id,
        )
