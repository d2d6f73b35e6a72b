"""The ways to run a job: `run_job_async` (await it), `run_job` (block on it), `start_job`.

All three take the same arguments, check them before anything starts, and run the same
controller. They differ in where the job's event loop comes from:

- `await run_job_async(...)` runs on the caller's loop (top-level `await` in a notebook
  cell, or any coroutine). With `clock="virtual"` it runs on a private virtual-time loop in
  a helper thread instead, and awaits that.
- `run_job(...)` blocks. With no loop running in the calling thread (a script, pytest) it
  makes one with `asyncio.Runner`. Inside a running loop (a Jupyter cell) it cannot use that
  loop without nesting it, so it runs the job on a private loop in a helper thread and waits;
  "Interrupt kernel" (KeyboardInterrupt) cancels the job there and waits for it to unwind.
  pcmodel never patches the kernel's loop (no nest-asyncio).
- `start_job(...)` schedules the job as a task on the running loop and returns at once.

However it runs, a stopped job leaves nothing behind. A cancel (or Ctrl-C) cancels every piece
and waits for them to unwind, but never for a plain function's call stuck in its thread:
threads cannot be killed, so such calls are abandoned (and logged). Ctrl-C on a script shows
one short traceback ending in KeyboardInterrupt, and one press is enough, also when `run_job`
blocks inside `asyncio.run` (whose own handler could not run while the loop is blocked).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import signal
import threading
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pcmodel._knobs import Knobs
from pcmodel._threads import result_when_done
from pcmodel.adaptive import Adaptive
from pcmodel.clock import Clock, DeadlockError, VirtualTimeLoop, fail_if_stuck, loop_factory
from pcmodel.controller import execute
from pcmodel.handle import JobHandle
from pcmodel.policies import Retry
from pcmodel.producer import Producers
from pcmodel.records import JobSummary, TaskResult
from pcmodel.spec import JobSpec, make_spec
from pcmodel.stopping import StopSignal

if TYPE_CHECKING:
    from pcmodel.broker.config import Broker

__all__ = ["DeadlockError", "JobHandle", "run_job", "run_job_async", "start_job"]

Params = Iterable[Any] | AsyncIterable[Any] | Producers
TaskCallback = Callable[[TaskResult], Any]
JobCallback = Callable[[JobSummary], Any]


def run_job(
    function: Callable[[Any], Any],
    params: Params,
    *,
    on_task_complete: TaskCallback | None = None,
    on_job_complete: JobCallback | None = None,
    workers: int | Adaptive = 50,
    queue_size: int = 100,
    result_queue_size: int = 100,
    result_handlers: int = 1,
    clock: Clock = "real",
    trace: bool = True,
    timeout: float | None = None,
    retries: int | Retry = 0,
    max_per_second: float | None = None,
    burst: int = 1,
    fail_fast: bool = False,
    stop: StopSignal | None = None,
    broker: str | Broker | None = None,
    stall_after: float | None = 60.0,
) -> JobSummary:
    """Run `function` on every item of `params` with a pool of workers, and wait for the end.

    Producers put the items on a bounded work queue; `workers` worker tasks take them and call
    `function(item)`; each outcome goes through a result queue to the result handler, which
    calls `on_task_complete(result)`. When every item is handled, `on_job_complete(summary)`
    is called once and the summary is returned.

    Works the same in a script and in a Jupyter cell (where a loop is already running: the
    job then runs on a private loop in a helper thread, and "Interrupt kernel" cancels it).

    Example:
        >>> import asyncio, pcmodel
        >>> async def square(n):
        ...     await asyncio.sleep(n)
        ...     return n * n
        >>> summary = pcmodel.run_job(square, [3, 1, 2], workers=2, clock="virtual")
        >>> [r.value for r in summary.results], summary.elapsed
        ([9, 1, 4], 3.0)

    Args:
        function: called with each item as its only argument. An `async def` function is
            awaited on the loop; a plain function runs in a thread (at most `workers` at once)
            so that it cannot block the loop.
        params: an iterable or async iterable of items, read lazily; or `producers(a, b, ...)`
            to feed the job from several sources at once.
        on_task_complete: called with each `TaskResult`, by the result handler; sync or async.
            Its exceptions are counted in `JobSummary.callback_errors`, never fatal.
        on_job_complete: called once with the `JobSummary`, after every `on_task_complete`.
        workers: number of worker tasks, the most calls in flight at once (>= 1); or
            `pcmodel.Adaptive(min=..., max=...)` for a pool that finds the API's capacity by
            itself: the limit grows while calls succeed and is cut when they are rate limited
            (HTTP 429/503) or time out (see `pcmodel.adaptive`).
        queue_size: capacity of the work queue (>= 0; 0 means unbounded). A full queue makes
            producers wait: memory stays bounded, producers feel backpressure.
        result_queue_size: capacity of the result queue (>= 0; 0 means unbounded).
        result_handlers: number of result-handler tasks (>= 1). With more than one,
            `on_task_complete` calls may overlap.
        clock: "real", or "virtual" to run on a loop whose clock jumps to the next timer:
            `asyncio.sleep`-based jobs then finish at once with exact times.
        trace: keep every `TaskResult` and the queue-depth samples in the summary (for plots).
            With False nothing per task is kept: memory stays flat for any number of items.
        timeout: seconds each call may take (per attempt); a call that takes longer fails
            with `TimeoutError` and its worker moves on. None for no limit.
        retries: how many times to retry a failed call (int), or a `Retry` policy saying which
            errors to retry and how to back off. `TaskResult.attempts` counts the tries.
        max_per_second: the most calls started per second, across all workers (every retry
            counts); None for no limit.
        burst: how many calls may start at once under `max_per_second` (>= 1).
        fail_fast: stop the job at the first failed task, cancelling the calls in flight;
            by default a failure is recorded and the job goes on.
        stop: a `StopSignal`; `stop.set()` stops the job gracefully (no new calls, the calls
            in flight finish, the items still queued are reported as unprocessed).
        broker: a Redis URL, like "redis://127.0.0.1:6379/0", or a `pcmodel.Broker`, to run the
            calls on worker processes on any hosts instead of in this one: start them with
            `python -m pcmodel worker --broker URL --function module:name --workers 50`
            (needs `pcmodel[redis]`). Params and values travel as JSON; the callbacks run
            here, once per item; `workers` is then each worker process's `--workers`.
        stall_after: seconds without any task finishing after which a real-time job logs one
            warning saying what is in flight (which tasks, on which workers, for how long)
            and what the producers and the result handler wait for; None for no warning.

    Returns:
        The `JobSummary`.

    Raises:
        TypeError: an argument has the wrong type (checked before anything starts).
        ValueError: an argument is out of range (checked before anything starts).
        DeadlockError: a virtual-time job got stuck (every task waiting on something that
            can never happen).
        ConnectionError: with `broker=`, the broker cannot be reached, refuses the
            connection, does not answer within `Broker.round_trip_timeout`, or fails mid-job
            (the message names the URL, without its password).
        KeyboardInterrupt: the job was interrupted; it is cancelled and unwound first. A
            KeyboardInterrupt or SystemExit raised by the function or a callback stops the
            job the same way and is raised again as itself.
    """
    spec = _spec_of(locals())
    if _loop_running():
        return _JobThread(spec).run_blocking()
    # No loop in this thread: an ordinary Runner, which turns Ctrl-C into a cancel of the job.
    with asyncio.Runner(loop_factory=loop_factory(spec.clock)) as runner:
        try:
            return runner.run(_execute_guarded(spec))
        except KeyboardInterrupt as interrupt:
            if not isinstance(interrupt.__context__, asyncio.CancelledError):
                raise  # the function's own KeyboardInterrupt, or a second Ctrl-C: as it is
            # The Runner cancelled the job for a Ctrl-C and raised this while handling the
            # cancel, whose traceback runs through every piece of the job: the user would see
            # two long tracebacks that say nothing but "interrupted". The job has unwound.
    raise KeyboardInterrupt  # outside the except block: one short traceback, no context


async def run_job_async(
    function: Callable[[Any], Any],
    params: Params,
    *,
    on_task_complete: TaskCallback | None = None,
    on_job_complete: JobCallback | None = None,
    workers: int | Adaptive = 50,
    queue_size: int = 100,
    result_queue_size: int = 100,
    result_handlers: int = 1,
    clock: Clock = "real",
    trace: bool = True,
    timeout: float | None = None,  # noqa: ASYNC109 - a limit per task, not on this call
    retries: int | Retry = 0,
    max_per_second: float | None = None,
    burst: int = 1,
    fail_fast: bool = False,
    stop: StopSignal | None = None,
    broker: str | Broker | None = None,
    stall_after: float | None = 60.0,
) -> JobSummary:
    """Run a job on the running event loop and return its `JobSummary`: the primary API.

    Takes the same arguments as `run_job`. In a notebook, `await pcmodel.run_job_async(...)`
    in a cell; widgets stay live while it runs. With `clock="virtual"` the job runs on a
    private virtual-time loop in a helper thread (the caller's loop keeps real time).
    Cancelling the awaiting task cancels every piece of the job and leaves no task behind;
    plain-function calls still running in threads are abandoned (logged), not waited for.

    Raises:
        TypeError, ValueError: bad arguments, before anything starts.
        DeadlockError: a virtual-time job got stuck.
        ConnectionError: with `broker=`, the broker failed (see `run_job`).
    """
    spec = _spec_of(locals())
    return await _execute_anywhere(spec)


def start_job(
    function: Callable[[Any], Any],
    params: Params,
    *,
    on_task_complete: TaskCallback | None = None,
    on_job_complete: JobCallback | None = None,
    workers: int | Adaptive = 50,
    queue_size: int = 100,
    result_queue_size: int = 100,
    result_handlers: int = 1,
    clock: Clock = "real",
    trace: bool = True,
    timeout: float | None = None,
    retries: int | Retry = 0,
    max_per_second: float | None = None,
    burst: int = 1,
    fail_fast: bool = False,
    stop: StopSignal | None = None,
    broker: str | Broker | None = None,
    stall_after: float | None = 60.0,
) -> JobHandle:
    """Start a job in the background on the running loop and return its handle at once.

    Takes the same arguments as `run_job`; the arguments are checked now, not when the job
    first runs. `await handle` gives the `JobSummary`; `handle.cancel()` stops the job at once
    (a hard stop: no summary), as on an `asyncio.Task`. While it runs, the handle's knobs change
    it: `set_workers(n)`, `set_rate(max_per_second)`, `pause()`, `resume()`,
    `stop(graceful=True)`, and `stats()` reads its live figures (see `pcmodel.JobHandle`).
    In a notebook this lets sliders and buttons stay live while a real-time job runs.

    Example:
        >>> import asyncio, pcmodel
        >>> from pcmodel.sweeps import run_virtual
        >>> async def main():
        ...     handle = pcmodel.start_job(asyncio.sleep, [1.0] * 8, workers=2)
        ...     handle.set_workers(4)            # applied as the job starts
        ...     summary = await handle
        ...     return summary.tasks, [c.limit for c in summary.limit_changes], summary.elapsed
        >>> run_virtual(main())
        (8, [2, 4], 2.0)

    Raises:
        TypeError, ValueError: bad arguments.
        RuntimeError: no event loop is running in this thread.

    Awaiting the task raises what `run_job_async` raises (a `ConnectionError` from a broker,
    say).
    """
    spec = _spec_of(locals())
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "start_job() needs a running event loop: call it from async code or a notebook "
            "cell, or use run_job(...) in a script"
        ) from None
    knobs = Knobs()
    return JobHandle(loop.create_task(_execute_anywhere(spec, knobs), name="pcmodel-job"), spec, knobs)


def _loop_running() -> bool:
    """Whether an event loop runs in this thread.

    The job must never run inside the `except` block that asks: every exception raised
    while it runs, in any task, would carry `RuntimeError('no running event loop')` as its
    `__context__`, and every logged traceback would start with it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


_JOB_ARGUMENTS = tuple(inspect.signature(make_spec).parameters)
"""The arguments every way to run a job takes: `make_spec`'s (a test holds them equal)."""


def _spec_of(arguments: dict[str, Any]) -> JobSpec:
    """`make_spec` over a runner's own arguments, picked by name from its `locals()`."""
    return make_spec(**{name: arguments[name] for name in _JOB_ARGUMENTS})


async def _execute_anywhere(spec: JobSpec, knobs: Knobs | None = None) -> JobSummary:
    """Run `spec` on the caller's loop, or on a private virtual loop if one is needed."""
    loop = asyncio.get_running_loop()
    if spec.clock == "virtual" and not isinstance(loop, VirtualTimeLoop):
        return await _JobThread(spec, knobs).run_async()
    try:
        return await _execute_guarded(spec, knobs)
    except asyncio.CancelledError as cancel:
        arguments = cancel.args
    # Cancelled, and every piece has unwound. The cancel is raised again from here, outside
    # the except block: its traceback through the job's pieces says only where each one was,
    # and `asyncio.run` prints it in full when Ctrl-C cancels the main task.
    raise asyncio.CancelledError(*arguments)


@contextlib.contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """While this blocks the main thread, Ctrl-C raises KeyboardInterrupt here.

    `asyncio.run` (a `Runner`) handles SIGINT by cancelling its main task, which cannot run
    while `run_job` blocks the loop's thread: the first Ctrl-C would do nothing. Python's
    default handler raises KeyboardInterrupt at once instead; the previous handler is put
    back after. A handler that is not a Python function (SIGINT ignored, say) is kept.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        current = signal.getsignal(signal.SIGINT)
        if callable(current) and current is not signal.default_int_handler:
            previous = current
            signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


async def _execute_guarded(spec: JobSpec, knobs: Knobs | None = None) -> JobSummary:
    """`execute(spec)`, turning a stuck virtual-time job into a `DeadlockError`."""
    return await fail_if_stuck(
        execute(spec, knobs=knobs),
        "Each await above waits for something no task, timer or thread will ever do: find "
        "who should set that Event, fill that queue or resolve that future.",
    )


class _JobThread:
    """Runs one job on a private event loop in a helper thread.

    Used when the calling thread already runs a loop that must not be nested (Jupyter), or
    when a job wants a virtual clock that the caller's loop does not have.
    """

    def __init__(self, spec: JobSpec, knobs: Knobs | None = None) -> None:
        self._spec = spec
        self._knobs = knobs
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[JobSummary] | None = None
        self._cancel_requested = False
        self._done: concurrent.futures.Future[JobSummary] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name="pcmodel-job", daemon=True)

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory(self._spec.clock)) as runner:
                summary = runner.run(self._job())
        except asyncio.CancelledError:
            self._done.cancel()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread, not lost
            self._done.set_exception(error)
        else:
            self._done.set_result(summary)

    async def _job(self) -> JobSummary:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            self._loop, self._task = asyncio.get_running_loop(), task
            if self._cancel_requested:
                task.cancel()
        return await _execute_guarded(self._spec, self._knobs)

    def cancel(self) -> None:
        """Ask the job to stop; safe to call from any thread, at any time."""
        with self._lock:
            self._cancel_requested = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            # A RuntimeError means the loop already closed: the job is over.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    def run_blocking(self) -> JobSummary:
        """Start the job and block until it ends; KeyboardInterrupt cancels it first."""
        interrupted = False
        with _ctrl_c_interrupts():
            try:
                # Inside the try: an interrupt can land while start() still waits for the
                # thread to come up, when the job may already be running.
                self._thread.start()
                concurrent.futures.wait([self._done])
            except KeyboardInterrupt:
                interrupted = True
                self.cancel()
            finally:
                # After a cancel this waits for the job to unwind (a second Ctrl-C stops
                # the wait); otherwise the thread has handed over its outcome and only has
                # to return.
                if self._thread.ident is not None:
                    self._thread.join()
        if interrupted:
            raise KeyboardInterrupt  # outside the except block: one short traceback
        return result_when_done(self._done)

    async def run_async(self) -> JobSummary:
        """Start the job and await its end; cancelling the awaiting task cancels the job."""
        self._thread.start()
        done = asyncio.wrap_future(self._done)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            self.cancel()
            # Wait for the job to unwind so no thread or task outlives the cancel.
            await asyncio.wait([done])
            if not done.cancelled():
                done.exception()  # retrieved: the cancel is what the caller hears about
            raise
        finally:
            if done.done():
                self._thread.join()  # the outcome is handed over: only the return is left
