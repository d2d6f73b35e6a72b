"""The Redis Streams transport: a job's items on worker processes, through Redis.

The pipeline keeps its shape; the work queue moves into Redis and the workers into other
processes. The controller (`pcmodel.controller`) runs the job's lifecycle as for a local job;
this transport (see `pcmodel.transport`) carries the items:

```
producer(s) ─► XADD job:work ─► worker processes (XREADGROUP) ─► XADD job:results ─► reader ─► the controller's result queue
```

- **Producers** read the sources lazily and `XADD` items in batches (`{"task": id, "params":
  ...}`, JSON; one script call per batch) to the job's work stream. Backpressure: a producer waits while the job's
  unfinished items (produced, not yet reported) reach `queue_size`, so Redis holds at most
  that many.
- The **reader** follows the job's result stream. Results are de-duplicated by task id: a
  task reported twice (a worker that was thought dead finished after all) is reported once,
  so `on_task_complete` runs exactly once per item. An entry that is not a result a worker
  wrote is counted in `malformed` and skipped.
- A **keeper** refreshes the expiry of the job's keys (a controller killed outright leaves
  nothing behind for long), warns when no worker process serves the queue, and once per stall
  when no result has come for `stall_after` seconds.
- A **stop** reads the entries no worker has taken back out of the work stream (reported as
  `unprocessed`); a fail-fast stop first raises the job's halt flag, and the workers cancel
  the calls in flight.

Every round trip to Redis is bounded (`Broker.round_trip_timeout`); losing Redis, or an error
from it, fails the job with a builtins `ConnectionError` naming the URL. Closing the transport
(also on a cancel) deletes the job's keys; workers then drop what they hold for it.

The parts share one state, the job's unfinished items and their stream entries, held here:
the producers, the stop's take-back and the keys' life are in this module; the reader is
`pcmodel.broker._results.ResultReader`, the keeper `pcmodel.broker._job_keeper.JobKeeper` and
the knobs of the running job `pcmodel.broker._job_knobs.JobKnobs`, all mixed into
`RedisTransport`. The lifecycle itself is not here: it is the controller's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from pcmodel._summary import Tally
from pcmodel.broker._job_keeper import JobKeeper
from pcmodel.broker._job_knobs import JobKnobs
from pcmodel.broker._redis import (
    DRAIN_CONSUMER,
    GROUP,
    BoundedRedis,
    JobKeys,
    RedisError,
    ResponseError,
    connect,
    decode_text,
    first_contact,
    jobs_key,
    news_key,
    redacted,
    stream_entries,
)
from pcmodel.broker._results import Lanes, ResultReader
from pcmodel.broker._tuning import Knobs
from pcmodel.broker.config import Broker
from pcmodel.broker.messages import MalformedMessageError, decode_work, encode_spec, encode_work
from pcmodel.broker.presence import live_workers
from pcmodel.broker.records import BrokerJobSummary
from pcmodel.broker.worker import queue_name
from pcmodel.producer import ProducerReport
from pcmodel.spec import JobSpec
from pcmodel.stopping import JobControl
from pcmodel.transport import Job, TransportReport

__all__ = ["RedisTransport"]

logger = logging.getLogger("pcmodel.broker")

_BATCH: Final = 100
"""Most items a producer sends in one round trip."""
_DRAIN_BATCH: Final = 500
"""Most entries a stop takes back in one round trip."""
_ADD_WORK: Final = """
local ids = {}
for index, message in ipairs(ARGV) do
    ids[index] = redis.call('XADD', KEYS[1], '*', 'm', message)
end
return ids
"""
"""A batch of work messages as entries of the work stream (`KEYS[1]`), in one command: the
controller packs and Redis parses one command per batch instead of one `XADD` per item. With
no-op items the controller's CPU per item fell from 36 to 23 us (`benchmarks.bench_broker_noop`)."""
_DELETE_JOB: Final = """
redis.call('DEL', unpack(KEYS, 3))
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'set' then redis.call('SREM', KEYS[1], ARGV[1]) end
if kind == 'none' or (kind == 'set' and redis.call('SCARD', KEYS[1]) == 0) then
    redis.call('DEL', KEYS[2])
end
"""
"""A job's end, in one step: its own keys deleted (`KEYS[3:]`), off the queue's list of jobs
(`KEYS[1]`), and the queue's news (`KEYS[2]`) too once no job runs on the queue. Its own keys
go first, and a list of jobs of the wrong type (written by hand) is left alone: a script
stopped by an error keeps what it did, so the job's keys go whatever that list holds."""
_NEWS_KEPT: Final = 100
"""About how many announcements of started jobs a queue's news stream keeps."""
_T = TypeVar("_T")


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


class RedisTransport(ResultReader, JobKeeper, JobKnobs):
    """Carries a job's items through Redis Streams to worker processes (see the module)."""

    def __init__(self, spec: JobSpec, broker: Broker) -> None:
        if spec.clock != "real":
            raise ValueError(
                f"clock={spec.clock!r} cannot drive worker processes through a broker: their calls "
                "take real time; use clock='real'"
            )
        self.spec = spec
        self.broker = broker
        queue = queue_name(spec.function) if broker.queue is None else broker.queue
        self.keys = JobKeys(uuid.uuid4().hex, queue)
        # Checked before anything is sent: a setting that cannot travel fails here.
        self.settings = encode_spec(
            timeout=spec.timeout,
            retry=spec.retry,
            max_per_second=spec.max_per_second,
            burst=spec.burst,
            visibility_timeout=broker.visibility_timeout,
            max_deliveries=broker.max_deliveries,
            adaptive=spec.adaptive,
        )
        self.knobs = Knobs()
        self.knobs_turned = asyncio.Event()
        self.lease = broker.lease
        self.loop = asyncio.get_running_loop()
        self.now: Callable[[], float] = self.loop.time
        self.origin = self.loop.time()
        self.client: BoundedRedis = connect(broker.url, broker.round_trip_timeout)
        self.add_work = self.client.register_script(_ADD_WORK)
        self.delete_job = self.client.register_script(_DELETE_JOB)
        self.offset = 0.0
        self.keys_made = False
        # Invariant: `unfinished` holds every task sent and not yet handed to the result
        # handlers (nor taken back by a stop); producers keep it at most `queue_size` long.
        self.unfinished: dict[int, tuple[Any, float]] = {}
        self.reserved = 0
        self.space = asyncio.Event()
        self.done = asyncio.Event()
        self.producing_done = False
        self.task_ids = itertools.count()
        self.tally = Tally()
        self.duplicates = 0
        self.redelivered = 0
        self.malformed = 0
        # The work stream entry of each task sent and not yet answered: a worker that gives
        # up on an entry without reading it (see `max_deliveries`) names only the entry.
        self.entry_tasks: dict[str, int] = {}
        self.lanes: dict[str, Lanes] = {}
        self.next_lane = 0
        self.malformed_seen: set[str] = set()
        self.last_progress = self.origin
        self.stall_warned = False
        self.job: Job | None = None
        self.group: asyncio.TaskGroup | None = None
        self.tasks: list[asyncio.Task[None]] = []

    # -- the transport's lifecycle ----------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            self.offset = await first_contact(self.client, self.broker.url)
            # At once, on two connections: the job needs two from its start (the reader's read
            # blocks one), and opening the second now keeps it off the first item's way.
            checked = asyncio.ensure_future(self._check_workers())
            try:
                await self._create_keys()
            finally:
                await asyncio.wait([checked])
            checked.result()
        except BaseException as error:
            await self.__aexit__(type(error), error, error.__traceback__)
            raise
        self.origin = self.loop.time()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.keys_made:
                self.keys_made = False
                await self._delete_keys()
        finally:
            await self.client.aclose()
        if isinstance(error, RedisError):
            # The broker answered with an error mid-job (its keys deleted under it, say): the
            # caller hears of it as of any other broker failure.
            raise ConnectionError(
                f"the broker at {redacted(self.broker.url)} failed during job {self.keys.job_id}: {error}"
            ) from error

    def start(self, job: Job, group: asyncio.TaskGroup) -> None:
        self.job, self.group, self.origin = job, group, job.start
        self.task_ids = job.task_ids
        self.last_progress = self.origin
        self.tasks = [
            group.create_task(self._read(), name="pcmodel-broker-reader"),
            group.create_task(self._keep(), name="pcmodel-broker-keeper"),
            group.create_task(self._publish_knobs(), name="pcmodel-broker-knobs"),
        ]

    def produce(
        self, source: Iterable[Any] | AsyncIterable[Any], report: ProducerReport
    ) -> Coroutine[Any, Any, None]:
        return self._produce(source, report)

    def take_back(self, control: JobControl, *, cancel_in_flight: bool) -> None:
        if self.group is not None:
            self.group.create_task(self._drain(cancel_in_flight), name="pcmodel-broker-drain")

    async def finish(self) -> None:
        self.producing_done = True
        self._check_done()
        await self.done.wait()
        for task in self.tasks:
            task.cancel()

    def report(self) -> TransportReport:
        extras = {
            "job_id": self.keys.job_id,
            "queue": self.keys.queue,
            "processes": self.processes(),
            "duplicates": self.duplicates,
            "redelivered": self.redelivered,
            "malformed": self.malformed,
        }
        return TransportReport(self.tally, max(self.next_lane, 1), BrokerJobSummary, extras)

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
            # A transaction that fails part way leaves what it did: the keys go at the end.
            self.keys_made = True
            await pipe.execute()
        await self._announce()

    async def _announce(self) -> None:
        """Tell the idle worker processes of the job, in the queue's news stream.

        They block on it and start on the job at once; with the settings, so that a process
        starts on the job without asking for them. Only a speed-up: the processes also look
        for new jobs every poll interval, so a news key nobody can write to (of the wrong
        type, say) costs the job that speed-up only, and is logged.
        """
        keys = self.keys
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    news_key(keys.queue),
                    {b"job": keys.job_id, b"spec": self.settings},
                    maxlen=_NEWS_KEPT,
                    approximate=True,
                )
                pipe.pexpire(news_key(keys.queue), int(self.lease * 1000))
                await pipe.execute()
        except ResponseError as refused:
            logger.warning(
                "job %s: could not announce the job on queue %r's news (%s): worker processes "
                "find it at their next poll instead",
                keys.job_id,
                keys.queue,
                refused,
            )

    async def _delete_keys(self) -> None:
        keys = self.keys
        try:
            # The schedules of the rates set on the running job go too.
            rates = [keys.rate_of(generation) for generation in range(1, self.knobs.rate_changes + 1)]
            await self.delete_job(
                keys=[jobs_key(keys.queue), news_key(keys.queue), *keys.owned(), *rates], args=[keys.job_id]
            )
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

    def _check_done(self) -> None:
        if self.producing_done and not self.unfinished:
            self.done.set()

    # -- producers --------------------------------------------------------------------------

    async def _produce(self, source: Iterable[Any] | AsyncIterable[Any], report: ProducerReport) -> None:
        """Send every item of `source` to the work stream, keeping count in `report`."""
        iterator: Iterator[Any] | AsyncIterator[Any]
        iterator = aiter(source) if isinstance(source, AsyncIterable) else iter(source)
        end = object()
        while self.control.reason is None:
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
                    self.control.source_failed(source_error)
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
                report.blocked.append((blocked_at - self.origin, unblocked_at - self.origin))
        room = min(free, _BATCH)
        self.reserved += room
        return room

    async def _send(self, batch: list[Any], report: ProducerReport) -> None:
        enqueued_at = self.since_start()
        rejected: list[tuple[int, Any, Exception]] = []
        sent: list[int] = []
        messages: list[bytes] = []
        for params in batch:
            task_id = next(self.task_ids)
            try:
                data = encode_work(task_id, params)
            except (TypeError, ValueError) as problem:
                rejected.append((task_id, params, problem))
                continue
            # Known before it is sent: its result may come back before XADD returns.
            self.unfinished[task_id] = (params, enqueued_at)
            messages.append(data)
            sent.append(task_id)
        if sent:
            await _uninterrupted(self._xadd(messages, sent))
            report.max_depth = max(report.max_depth, len(self.unfinished))
        for task_id, params, reason in rejected:
            error = TypeError(
                f"the params of task {task_id} cannot travel to a worker process as JSON ({reason}): "
                "send dicts, lists, strings, numbers, booleans or None"
            )
            await self._failed_here(
                task_id, params, error, enqueued_at=enqueued_at, at=enqueued_at, attempts=0
            )

    async def _xadd(self, messages: list[bytes], task_ids: list[int]) -> None:
        """Add a batch of work messages to the work stream; note which entry carries which task."""
        entry_ids = await self.add_work(keys=[self.keys.work], args=messages)
        for task_id, entry_id in zip(task_ids, entry_ids, strict=True):
            self.entry_tasks[decode_text(entry_id)] = task_id

    # -- stopping ---------------------------------------------------------------------------

    async def _drain(self, cancel_in_flight: bool) -> None:
        """Take back the items no worker has taken yet; with `cancel_in_flight`, halt the rest."""
        keys, control = self.keys, self.control
        if cancel_in_flight:
            await self.client.hset(keys.meta, "halt", "1")
        while True:
            # Reading in the workers' own group makes the race fair: each entry goes either
            # to a worker (and its result comes back) or here (and it is unprocessed).
            reply = await self.client.xreadgroup(GROUP, DRAIN_CONSUMER, {keys.work: ">"}, count=_DRAIN_BATCH)
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
                    control.took_back(*known)
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
