"""The controller: the one place that knows every piece and wires them into a job.

The lifecycle of a job:

1. check every argument (before anything starts);
2. build the bounded work queue and the result queue;
3. start the result handlers, the workers and the producers in one `asyncio.TaskGroup`, so
   no task can outlive the job and cancelling the job cancels every piece;
4. wait for the producers, then put one `STOP` per worker behind the last item;
5. wait for the workers (the work is drained), then put one `STOP` per result handler;
6. wait for the handlers (every `on_task_complete` call has returned);
7. build the `JobSummary` and call `on_job_complete(summary)` exactly once.

A job can also stop early (see `pcmodel.stopping`): on request, at its first failure, or when
a source raises. Producing stops, and the same steps from 4 on wind the job down.

Stopping with markers queued behind the real items, rather than `queue.join()` and
cancellation, means a piece only ever stops between two items, and nothing has to count
`task_done()` calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import logging
import time
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from pcmodel import _validate
from pcmodel._queues import STOP, JobQueue
from pcmodel._stall import watch_for_stalls
from pcmodel._threads import JobThreads
from pcmodel.clock import Clock
from pcmodel.policies import RateLimiter, Retry
from pcmodel.producer import ProducerReport, Producers, produce
from pcmodel.records import JobSummary, TaskResult
from pcmodel.result_handler import HandlerReport, handle_results
from pcmodel.stopping import Interrupted, JobControl, StopSignal, cancelled_by_others
from pcmodel.worker import Policies, WorkerReport, in_threads, work

if TYPE_CHECKING:
    from pcmodel.broker.config import Broker

logger = logging.getLogger("pcmodel")

__all__ = ["JobSpec", "execute", "make_spec"]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job's checked arguments: everything `execute` needs."""

    function: Callable[[Any], Any]
    sources: tuple[Iterable[Any] | AsyncIterable[Any], ...]
    on_task_complete: Callable[[TaskResult], Any] | None
    on_job_complete: Callable[[JobSummary], Any] | None
    workers: int
    queue_size: int
    result_queue_size: int
    result_handlers: int
    clock: Clock
    trace: bool
    timeout: float | None = None
    retry: Retry | None = None
    max_per_second: float | None = None
    burst: int = 1
    fail_fast: bool = False
    stop: StopSignal | None = None
    broker: Broker | None = None
    stall_after: float | None = 60.0


def make_spec(
    function: object,
    params: object,
    *,
    on_task_complete: object = None,
    on_job_complete: object = None,
    workers: object = 50,
    queue_size: object = 100,
    result_queue_size: object = 100,
    result_handlers: object = 1,
    clock: object = "real",
    trace: object = True,
    timeout: object = None,
    retries: object = 0,
    max_per_second: object = None,
    burst: object = 1,
    fail_fast: object = False,
    stop: object = None,
    broker: object = None,
    stall_after: object = 60.0,
) -> JobSpec:
    """Check a job's arguments and return them as a `JobSpec`.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: an argument has a value out of range.
    """
    _validate.check_function(function)
    sources = params.sources if isinstance(params, Producers) else (_validate.check_source("params", params),)
    _validate.check_callable("on_task_complete", on_task_complete, optional=True)
    _validate.check_callable("on_job_complete", on_job_complete, optional=True)
    if stop is not None and not isinstance(stop, StopSignal):
        raise TypeError(f"stop must be a pcmodel.StopSignal or None, got {stop!r} ({type(stop).__name__})")
    checked_broker = _validate.check_broker(broker)
    if checked_broker is not None and clock == "virtual":
        raise ValueError(
            "clock='virtual' cannot drive worker processes through a broker: their calls take "
            "real time; use clock='real'"
        )
    return JobSpec(
        function=function,  # type: ignore[arg-type]
        sources=sources,
        on_task_complete=on_task_complete,  # type: ignore[arg-type]
        on_job_complete=on_job_complete,  # type: ignore[arg-type]
        workers=_validate.check_int("workers", workers, 1),
        queue_size=_validate.check_int("queue_size", queue_size, 0),
        result_queue_size=_validate.check_int("result_queue_size", result_queue_size, 0),
        result_handlers=_validate.check_int("result_handlers", result_handlers, 1),
        clock=_validate.check_clock(clock),
        trace=_validate.check_bool("trace", trace),
        timeout=_validate.check_seconds("timeout", timeout),
        retry=_validate.check_retries(retries),
        max_per_second=_validate.check_rate("max_per_second", max_per_second),
        burst=_validate.check_int("burst", burst, 1),
        fail_fast=_validate.check_bool("fail_fast", fail_fast),
        stop=stop,
        broker=checked_broker,
        stall_after=_validate.check_seconds("stall_after", stall_after),
    )


async def execute(spec: JobSpec) -> JobSummary:
    """Run the job described by `spec` on the running loop and return its summary.

    The clock is the running loop's: run this on a `VirtualTimeLoop` for virtual time. With
    `spec.broker` set, the workers are other processes, reached through Redis (see
    `pcmodel.broker`).
    """
    if spec.broker is not None:
        from pcmodel.broker import run_job_on_broker  # imports redis: only for broker jobs

        return await run_job_on_broker(spec, spec.broker)
    loop = asyncio.get_running_loop()
    now = loop.time
    if type(loop).time is asyncio.BaseEventLoop.time:
        # The stock loop's time() is a Python method around time.monotonic(): calling the C
        # function itself saves a Python call on every clock read of the hot path.
        now = time.monotonic
    start = now()

    # The queue depth over time is not sampled while the job runs: `JobSummary.queue_depth`
    # rebuilds it from the trace's enqueue and start times, which costs the hot path nothing.
    work_queue: JobQueue[Any] = JobQueue(spec.queue_size)
    result_queue: JobQueue[Any] = JobQueue(spec.result_queue_size)
    results: list[TaskResult] | None = [] if spec.trace else None
    control = JobControl(
        work_queue, fail_fast=spec.fail_fast, trace=spec.trace, since_start=lambda: now() - start
    )
    policies = None
    if spec.timeout is not None or spec.retry is not None or spec.max_per_second is not None:
        limiter = None
        if spec.max_per_second is not None:
            limiter = RateLimiter(spec.max_per_second, spec.burst, time=now)
        policies = Policies(spec.timeout, spec.retry, limiter)

    threads: JobThreads | None = None
    function = spec.function
    if not _validate.is_async_callable(function):
        # A thread per call in flight (asyncio's default executor has far fewer), and a new
        # one in place of a thread whose call was abandoned (see pcmodel._threads).
        threads = JobThreads()
        function = in_threads(function, threads)

    task_ids = itertools.count()
    producer_reports = [ProducerReport(blocked=[] if spec.trace else None) for _ in spec.sources]
    worker_reports = [WorkerReport(index) for index in range(spec.workers)]
    if spec.stop is not None:
        spec.stop._listen(loop, control.request_stop)
    try:
        async with asyncio.TaskGroup() as group:
            handlers = [
                group.create_task(
                    handle_results(result_queue, spec.on_task_complete, results),
                    name=f"pcmodel-result-handler-{index}",
                )
                for index in range(spec.result_handlers)
            ]
            control.workers = workers = [
                group.create_task(
                    work(index, function, work_queue, result_queue, now, start, control, policies, report),
                    name=f"pcmodel-worker-{index}",
                )
                for index, report in enumerate(worker_reports)
            ]
            control.producers = producers = [
                group.create_task(
                    produce(source, work_queue, task_ids, now, start, report, control),
                    name=f"pcmodel-producer-{index}",
                )
                for index, (source, report) in enumerate(zip(spec.sources, producer_reports, strict=True))
            ]
            watchdog = None
            if spec.stall_after is not None and spec.clock == "real":
                watchdog = group.create_task(
                    watch_for_stalls(
                        spec.stall_after, worker_reports, producers, handlers, work_queue, result_queue,
                        since_start=control.since_start,
                    ),
                    name="pcmodel-stall-watch",
                )  # fmt: skip
            # asyncio.wait never raises a piece's error here: if a piece fails, the group
            # cancels this body and raises the error itself. A stop cancels the producers,
            # which ends this wait too.
            await asyncio.wait(producers)
            for _ in workers:
                await work_queue.put(STOP)
            await asyncio.wait(workers)
            for _ in handlers:
                await result_queue.put(STOP)
            await asyncio.wait(handlers)
            if watchdog is not None:
                watchdog.cancel()
        elapsed = now() - start
    except BaseExceptionGroup as group_error:
        _raise_from_group(group_error)
    finally:
        if spec.stop is not None:
            spec.stop._forget(control.request_stop)
        if threads is not None:
            # Calls still running in threads cannot be stopped (after a cancel, or a timeout
            # that abandoned them): never wait for those; start no new ones.
            threads.shutdown(wait=True, cancel_futures=True)
            _report_abandoned(threads)

    if control.reason == "source_error":
        logger.error("a params source raised, so the job stopped producing: %r", control.error)
    summary = _summarize(
        spec,
        elapsed,
        producer_reports,
        worker_reports,
        [task.result() for task in handlers],
        control,
        results,
        abandoned_threads=threads.abandoned if threads is not None else 0,
    )
    if spec.on_job_complete is not None:
        summary = await _call_on_job_complete(spec.on_job_complete, summary)
    return summary


def _raise_from_group(group_error: BaseExceptionGroup[BaseException]) -> None:
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


def _report_abandoned(threads: JobThreads) -> None:
    """Log once if calls still run in threads the job gave up on."""
    if threads.running:
        logger.warning(
            "%d call(s) of the plain function still run in threads the job abandoned (a timeout "
            "or a stop gave up on them; threads cannot be killed): they end when the calls return, "
            "and nothing waits for them",
            threads.running,
        )


async def _call_on_job_complete(
    on_job_complete: Callable[[JobSummary], Any], summary: JobSummary
) -> JobSummary:
    """Call `on_job_complete(summary)`; if it raises, log it and count it in the summary."""
    try:
        outcome = on_job_complete(summary)
        if inspect.isawaitable(outcome):
            await outcome
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        task = asyncio.current_task()
        if isinstance(error, asyncio.CancelledError) and task is not None and cancelled_by_others(task):
            raise  # the job itself was cancelled while the callback ran
        logger.error("on_job_complete raised; the summary is returned all the same", exc_info=error)
        return dataclasses.replace(summary, callback_errors=summary.callback_errors + 1)
    return summary


def _summarize(
    spec: JobSpec,
    elapsed: float,
    producer_reports: list[ProducerReport],
    worker_reports: list[WorkerReport],
    handler_reports: list[HandlerReport],
    control: JobControl,
    results: list[TaskResult] | None,
    *,
    abandoned_threads: int,
) -> JobSummary:
    """Add up what every piece reported into the job's summary."""
    if results is not None:
        results.sort(key=itemgetter(0))
    blocked: list[tuple[float, float]] = []
    for report in producer_reports:
        blocked.extend(report.blocked or ())
    blocked.sort()
    unprocessed_params = control.unprocessed_params
    return JobSummary(
        tasks=sum(r.tasks for r in worker_reports),
        succeeded=sum(r.tasks - r.failed for r in worker_reports),
        failed=sum(r.failed for r in worker_reports),
        elapsed=elapsed,
        busy_time=sum(r.busy_time for r in worker_reports),
        workers=spec.workers,
        max_queue_depth=max(r.max_depth for r in producer_reports),
        producer_wait=sum(r.wait for r in producer_reports),
        callback_errors=sum(r.callback_errors for r in handler_reports),
        queue_size=spec.queue_size,
        clock=spec.clock,
        results=tuple(results) if results is not None else None,
        producer_blocked=tuple(blocked) if spec.trace else None,
        retries=sum(r.retries for r in worker_reports),
        cancelled=sum(r.cancelled for r in worker_reports),
        stop_reason=control.reason,
        error=control.error,
        unprocessed=control.unprocessed,
        unprocessed_params=tuple(unprocessed_params) if unprocessed_params is not None else None,
        drained=tuple(control.drained) if control.drained is not None else None,
        abandoned_threads=abandoned_threads,
    )
