"""How a job stops early: on request, on its first failure, or when a source breaks.

A job normally ends when its sources run dry and every item is handled. It can also stop early:

- **on request**: `stop.set()` on the `StopSignal` passed as `stop=` (from a callback, a
  notebook button or another thread). Producing stops, the items still queued are reported as
  unprocessed, and the calls in flight finish: a graceful stop.
- **on its first failure**, with `fail_fast=True`: the same, but the calls in flight are
  cancelled too (each gets a `TaskResult` whose error is `asyncio.CancelledError`).
- **when a source raises**: producing stops, what was already queued is processed, and the
  source's exception is recorded in the summary.

In each case the summary says why (`stop_reason`) and what was left (`unprocessed`). Cancelling
the job's task is the hard stop: every piece is cancelled and no summary is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, Literal, Protocol

from pcmodel._queues import STOP, JobQueue

__all__ = [
    "Carrier",
    "Interrupted",
    "JobControl",
    "QueueTakeBack",
    "StopReason",
    "StopSignal",
    "cancelled_by_others",
    "raise_from_group",
    "raise_if_stopping",
]

StopReason = Literal["stop", "fail_fast", "source_error"]


class Interrupted(Exception):
    """Carries a KeyboardInterrupt or SystemExit out of a piece of the job.

    Raised as themselves inside a task, those two escape the event loop at once and leave the
    job's other tasks behind. Wrapped in this ordinary exception, they make the job's
    `TaskGroup` cancel every piece and wait for it; the controller then raises the original.
    """

    def __init__(self, interrupt: KeyboardInterrupt | SystemExit) -> None:
        super().__init__(interrupt)
        self.interrupt = interrupt


def cancelled_by_others(task: asyncio.Task[Any]) -> bool:
    """True if a CancelledError caught in `task` means someone cancelled `task`.

    False means the code that `task` awaited raised a CancelledError of its own (it awaited a
    future or a task that something else cancelled): an outcome of that code, not a request
    to stop.
    """
    return task.cancelling() > 0


class StopSignal:
    """Asks a running job to stop gracefully; safe to set from any thread, at any time.

    Example:
        >>> stop = StopSignal()
        >>> # task = pcmodel.start_job(fetch, cars, stop=stop) ... later: stop.set()

    Setting it before the job starts makes the job stop at once, having started nothing. A
    signal stays set: use a new one for the next job.
    """

    __slots__ = ("_listeners", "_lock", "_set")

    def __init__(self) -> None:
        self._set = False
        self._lock = threading.Lock()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, Callable[[], object]]] = []

    def set(self) -> None:
        """Ask every job listening to this signal to stop gracefully."""
        with self._lock:
            self._set = True
            listeners = list(self._listeners)
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, callback in listeners:
            if loop is here:
                callback()  # from the job's own thread (a callback, say): stop right now
                continue
            # A closed loop means that job is over already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback)

    def is_set(self) -> bool:
        """True once `set()` was called."""
        return self._set

    def subscribe(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        """Call `callback` on `loop` when the signal is set (at once if it already is).

        How a job listens: the controller subscribes its stop for the job's lifetime. Safe
        from any thread.
        """
        with self._lock:
            self._listeners.append((loop, callback))
            already = self._set
        if already:
            loop.call_soon(callback)

    def unsubscribe(self, callback: Callable[[], object]) -> None:
        """Stop calling `callback` (the job it stops has ended)."""
        with self._lock:
            self._listeners = [(loop, cb) for loop, cb in self._listeners if cb is not callback]

    def __repr__(self) -> str:
        return f"StopSignal(set={self._set})"


class Carrier(Protocol):
    """What a stop asks of whatever carries the job's items (see `pcmodel.transport`)."""

    def take_back(self, control: JobControl, *, cancel_in_flight: bool) -> None:
        """Take back the items no worker has started (each reported through
        `control.took_back`); with `cancel_in_flight`, halt the calls in flight too."""


class JobControl:
    """The stop state one job's pieces share. Only the controller makes one.

    The state is the same whatever carries the items; what a stop does to them is the
    carrier's (`Carrier.take_back`): the in-process transport drains its queue and cancels
    its worker tasks, the Redis one reads the queued entries back and raises a halt flag.
    """

    __slots__ = (
        "_absorbable",
        "_stop_cancels",
        "carrier",
        "closed",
        "drained",
        "error",
        "fail_fast",
        "producers",
        "reason",
        "since_start",
        "unprocessed",
        "unprocessed_params",
        "workers",
    )

    def __init__(
        self,
        carrier: Carrier | JobQueue[Any],
        *,
        fail_fast: bool,
        trace: bool,
        since_start: Callable[[], float],
    ) -> None:
        # A bare work queue (the pieces wired by hand, as the notebooks do) is carried by the
        # in-process take-back.
        self.carrier = QueueTakeBack(carrier) if isinstance(carrier, JobQueue) else carrier
        self.since_start = since_start
        self.fail_fast = fail_fast
        self.reason: StopReason | None = None
        self.error: BaseException | None = None
        self.closed = False
        self.unprocessed = 0
        self.unprocessed_params: list[Any] | None = [] if trace else None
        self.drained: list[tuple[float, float]] | None = [] if trace else None
        self.producers: list[asyncio.Task[Any]] = []
        self.workers: list[asyncio.Task[Any]] = []
        self._absorbable: set[asyncio.Task[Any]] = set()
        # The errors of the calls a stop cancelled, until a job's book asks about them: at
        # most one per call in flight when the job stopped (a job stops once).
        self._stop_cancels: set[BaseException] = set()

    def request_stop(self) -> None:
        """A graceful stop: no new items start; the calls in flight finish."""
        self.stop("stop", drain=True)

    def task_failed(self, error: BaseException) -> None:
        """A task failed; with `fail_fast`, stop the job and cancel the calls in flight."""
        self.stop("fail_fast", error, drain=True, cancel_in_flight=True)

    def source_failed(self, error: BaseException) -> None:
        """A source raised: stop producing, but process what is queued."""
        self.stop("source_error", error, drain=False)

    def stop(
        self,
        reason: StopReason,
        error: BaseException | None = None,
        *,
        drain: bool,
        cancel_in_flight: bool = False,
    ) -> None:
        """Stop producing; with `drain`, take the queued items back; maybe cancel the calls."""
        if self.reason is not None or self.closed:
            return  # the first reason to stop is the one reported; after the job, none is
        self.reason = reason
        self.error = error
        current = asyncio.current_task()
        for producer in self.producers:
            if producer is not current:
                producer.cancel()
        if drain:
            self.carrier.take_back(self, cancel_in_flight=cancel_in_flight)

    def took_back(self, params: Any, enqueued_at: float) -> None:
        """A stop took an item back before any worker started it: report it unprocessed."""
        self.unprocessed += 1
        if self.unprocessed_params is not None:
            self.unprocessed_params.append(params)
        if self.drained is not None:
            self.drained.append((enqueued_at, self.since_start()))

    def held_back(self, params: Any) -> None:
        """A producer was stopped holding an item it could not queue: report it unprocessed."""
        self.unprocessed += 1
        if self.unprocessed_params is not None:
            self.unprocessed_params.append(params)

    def cancel_calls(self, workers: list[asyncio.Task[Any]]) -> None:
        """The fail-fast cancel of in-process worker tasks, which `absorb_cancel` recognises."""
        current = asyncio.current_task()
        for worker in workers:
            if worker is not current and not worker.done():
                self._absorbable.add(worker)
                worker.cancel()

    def absorb_cancel(self) -> bool:
        """In a worker that caught CancelledError: True if it was the fail-fast cancel.

        That cancel is absorbed (the worker records the call as cancelled and goes on to its
        stop marker); any other cancel, such as the whole job's, must propagate.
        """
        task = asyncio.current_task()
        if task is None or task not in self._absorbable or task.cancelling() != 1:
            return False
        self._absorbable.discard(task)
        task.uncancel()
        return True

    def note_stop_cancel(self, error: BaseException) -> None:
        """A call's `error` is the CancelledError of this job's stop (not the function's own).

        Whatever carries the calls says so when it knows it: the worker that absorbed the
        stop's cancel, or the broker's result saying a halt cancelled the call.
        """
        self._stop_cancels.add(error)

    def is_stop_cancel(self, error: BaseException) -> bool:
        """True if `error` ended its call because the job stopped (asked once per call).

        Such a call has no outcome: a ledger does not record it, it is no dead letter, and a
        resume runs it again. A CancelledError the function raised of its own is a failure.
        """
        try:
            self._stop_cancels.remove(error)
        except KeyError:
            return False
        return True


class QueueTakeBack:
    """A stop in one process: drain the work queue, and cancel the worker tasks on fail-fast."""

    __slots__ = ("work_queue",)

    def __init__(self, work_queue: JobQueue[Any]) -> None:
        self.work_queue = work_queue

    def take_back(self, control: JobControl, *, cancel_in_flight: bool) -> None:
        queue = self.work_queue
        stops = 0
        while not queue.empty():
            item = queue.get_nowait()
            if item is STOP:
                stops += 1
                continue
            control.took_back(item[1], item[2])
        # Stop markers are how workers end: give back the ones taken out.
        for _ in range(stops):
            queue.put_nowait(STOP)
        if cancel_in_flight:
            control.cancel_calls(control.workers)


def raise_if_stopping(error: BaseException) -> None:
    """Raise what a callback's exception that is not an `Exception` means for the job, if anything.

    KeyboardInterrupt and SystemExit stop the job (raised as `Interrupted`); a CancelledError
    while the running task is being cancelled is that cancel, and goes on up. Anything else (a
    CancelledError the callback raised of its own included) returns: the callback failed, and
    the caller counts it like any failing callback.
    """
    if isinstance(error, KeyboardInterrupt | SystemExit):
        raise Interrupted(error) from None
    task = asyncio.current_task()
    if isinstance(error, asyncio.CancelledError) and task is not None and cancelled_by_others(task):
        raise error


def raise_from_group(group_error: BaseExceptionGroup[BaseException]) -> None:
    """Raise what ended the job's task group as the caller should see it.

    A KeyboardInterrupt or SystemExit that a piece carried out (see `Interrupted`) is raised
    again as itself; a piece that failed for a reason of its own is raised as itself too, not
    wrapped in a group the caller would have to unpack.
    """
    for error in group_error.exceptions:
        if isinstance(error, Interrupted):
            raise error.interrupt from None
    if len(group_error.exceptions) == 1:
        raise group_error.exceptions[0] from None
    raise group_error
