"""The in-process transport: a bounded work queue and a pool of worker tasks, in one loop.

```
producer(s) ─► work queue (JobQueue, queue_size) ─► worker tasks ─► the controller's result queue
```

The learner's pieces do the work: `pcmodel.producer.produce` puts each item on the bounded
queue (its `put` waiting is the backpressure), `pcmodel.worker.work` runs the function and
puts each outcome on the result queue. A stop drains the queue (`QueueTakeBack`); a fail-fast
stop also cancels the worker tasks. The job ends with one `STOP` per worker behind the last
item. A plain (non-async) function runs in `JobThreads`, and a watchdog logs a stall.

A fixed pool (`workers=50`, run by `run_job` or `run_job_async`) is exactly that. A pool whose
size can change while it runs (`workers=Adaptive(...)`, or a job started with `start_job`,
whose handle can resize it) reads the queue through lanes instead (`pcmodel._pool`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Self

from pcmodel import _validate
from pcmodel._pool import DropRecorder, Lane, LaneGate, Pool
from pcmodel._queues import STOP, ItemSource, JobQueue
from pcmodel._stall import watch_for_stalls
from pcmodel._summary import Tally
from pcmodel._threads import JobThreads
from pcmodel.adaptive import make_limit
from pcmodel.clock import VirtualTimeLoop
from pcmodel.policies import RateLimiter
from pcmodel.producer import ProducerReport, produce
from pcmodel.records import Drop, LiveStats
from pcmodel.spec import JobSpec
from pcmodel.stopping import JobControl, QueueTakeBack
from pcmodel.transport import Job, TransportReport
from pcmodel.worker import Policies, WorkerReport, in_threads, work

__all__ = ["LocalTransport"]

logger = logging.getLogger("pcmodel")


class LocalTransport:
    """Carries a job's items through in-process queues to worker tasks (see the module)."""

    def __init__(self, spec: JobSpec, *, resizable: bool = False) -> None:
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
        self.resizable = resizable or spec.adaptive is not None
        self.reports = [] if self.resizable else [WorkerReport(index) for index in range(spec.workers)]
        self.threads: JobThreads | None = None
        self.workers: list[asyncio.Task[WorkerReport]] = []
        self.watchdog: asyncio.Task[None] | None = None
        self.job: Job | None = None
        self.pool: Pool | None = None
        """The lanes of a resizable pool; None for a fixed one."""
        self.drops: list[Drop] | None = None
        """A fixed pool's drops, when its tasks may make several attempts each."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.pool is not None:
            self.pool.close()
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
        limiter = None
        if spec.max_per_second is not None:
            limiter = RateLimiter(spec.max_per_second, spec.burst, time=self.now)
        function = spec.function
        if not _validate.is_async_callable(function):
            # A thread per call in flight (asyncio's default executor has far fewer), and a new
            # one in place of a thread whose call was abandoned (see pcmodel._threads).
            self.threads = JobThreads()
            function = in_threads(function, self.threads)
        job.control.workers = self.workers
        if self.resizable:
            self._start_pool(job, group, function, limiter)
        else:
            self._start_fixed_pool(job, group, function, limiter)
        # Only where time is real: on a virtual-time loop (asked for with clock="virtual", or
        # the caller's own, as `sweeps.run_virtual` gives), the watchdog's timers would keep
        # the clock jumping, and a stuck job would spin instead of raising DeadlockError.
        if spec.stall_after is not None and not isinstance(asyncio.get_running_loop(), VirtualTimeLoop):
            # The controller fills `job.producers` and `job.handlers` before this task first runs.
            self.watchdog = group.create_task(
                watch_for_stalls(
                    spec.stall_after, self.reports, job.producers, job.handlers, self.work_queue,
                    job.result_queue, since_start=job.control.since_start, held=self._held,
                ),
                name="pcmodel-stall-watch",
            )  # fmt: skip

    def _held(self) -> bool:
        """True while the pool is held on purpose (paused, or waiting out a Retry-After)."""
        return self.pool is not None and self.pool.held

    def _worker(
        self,
        job: Job,
        function: Callable[[Any], Any],
        source: ItemSource[Any],
        policies: Policies | None,
        report: WorkerReport,
    ) -> Coroutine[Any, Any, WorkerReport]:
        """The worker coroutine of lane `report.index`, taking its items from `source`."""
        return work(
            report.index,
            function,
            source,
            job.result_queue,
            self.now,
            job.start,
            job.control,
            policies,
            report,
        )

    def _start_fixed_pool(
        self, job: Job, group: asyncio.TaskGroup, function: Callable[[Any], Any], limiter: RateLimiter | None
    ) -> None:
        """Start a fixed pool: `workers` worker tasks that read the work queue itself."""
        spec = self.spec
        policies = None
        if spec.timeout is not None or spec.retry is not None or limiter is not None:
            policies = Policies(spec.timeout, spec.retry, limiter)
        # Several attempts per task: only a gate sees the drops of the retried ones.
        drops = self.drops = [] if spec.retry is not None and spec.trace else None
        for index, report in enumerate(self.reports):
            if drops is not None:
                policies = Policies(
                    spec.timeout, spec.retry, limiter, DropRecorder(drops, report, job.since_start)
                )
            worker = self._worker(job, function, self.work_queue, policies, report)
            self.workers.append(group.create_task(worker, name=f"pcmodel-worker-{index}"))

    def _start_pool(
        self, job: Job, group: asyncio.TaskGroup, function: Callable[[Any], Any], limiter: RateLimiter | None
    ) -> None:
        """Start a resizable pool: its lanes up to the limit, each with a worker (see `pcmodel._pool`)."""
        spec = self.spec
        adaptive = spec.adaptive
        limit = None if adaptive is None else make_limit(adaptive, job.since_start, record=spec.trace)

        # Several attempts per task (or an adaptive limit to feed): every attempt passes the
        # gate. One attempt per task: the lanes alone suffice, and cost nothing per item.
        gated = adaptive is not None or spec.retry is not None
        plain = Policies(spec.timeout, None, None) if spec.timeout is not None else None

        def start_worker(lane: Lane) -> bool:
            report = WorkerReport(lane.index)
            policies = Policies(spec.timeout, spec.retry, None, LaneGate(pool, report)) if gated else plain
            coroutine = self._worker(job, function, lane, policies, report)
            try:
                worker = group.create_task(coroutine, name=f"pcmodel-worker-{lane.index}")
            except RuntimeError:  # the group shuts down (a piece failed, or the job is cancelled)
                coroutine.close()
                return False
            worker.add_done_callback(pool.worker_done)
            self.reports.append(report)
            self.workers.append(worker)
            return True

        pool = self.pool = Pool(
            self.work_queue,
            start_worker,
            limit=spec.workers,
            adaptive=limit,
            most=None if adaptive is None else adaptive.max,
            since_start=job.since_start,
            limiter=limiter,
            congestion=() if adaptive is None else adaptive.congestion,
            gated=gated,
            trace=spec.trace,
            control=job.control,
        )
        pool.apply()

    def produce(
        self, source: Iterable[Any] | AsyncIterable[Any], report: ProducerReport
    ) -> Coroutine[Any, Any, None]:
        job = self.job
        assert job is not None
        return produce(source, self.work_queue, job.task_ids, self.now, job.start, report, job.control)

    def take_back(self, control: JobControl, *, cancel_in_flight: bool) -> None:
        self._take_back.take_back(control, cancel_in_flight=cancel_in_flight)
        if self.pool is not None:
            # Paused or held, no lane would take the final STOP: every stop releases the pool.
            self.pool.stop()

    async def finish(self) -> None:
        # Stop markers behind the last item: a worker stops only between two items.
        if self.pool is None:
            for _ in self.workers:
                await self.work_queue.put(STOP)
            await asyncio.wait(self.workers)
        else:
            # One marker, which each worker puts back on its way out: the lanes may still grow.
            await self.work_queue.put(STOP)
            self.pool.stop_queued()  # a paused pool with nothing left to do ends all the same
            while running := [worker for worker in self.workers if not worker.done()]:
                await asyncio.wait(running)
            self.pool.close()
        if self.watchdog is not None:
            self.watchdog.cancel()

    # The knobs of a running job (`pcmodel.transport.Tunable`): a resizable pool's only.

    def _resizable_pool(self, knob: str) -> Pool:
        if self.pool is None:
            raise RuntimeError(
                f"{knob} needs a resizable pool: start the job with start_job(...) or workers=Adaptive(...)"
            )
        return self.pool

    def set_workers(self, workers: int) -> None:
        self._resizable_pool("set_workers").set_limit(workers, "set_workers")

    def set_rate(self, max_per_second: float | None, burst: int | None) -> None:
        pool = self._resizable_pool("set_rate")
        if burst is None:
            burst = pool.limiter.burst if pool.limiter is not None else self.spec.burst
        pool.set_rate(None if max_per_second is None else RateLimiter(max_per_second, burst, time=self.now))

    def pause(self) -> None:
        self._resizable_pool("pause").pause()

    def resume(self) -> None:
        self._resizable_pool("resume").resume()

    def counts(self) -> LiveStats:
        reports = list(self.reports)  # a copy: another thread may read while lanes start
        pool = self.pool
        return LiveStats(
            in_flight=sum(1 for report in reports if report.running is not None),
            queued=self.work_queue.qsize() - self.work_queue.count(STOP),
            done=sum(report.tasks for report in reports),
            failed=sum(report.failed for report in reports),
            limit=pool.limit if pool is not None else self.spec.workers,
            workers=len(reports),
            recent_rate=0.0,
            paused=pool is not None and pool.paused,
            elapsed=0.0,
        )

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
        extras: dict[str, Any] = {"abandoned_threads": abandoned}
        pool = self.pool
        if pool is not None:
            extras.update(limit_changes=pool.changes, drops=pool.drops)
        elif self.drops is not None:
            extras.update(drops=self.drops)
        return TransportReport(tally, max(len(reports), 1), extras=extras)
