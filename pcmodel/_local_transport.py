"""The in-process transport: a bounded work queue and a pool of worker tasks, in one loop.

```
producer(s) ─► work queue (JobQueue, queue_size) ─► worker tasks ─► the controller's result queue
```

The learner's pieces do the work: `pcmodel.producer.produce` puts each item on the bounded
queue (its `put` waiting is the backpressure), `pcmodel.worker.work` runs the function and
puts each outcome on the result queue. A stop drains the queue (`QueueTakeBack`); a fail-fast
stop also cancels the worker tasks. The job ends with one `STOP` per worker behind the last
item. A plain (non-async) function runs in `JobThreads`, and a watchdog logs a stall.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Self

from pcmodel import _validate
from pcmodel._queues import STOP, JobQueue
from pcmodel._stall import watch_for_stalls
from pcmodel._summary import Tally
from pcmodel._threads import JobThreads
from pcmodel.policies import RateLimiter
from pcmodel.producer import ProducerReport, produce
from pcmodel.spec import JobSpec
from pcmodel.stopping import JobControl, QueueTakeBack
from pcmodel.transport import Job, TransportReport
from pcmodel.worker import Policies, WorkerReport, in_threads, work

__all__ = ["LocalTransport"]

logger = logging.getLogger("pcmodel")


class LocalTransport:
    """Carries a job's items through in-process queues to worker tasks (see the module)."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        loop = asyncio.get_running_loop()
        self.now: Callable[[], float] = loop.time
        if type(loop).time is asyncio.BaseEventLoop.time:
            # The stock loop's time() is a Python method around time.monotonic(): calling the C
            # function itself saves a Python call on every clock read of the hot path.
            self.now = time.monotonic
        # The queue depth over time is not sampled while the job runs: `JobSummary.queue_depth`
        # rebuilds it from the trace's enqueue and start times, which costs the hot path nothing.
        self.work_queue: JobQueue[Any] = JobQueue(spec.queue_size)
        self._take_back = QueueTakeBack(self.work_queue)
        self.reports = [WorkerReport(index) for index in range(spec.workers)]
        self.threads: JobThreads | None = None
        self.workers: list[asyncio.Task[WorkerReport]] = []
        self.watchdog: asyncio.Task[None] | None = None
        self.job: Job | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        threads = self.threads
        if threads is not None:
            # Calls still running in threads cannot be stopped (after a cancel, or a timeout
            # that abandoned them): never wait for those; start no new ones.
            threads.shutdown(wait=True, cancel_futures=True)
            if threads.running:
                logger.warning(
                    "%d call(s) of the plain function still run in threads the job abandoned (a "
                    "timeout or a stop gave up on them; threads cannot be killed): they end when "
                    "the calls return, and nothing waits for them",
                    threads.running,
                )

    def start(self, job: Job, group: asyncio.TaskGroup) -> None:
        spec = self.spec
        self.job = job
        policies = None
        if spec.timeout is not None or spec.retry is not None or spec.max_per_second is not None:
            limiter = None
            if spec.max_per_second is not None:
                limiter = RateLimiter(spec.max_per_second, spec.burst, time=self.now)
            policies = Policies(spec.timeout, spec.retry, limiter)
        function = spec.function
        if not _validate.is_async_callable(function):
            # A thread per call in flight (asyncio's default executor has far fewer), and a new
            # one in place of a thread whose call was abandoned (see pcmodel._threads).
            self.threads = JobThreads()
            function = in_threads(function, self.threads)
        result_queue, control, now, start = job.result_queue, job.control, self.now, job.start
        job.control.workers = self.workers = [
            group.create_task(
                work(index, function, self.work_queue, result_queue, now, start, control, policies, report),
                name=f"pcmodel-worker-{index}",
            )
            for index, report in enumerate(self.reports)
        ]
        if spec.stall_after is not None and spec.clock == "real":
            # The controller fills `job.producers` and `job.handlers` before this task first runs.
            self.watchdog = group.create_task(
                watch_for_stalls(
                    spec.stall_after, self.reports, job.producers, job.handlers, self.work_queue,
                    result_queue, since_start=control.since_start,
                ),
                name="pcmodel-stall-watch",
            )  # fmt: skip

    def produce(
        self, source: Iterable[Any] | AsyncIterable[Any], report: ProducerReport
    ) -> Coroutine[Any, Any, None]:
        job = self.job
        assert job is not None
        return produce(source, self.work_queue, job.task_ids, self.now, job.start, report, job.control)

    def take_back(self, control: JobControl, *, cancel_in_flight: bool) -> None:
        self._take_back.take_back(control, cancel_in_flight=cancel_in_flight)

    async def finish(self) -> None:
        # Stop markers behind the last item: a worker stops only between two items.
        for _ in self.workers:
            await self.work_queue.put(STOP)
        await asyncio.wait(self.workers)
        if self.watchdog is not None:
            self.watchdog.cancel()

    def report(self) -> TransportReport:
        reports = self.reports
        tally = Tally(
            tasks=sum(r.tasks for r in reports),
            failed=sum(r.failed for r in reports),
            busy=sum(r.busy_time for r in reports),
            retries=sum(r.retries for r in reports),
            cancelled=sum(r.cancelled for r in reports),
        )
        abandoned = self.threads.abandoned if self.threads is not None else 0
        return TransportReport(tally, self.spec.workers, extras={"abandoned_threads": abandoned})
