"""The controller side: run a job's items on worker processes through Redis Streams.

The pipeline keeps its shape; the queues move into Redis and the workers into other
processes:

```
params ─► producer(s) ─► XADD job:work ─► worker processes (XREADGROUP) ─► XADD job:results ─► reader ─► result handler(s) ─► on_task_complete
```

- **Producers** read the sources lazily and `XADD` each item (`{"task": id, "params": ...}`,
  JSON) to the job's work stream. Backpressure: a producer waits while the job's unfinished
  items (produced, not yet reported) reach `queue_size`, so Redis holds at most that many.
- The **reader** follows the job's result stream. Results are de-duplicated by task id: a
  task reported twice (a worker that was thought dead finished after all) is reported once,
  so `on_task_complete` runs exactly once per item. An entry that is not a result a worker
  wrote is counted in `malformed` and skipped.
- The **result handlers** are the in-process ones: `on_task_complete` and `on_job_complete`
  behave exactly as in a local job.
- A **keeper** refreshes the expiry of the job's keys (a controller killed outright leaves
  nothing behind for long), warns when no worker process serves the queue, and once per stall
  when no result has come for `stall_after` seconds.

Every round trip to Redis is bounded (`Broker.round_trip_timeout`); losing Redis, or an error
from it, fails the job with a builtins `ConnectionError` naming the URL.

Stopping: `stop.set()` and `fail_fast=True` stop producing and take back the items still
queued in Redis (reported as `unprocessed`); after a stop the calls in flight finish, after a
fail-fast stop the workers cancel them. Cancelling the job deletes its keys at once; workers
then drop what they hold for it.

Why this module is long (about 800 lines): it still holds its own copy of the job's
lifecycle, beside `pcmodel.controller`'s. Issue 12 puts the Redis transport behind the one
controller; until then the lifecycle helpers it can share (`_call_on_job_complete`,
`_raise_from_group`) come from there rather than being copied.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final, TypeVar

from pcmodel._queues import STOP, JobQueue
from pcmodel._validate import check_int
from pcmodel.broker._redis import (
    DRAIN_CONSUMER,
    GROUP,
    PRESENCE_TTL,
    JobKeys,
    Redis,
    RedisError,
    check_url,
    connect,
    decode_text,
    first_contact,
    jobs_key,
    redacted,
    stream_entries,
    worker_key,
    workers_key,
)
from pcmodel.broker.config import Broker
from pcmodel.broker.messages import (
    MalformedMessageError,
    ResultMessage,
    decode_error,
    decode_result,
    decode_work,
    encode_spec,
    encode_work,
)
from pcmodel.broker.records import BrokerJobSummary, WorkerInfo, WorkerProcess
from pcmodel.broker.worker import queue_name
from pcmodel.controller import JobSpec, _call_on_job_complete, _raise_from_group
from pcmodel.producer import ProducerReport
from pcmodel.records import Row, TaskResult
from pcmodel.result_handler import handle_results
from pcmodel.stopping import StopReason

__all__ = ["live_workers", "run_job_on_broker", "wait_for_workers"]

logger = logging.getLogger("pcmodel.broker")

_BATCH: Final = 100
"""Most items a producer sends in one round trip."""
_READ_BATCH: Final = 500
_NO_WORKER_WARNING_EVERY: Final = 30.0
_T = TypeVar("_T")


async def run_job_on_broker(spec: JobSpec, broker: str | Broker) -> BrokerJobSummary:
    """Run the job described by `spec` on the worker processes serving its queue.

    The same job as `execute(spec)`, with the workers in other processes, on any host that
    reaches the Redis server: start them with
    `python -m pcmodel worker --broker URL --function module:name --workers 50`.
    The callbacks run here, exactly once per item, and the summary is the same (a
    `BrokerJobSummary`, which also says which process owns which timeline lanes).

    What travels: the params, as JSON, and the results' values, as JSON (tuples come back as
    lists). Params JSON cannot carry fail their item here, with a `TypeError`; so does a
    value JSON cannot carry, in the worker. Errors come back as built-in exceptions or as
    `RemoteError`s that keep the type's name.

    From `spec`: `function` only names the queue (the workers run their own copy, named on
    their command line); `timeout`, `retries`, `max_per_second` and `burst` apply in the
    worker processes (the rate limit is shared by all of them); `queue_size` bounds the
    unfinished items; `fail_fast`, `stop`, `trace`, the callbacks and the result handlers
    work here as in a local job. `workers` is each worker process's `--workers`, not this
    argument.

    Args:
        spec: the checked job (see `pcmodel.controller.make_spec`); its clock must be "real".
        broker: a Redis URL, like `redis://127.0.0.1:6379/0`, or a `Broker` that also sets
            the queue, the visibility timeout, the most deliveries and the keys' lease.

    Returns:
        The job's `BrokerJobSummary`.

    Raises:
        TypeError, ValueError: a bad argument, before anything is sent.
        ConnectionError: the broker cannot be reached, refuses the connection (a bad password
            or database number), stops answering within `Broker.round_trip_timeout`, or fails
            mid-job. The message names the URL, without its password.
    """
    if not isinstance(broker, Broker):
        broker = Broker(check_url(broker))
    if spec.clock != "real":
        raise ValueError(
            f"clock={spec.clock!r} cannot drive worker processes through a broker: their calls "
            "take real time; use clock='real'"
        )
    queue = queue_name(spec.function) if broker.queue is None else broker.queue
    settings = encode_spec(
        timeout=spec.timeout,
        retry=spec.retry,
        max_per_second=spec.max_per_second,
        burst=spec.burst,
        visibility_timeout=broker.visibility_timeout,
        max_deliveries=broker.max_deliveries,
    )
    client = connect(broker.url, broker.round_trip_timeout)
    try:
        offset = await first_contact(client, broker.url)
        job = _BrokerJob(spec, client, JobKeys(uuid.uuid4().hex, queue), settings, offset, broker.lease)
        try:
            return await job.run()
        except RedisError as error:
            # The broker answered with an error mid-job (its keys deleted under it, say): the
            # caller hears of it as of any other broker failure.
            raise ConnectionError(
                f"the broker at {redacted(broker.url)} failed during job {job.keys.job_id}: {error}"
            ) from error
    finally:
        await client.aclose()


async def _uninterrupted(awaitable: Awaitable[_T]) -> _T:
    """Await `awaitable` to its end even if cancelled meanwhile, then pass the cancel on.

    A round trip cut in the middle leaves unknown whether Redis applied it: an item might be
    in the work stream that the controller thinks was never sent, and the job would wait for
    it forever.
    """
    future = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the cancel is what the caller hears about
        raise


@dataclass(slots=True)
class _Lanes:
    name: str
    first: int
    workers: int
    tasks: int = 0


@dataclass(slots=True)
class _Counts:
    tasks: int = 0
    failed: int = 0
    busy: float = 0.0
    retries: int = 0
    cancelled: int = 0
    duplicates: int = 0
    redelivered: int = 0
    malformed: int = 0
    max_depth: int = 0
    unprocessed: int = 0
    unprocessed_params: list[Any] | None = field(default=None)
    drained: list[tuple[float, float]] | None = field(default=None)


class _BrokerJob:
    """One job's controller-side state and pieces."""

    def __init__(
        self, spec: JobSpec, client: Redis, keys: JobKeys, settings: bytes, offset: float, lease: float
    ) -> None:
        self.spec = spec
        self.client = client
        self.keys = keys
        self.settings = settings
        self.offset = offset
        self.lease = lease
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()
        # Invariant: `unfinished` holds every task sent and not yet handed to the result
        # handlers (nor taken back by a stop); producers keep it at most `queue_size` long.
        self.unfinished: dict[int, tuple[Any, float]] = {}
        self.reserved = 0
        self.space = asyncio.Event()
        self.done = asyncio.Event()
        self.producing_done = False
        self.task_ids = itertools.count()
        self.counts = _Counts(
            unprocessed_params=[] if spec.trace else None, drained=[] if spec.trace else None
        )
        self.results: list[TaskResult] | None = [] if spec.trace else None
        self.result_queue: JobQueue[Any] = JobQueue(spec.result_queue_size)
        # The work stream entry of each task sent and not yet answered: a worker that gives
        # up on an entry without reading it (see `max_deliveries`) names only the entry.
        self.entry_tasks: dict[str, int] = {}
        self.lanes: dict[str, _Lanes] = {}
        self.next_lane = 0
        self.malformed_seen: set[str] = set()
        self.last_progress = self.start
        self.stall_warned = False
        self.reason: StopReason | None = None
        self.error: BaseException | None = None
        self.producers: list[asyncio.Task[None]] = []
        self.group: asyncio.TaskGroup | None = None
        self.closed = False

    def since_start(self) -> float:
        return self.loop.time() - self.start

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> BrokerJobSummary:
        spec = self.spec
        await self._create_keys()
        try:
            await self._check_workers()
            self.start = self.loop.time()
            reports = [ProducerReport(blocked=[] if spec.trace else None) for _ in spec.sources]
            async with asyncio.TaskGroup() as group:
                self.group = group
                handlers = [
                    group.create_task(
                        handle_results(self.result_queue, spec.on_task_complete, self.results),
                        name=f"pcmodel-result-handler-{index}",
                    )
                    for index in range(spec.result_handlers)
                ]
                reader = group.create_task(self._read(), name="pcmodel-broker-reader")
                keeper = group.create_task(self._keep(), name="pcmodel-broker-keeper")
                self.producers = [
                    group.create_task(self._produce(source, report), name=f"pcmodel-producer-{index}")
                    for index, (source, report) in enumerate(zip(spec.sources, reports, strict=True))
                ]
                if spec.stop is not None:
                    spec.stop._listen(self.loop, self.request_stop)
                await asyncio.wait(self.producers)
                self.producing_done = True
                self._check_done()
                await self.done.wait()
                reader.cancel()
                keeper.cancel()
                for _ in handlers:
                    await self.result_queue.put(STOP)
            elapsed = self.since_start()
        except BaseExceptionGroup as group_error:
            _raise_from_group(group_error)
        finally:
            self.closed = True
            if spec.stop is not None:
                spec.stop._forget(self.request_stop)
            await self._delete_keys()
        summary = self._summary(elapsed, reports, [task.result() for task in handlers])
        if spec.on_job_complete is not None:
            completed = await _call_on_job_complete(spec.on_job_complete, summary)
            assert isinstance(completed, BrokerJobSummary)  # the same summary, perhaps recounted
            return completed
        return summary

    async def _create_keys(self) -> None:
        keys, lease_ms = self.keys, int(self.lease * 1000)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xgroup_create(keys.work, GROUP, id="0", mkstream=True)
            # A stream exists only with an entry or a group: this group only creates it.
            pipe.xgroup_create(keys.results, "pcmodel-reader", id="0", mkstream=True)
            pipe.hset(keys.meta, "spec", self.settings)
            for key in (keys.work, keys.results, keys.meta):
                pipe.pexpire(key, lease_ms)
            pipe.sadd(jobs_key(keys.queue), keys.job_id)
            await pipe.execute()

    async def _delete_keys(self) -> None:
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.srem(jobs_key(self.keys.queue), self.keys.job_id)
                pipe.delete(*self.keys.owned())
                await pipe.execute()
        except (RedisError, OSError) as error:
            logger.warning(
                "could not delete job %s's keys (%s): they expire within %g s",
                self.keys.job_id,
                error,
                self.lease,
            )

    async def _check_workers(self) -> None:
        workers = await live_workers(self.client, self.keys.queue)
        if not workers:
            self._warn_no_workers()
            return
        slots = sum(worker.workers for worker in workers)
        if 0 < self.spec.queue_size < slots:
            logger.warning(
                "queue_size=%d is below the %d worker slots serving queue %r: at most %d items "
                "run at once; raise queue_size to keep every worker busy",
                self.spec.queue_size,
                slots,
                self.keys.queue,
                self.spec.queue_size,
            )

    def _warn_no_workers(self) -> None:
        logger.warning(
            "no worker process serves queue %r: start one with "
            "'python -m pcmodel worker --broker URL --function %s' (the job waits for it)",
            self.keys.queue,
            self.keys.queue,
        )

    def _check_done(self) -> None:
        if self.producing_done and not self.unfinished:
            self.done.set()

    # -- producers --------------------------------------------------------------------------

    async def _produce(self, source: Iterable[Any] | AsyncIterable[Any], report: ProducerReport) -> None:
        """Send every item of `source` to the work stream, keeping count in `report`."""
        iterator: Iterator[Any] | AsyncIterator[Any]
        iterator = aiter(source) if isinstance(source, AsyncIterable) else iter(source)
        end = object()
        while self.reason is None:
            room = await self._reserve(report)
            try:
                try:
                    if isinstance(iterator, AsyncIterator):
                        item = await anext(iterator, end)
                        batch = [] if item is end else [item]
                    else:
                        batch = list(itertools.islice(iterator, room))
                except Exception as source_error:  # noqa: BLE001 - a broken source ends producing, not the job
                    report.error = source_error
                    self._stop("source_error", source_error, drain=False)
                    return
                if not batch:
                    return
                await self._send(batch, report)
            finally:
                self.reserved -= room

    async def _reserve(self, report: ProducerReport) -> int:
        """Wait for room under `queue_size`; book up to a batch of it and return how much."""
        size = self.spec.queue_size
        if size == 0:
            self.reserved += _BATCH
            return _BATCH
        free = size - len(self.unfinished) - self.reserved
        if free <= 0:
            blocked_at = self.loop.time()
            while free <= 0:
                self.space.clear()
                await self.space.wait()
                free = size - len(self.unfinished) - self.reserved
            unblocked_at = self.loop.time()
            report.wait += unblocked_at - blocked_at
            if report.blocked is not None and unblocked_at > blocked_at:
                report.blocked.append((blocked_at - self.start, unblocked_at - self.start))
        room = min(free, _BATCH)
        self.reserved += room
        return room

    async def _send(self, batch: list[Any], report: ProducerReport) -> None:
        enqueued_at = self.since_start()
        pipe = self.client.pipeline(transaction=False)
        rejected: list[tuple[int, Any, Exception]] = []
        sent: list[int] = []
        for params in batch:
            task_id = next(self.task_ids)
            try:
                data = encode_work(task_id, params)
            except (TypeError, ValueError) as problem:
                rejected.append((task_id, params, problem))
                continue
            # Known before it is sent: its result may come back before XADD returns.
            self.unfinished[task_id] = (params, enqueued_at)
            pipe.xadd(self.keys.work, {b"m": data})
            sent.append(task_id)
        if sent:
            await _uninterrupted(self._xadd(pipe, sent))
            report.max_depth = max(report.max_depth, len(self.unfinished))
        for task_id, params, reason in rejected:
            error = TypeError(
                f"the params of task {task_id} cannot travel to a worker process as JSON ({reason}): "
                "send dicts, lists, strings, numbers, booleans or None"
            )
            await self._deliver(
                (task_id, params, None, error, -1, enqueued_at, enqueued_at, enqueued_at, 0), cancelled=False
            )

    async def _xadd(self, pipe: Any, task_ids: list[int]) -> None:
        """Send a batch of `XADD`s; note which entry carries which task."""
        entry_ids = await pipe.execute()
        for task_id, entry_id in zip(task_ids, entry_ids, strict=True):
            self.entry_tasks[decode_text(entry_id)] = task_id

    # -- the reader -------------------------------------------------------------------------

    async def _read(self) -> None:
        """Follow the result stream until every task is reported."""
        last: bytes | str = b"0-0"
        while True:
            reply = await self.client.xread({self.keys.results: last}, count=_READ_BATCH, block=1000)
            streams = stream_entries(reply)
            if not streams:
                continue
            entries = streams[0][1]
            for entry_id, fields in entries:
                last = entry_id
                await self._take(entry_id, fields)
            # Read results leave Redis at once: the stream stays short however long the job.
            await self.client.xdel(self.keys.results, *(entry_id for entry_id, _ in entries))
            if self.producing_done and not self.unfinished:
                self.done.set()
                return

    async def _take(self, entry_id: bytes, fields: Any) -> None:
        """Hand one result stream entry on as its task's result, or count why not."""
        try:
            message = decode_result(fields)
        except MalformedMessageError as problem:
            self._malformed(problem)
            if problem.task is not None and problem.task in self.unfinished:
                await self._unreadable_result(problem.task, problem)
            return
        task_id = message.task
        if task_id is None:
            # A worker's report on a work entry it did not read: one this controller sent
            # (given up after max_deliveries) is that task's result; any other is malformed.
            task_id = self.entry_tasks.get(message.entry)
            if task_id is None:
                if message.entry in self.malformed_seen:
                    self.counts.duplicates += 1
                else:
                    self.malformed_seen.add(message.entry)
                    self._malformed(decode_error(message.error, message.process))
                return
        known = self.unfinished.get(task_id)
        if known is None:
            self.counts.duplicates += 1
            return
        params, enqueued_at = known
        lane = self._lane(message)
        started = message.started - self.offset - self.start
        finished = message.finished - self.offset - self.start
        # Clocks agree to within half a round trip: never report a start before the enqueue.
        started = max(started, enqueued_at)
        finished = max(finished, started)
        error = decode_error(message.error, message.process) if message.error is not None else None
        row = (task_id, params, message.value, error, lane, enqueued_at, started, finished, message.attempts)
        if message.deliveries > 1:
            self.counts.redelivered += 1
        self.lanes[message.process].tasks += 1
        self.last_progress = self.loop.time()
        await self._deliver(row, cancelled=message.cancelled)
        del self.unfinished[task_id]
        self.entry_tasks.pop(message.entry, None)
        self.space.set()

    async def _unreadable_result(self, task_id: int, problem: MalformedMessageError) -> None:
        """Fail a task whose result this side cannot read, rather than wait for it forever."""
        params, enqueued_at = self.unfinished.pop(task_id)
        now = self.since_start()
        error = TypeError(
            f"the result of task {task_id} cannot be read here ({problem}): a worker on a newer "
            "Python wrote a value nested deeper than this Python's json reads; return flatter values"
        )
        await self._deliver((task_id, params, None, error, -1, enqueued_at, now, now, 1), cancelled=False)
        self.space.set()

    def _malformed(self, problem: BaseException) -> None:
        """Count an entry that is not a message pcmodel wrote; log the first one."""
        self.counts.malformed += 1
        if self.counts.malformed == 1:
            logger.warning(
                "job %s: ignored an entry of its streams that is not a pcmodel message (%s); "
                "further ones are only counted, in BrokerJobSummary.malformed",
                self.keys.job_id,
                problem,
            )

    def _lane(self, message: ResultMessage) -> int:
        """The timeline lane of the slot that ran a result; a new process gets a new band."""
        process = message.process
        lanes = self.lanes.get(process)
        if lanes is None:
            lanes = self.lanes[process] = _Lanes(process, self.next_lane, message.slots)
            self.next_lane += message.slots
        return lanes.first + min(message.slot, lanes.workers - 1)

    async def _deliver(self, row: Row, *, cancelled: bool) -> None:
        """Count a result (a row of `TaskResult` fields) and hand it to the result handlers."""
        error, started, finished, attempts = row[3], row[6], row[7], row[8]
        counts = self.counts
        counts.tasks += 1
        counts.busy += finished - started
        counts.retries += max(attempts - 1, 0)
        if error is not None:
            counts.failed += 1
            # Only a fail-fast stop cancels calls; a CancelledError the function raised of its
            # own is a plain failure.
            counts.cancelled += cancelled
        await self.result_queue.put(row)
        if error is not None and self.spec.fail_fast:
            self._stop("fail_fast", error, drain=True, cancel_in_flight=True)

    # -- stopping ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """A graceful stop: no new items; queued ones are taken back; calls in flight finish."""
        self._stop("stop", None, drain=True)

    def _stop(
        self, reason: StopReason, error: BaseException | None, *, drain: bool, cancel_in_flight: bool = False
    ) -> None:
        if self.reason is not None or self.closed:
            return  # the first reason to stop is the one reported
        self.reason, self.error = reason, error
        current = asyncio.current_task()
        for producer in self.producers:
            if producer is not current:
                producer.cancel()
        if drain and self.group is not None:
            self.group.create_task(self._drain(cancel_in_flight), name="pcmodel-broker-drain")
        if reason == "source_error":
            logger.error("a params source raised, so the job stopped producing: %r", error)

    async def _drain(self, cancel_in_flight: bool) -> None:
        """Take back the items no worker has taken yet; with `cancel_in_flight`, halt the rest."""
        keys, counts = self.keys, self.counts
        if cancel_in_flight:
            await self.client.hset(keys.meta, "halt", "1")
        while True:
            # Reading in the workers' own group makes the race fair: each entry goes either
            # to a worker (and its result comes back) or here (and it is unprocessed).
            reply = await self.client.xreadgroup(GROUP, DRAIN_CONSUMER, {keys.work: ">"}, count=_READ_BATCH)
            streams = stream_entries(reply)
            entries = streams[0][1] if streams else []
            if not entries:
                break
            for entry_id, fields in entries:
                task_id = self._task_of_entry(entry_id, fields)
                if task_id is None:
                    continue
                known = self.unfinished.pop(task_id, None)
                if known is not None:
                    counts.unprocessed += 1
                    if counts.unprocessed_params is not None:
                        counts.unprocessed_params.append(known[0])
                    if counts.drained is not None:
                        counts.drained.append((known[1], self.since_start()))
            ids = [entry_id for entry_id, _ in entries]
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(keys.work, GROUP, *ids)
                pipe.xdel(keys.work, *ids)
                await pipe.execute()
        self.space.set()
        self._check_done()

    def _task_of_entry(self, entry_id: bytes, fields: Any) -> int | None:
        """The task a work entry taken back carries; None (and counted) if it is not one sent."""
        task_id = self.entry_tasks.pop(decode_text(entry_id), None)
        if task_id is not None:
            return task_id
        try:
            # Sent, but taken back before `_xadd` noted its entry id: the entry says.
            return decode_work(fields).task_id
        except MalformedMessageError as problem:
            self._malformed(problem)
            return None

    # -- the keeper -------------------------------------------------------------------------

    async def _keep(self) -> None:
        """Keep the job's keys alive; warn while no worker process serves the queue."""
        keys, lease_ms = self.keys, int(self.lease * 1000)
        interval = min(self.lease / 4, 5.0)
        warned_at = self.loop.time()
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            async with self.client.pipeline(transaction=False) as pipe:
                for key in (keys.work, keys.results, keys.meta):
                    pipe.pexpire(key, lease_ms)
                pipe.zcount(workers_key(keys.queue), now + self.offset - PRESENCE_TTL, "+inf")
                *_, live = await pipe.execute()
            if not live and self.unfinished and now - warned_at >= _NO_WORKER_WARNING_EVERY:
                warned_at = now
                self._warn_no_workers()
            self._check_stall(now, live)

    def _check_stall(self, now: float, live: int) -> None:
        """Log once per stall when no result has come for `stall_after` seconds."""
        stall_after = self.spec.stall_after
        if stall_after is None or not self.unfinished:
            self.stall_warned = False
            return
        quiet = now - max(self.last_progress, self.start)
        if quiet < stall_after:
            self.stall_warned = False
        elif not self.stall_warned:
            self.stall_warned = True
            oldest = min(enqueued_at for _, enqueued_at in self.unfinished.values())
            logger.warning(
                "job %s has had no result for %.0f s: %d items unfinished (tasks %s), the oldest "
                "sent %.0f s ago; %d worker processes serve queue %r (see 'python -m pcmodel worker')",
                self.keys.job_id,
                quiet,
                len(self.unfinished),
                _some(self.unfinished),
                self.since_start() - oldest,
                live,
                self.keys.queue,
            )

    # -- the summary ------------------------------------------------------------------------

    def _summary(
        self, elapsed: float, reports: list[ProducerReport], handler_reports: list[Any]
    ) -> BrokerJobSummary:
        spec, counts = self.spec, self.counts
        results = self.results
        if results is not None:
            results.sort(key=itemgetter(0))
        blocked = sorted(period for report in reports for period in (report.blocked or ()))
        processes = tuple(
            WorkerProcess(
                name=lanes.name,
                host=lanes.name.rsplit(":", 2)[0],
                pid=_pid_of(lanes.name),
                first_lane=lanes.first,
                workers=lanes.workers,
                tasks=lanes.tasks,
            )
            for lanes in sorted(self.lanes.values(), key=lambda lanes: lanes.first)
        )
        return BrokerJobSummary(
            tasks=counts.tasks,
            succeeded=counts.tasks - counts.failed,
            failed=counts.failed,
            elapsed=elapsed,
            busy_time=counts.busy,
            workers=max(self.next_lane, 1),
            max_queue_depth=max((report.max_depth for report in reports), default=0),
            producer_wait=sum(report.wait for report in reports),
            callback_errors=sum(report.callback_errors for report in handler_reports),
            queue_size=spec.queue_size,
            clock=spec.clock,
            results=tuple(results) if results is not None else None,
            producer_blocked=tuple(blocked) if spec.trace else None,
            retries=counts.retries,
            cancelled=counts.cancelled,
            stop_reason=self.reason,
            error=self.error,
            unprocessed=counts.unprocessed,
            unprocessed_params=(
                tuple(counts.unprocessed_params) if counts.unprocessed_params is not None else None
            ),
            drained=tuple(counts.drained) if counts.drained is not None else None,
            job_id=self.keys.job_id,
            queue=self.keys.queue,
            processes=processes,
            duplicates=counts.duplicates,
            redelivered=counts.redelivered,
            malformed=counts.malformed,
        )


def _some(tasks: dict[int, Any], shown: int = 5) -> str:
    """The first few task ids of `tasks`, for a message."""
    ids = [str(task_id) for task_id in itertools.islice(tasks, shown)]
    return ", ".join(ids) + (", ..." if len(tasks) > shown else "")


def _pid_of(name: str) -> int:
    parts = name.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


async def live_workers(broker: str | Redis, queue: str) -> list[WorkerInfo]:
    """The worker processes serving `queue` now, as their heartbeats describe them.

    Args:
        broker: a Redis URL, or a client from `redis.asyncio`.
        queue: the queue name (a function's `module:qualname` by default).
    """
    if isinstance(broker, str):
        client = connect(check_url(broker))
        try:
            return await live_workers(client, queue)
        finally:
            await client.aclose()
    seconds, micros = await broker.time()
    now = seconds + micros / 1e6
    names = await broker.zrangebyscore(workers_key(queue), now - PRESENCE_TTL, "+inf")
    if not names:
        return []
    infos = await broker.mget([worker_key(decode_text(name)) for name in names])
    workers = []
    for raw in infos:
        if raw is None:
            continue
        try:
            data = json.loads(raw)
            workers.append(
                WorkerInfo(
                    name=str(data["name"]),
                    host=str(data["host"]),
                    pid=int(data["pid"]),
                    queue=str(data["queue"]),
                    workers=int(data["workers"]),
                    items=int(data["items"]),
                )
            )
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # not what a worker writes: skip it
    return workers


async def wait_for_workers(
    url: str,
    queue: str,
    count: int = 1,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for the workers to show up, with its own message
) -> list[WorkerInfo]:
    """Wait until at least `count` worker processes serve `queue`; return them.

    Raises:
        TimeoutError: fewer than `count` showed up within `timeout` seconds.
    """
    check_int("count", count, 1)
    client = connect(check_url(url))
    workers: list[WorkerInfo] = []
    try:
        async with asyncio.timeout(timeout):
            # Heartbeats live in Redis: looking again is the only way to see a new one.
            while len(workers := await live_workers(client, queue)) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(
            f"{len(workers)} of the {count} worker processes expected on queue {queue!r} showed "
            f"up within {timeout:g} s"
        ) from None
    finally:
        await client.aclose()
    return workers
