"""The controller: the one place that knows every piece and runs a job's lifecycle, once.

The lifecycle of a job, whatever carries its items (see `pcmodel.transport`):

1. check every argument, before anything starts (`pcmodel.spec.make_spec`);
2. open the transport: in-process queues and worker tasks, or Redis Streams and worker
   processes (`open_transport`);
3. start the result handlers, the transport's own tasks and the producers in one
   `asyncio.TaskGroup`, so no task can outlive the job and cancelling the job cancels every
   piece;
4. wait for the producers, then for the transport to deliver every item's outcome (in one
   process: one `STOP` per worker behind the last item);
5. put one `STOP` per result handler and wait for them (every `on_task_complete` call has
   returned);
6. close the transport, build the `JobSummary` and call `on_job_complete(summary)` exactly once.

A job can also stop early (see `pcmodel.stopping`): on request, at its first failure, or when
a source raises. Producing stops, the transport takes back what no worker started, and the same
steps from 4 on wind the job down.

Stopping with markers queued behind the real items, rather than `queue.join()` and
cancellation, means a piece only ever stops between two items, and nothing has to count
`task_done()` calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable
from typing import Any

from pcmodel._knobs import Knobs
from pcmodel._local_transport import LocalTransport
from pcmodel._queues import STOP, JobQueue
from pcmodel._summary import build_summary
from pcmodel.producer import ProducerReport
from pcmodel.records import JobSummary, TaskResult
from pcmodel.result_handler import handle_results
from pcmodel.spec import JobSpec, make_spec
from pcmodel.stopping import JobControl, cancelled_by_others, raise_from_group
from pcmodel.transport import Job, Transport

logger = logging.getLogger("pcmodel")

__all__ = ["JobSpec", "execute", "make_spec", "open_transport"]


def open_transport(spec: JobSpec, *, resizable: bool = False) -> Transport:
    """The transport that carries `spec`'s items: in this process, or through its broker.

    `resizable`: the job has a handle whose knobs may change its pool while it runs.
    """
    if spec.broker is not None:
        from pcmodel.broker.transport import RedisTransport  # imports redis: only for broker jobs

        return RedisTransport(spec, spec.broker)
    return LocalTransport(spec, resizable=resizable)


async def execute(
    spec: JobSpec, transport: Transport | None = None, knobs: Knobs | None = None
) -> JobSummary:
    """Run the job described by `spec` on the running loop and return its summary.

    The clock is the running loop's: run this on a `VirtualTimeLoop` for virtual time. With
    `spec.broker` set, the workers are other processes, reached through Redis (see
    `pcmodel.broker`).

    Args:
        spec: the checked job.
        transport: what carries the items; by default `open_transport(spec)`.
        knobs: the link to the job's `JobHandle` (`start_job`), which may turn its knobs.
    """
    if transport is None:
        transport = open_transport(spec, resizable=knobs is not None)
    results: list[TaskResult] | None = [] if spec.trace else None
    async with transport:
        start = transport.now()
        control = JobControl(
            transport, fail_fast=spec.fail_fast, trace=spec.trace, since_start=lambda: transport.now() - start
        )
        job = Job(spec, control, JobQueue(spec.result_queue_size), transport.now, start)
        reports = [ProducerReport(blocked=[] if spec.trace else None) for _ in spec.sources]
        # Listening before any piece starts: a signal set already stops the job having started
        # nothing (its callback runs at the group's first wait, before any piece's first step).
        if spec.stop is not None:
            spec.stop.subscribe(asyncio.get_running_loop(), control.request_stop)
        try:
            async with asyncio.TaskGroup() as group:
                job.handlers.extend(
                    group.create_task(
                        handle_results(job.result_queue, spec.on_task_complete, results),
                        name=f"pcmodel-result-handler-{index}",
                    )
                    for index in range(spec.result_handlers)
                )
                transport.start(job, group)
                job.producers.extend(
                    group.create_task(transport.produce(source, report), name=f"pcmodel-producer-{index}")
                    for index, (source, report) in enumerate(zip(spec.sources, reports, strict=True))
                )
                control.producers = job.producers
                if knobs is not None:
                    knobs.attach(transport, control)  # knobs turned already apply at the first wait
                # asyncio.wait never raises a piece's error here: if a piece fails, the group
                # cancels this body and raises the error itself. A stop cancels the producers,
                # which ends this wait too.
                await asyncio.wait(job.producers)
                await transport.finish()
                for _ in job.handlers:
                    await job.result_queue.put(STOP)
                await asyncio.wait(job.handlers)
            elapsed = job.since_start()
        except BaseExceptionGroup as group_error:
            raise_from_group(group_error)
        finally:
            control.closed = True
            if knobs is not None:
                knobs.detach()
            if spec.stop is not None:
                spec.stop.unsubscribe(control.request_stop)

    if control.reason == "source_error":
        logger.error("a params source raised, so the job stopped producing: %r", control.error)
    carried = transport.report()
    summary = build_summary(
        carried.tally,
        elapsed=elapsed,
        workers=carried.workers,
        clock=spec.clock,
        results=results,
        trace=spec.trace,
        queue_size=spec.queue_size,
        producers=reports,
        callback_errors=sum(task.result().callback_errors for task in job.handlers),
        control=control,
        kind=carried.kind,
        **carried.extras,
    )
    if spec.on_job_complete is not None:
        summary = await _call_on_job_complete(spec.on_job_complete, summary)
    return summary


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
