"""The worker side: a process that takes a queue's items from Redis and runs them.

    python -m pcmodel worker --broker redis://127.0.0.1:6379/0 \\
        --function pcmodel.workloads:fetch_price --workers 50

Start as many as you like, on any host that reaches the Redis server. Each process serves
one queue (by default the function's `module:qualname`, which is also what a controller
running that function produces to) and runs up to `--workers` calls at once, like the
worker pool of a job in one process. Inside a process:

- a **fetcher** reads new items of every job on the queue with `XREADGROUP`, never more than
  there are free worker slots, so items wait in Redis, where any process can take them,
  rather than in one process's memory; before new items, it takes over the items of processes
  that stopped (`XAUTOCLAIM` after the visibility timeout), since those are older;
- `--workers` **slots** run the function, each item under the job's timeout, retry policy and
  rate limit (the rate limit is shared by every process, through a script on the server);
- a **writer** writes each result to the job's result stream and acknowledges its item in
  the same transaction (`XADD`, `XACK`, `XDEL` in one `MULTI`), so an item is acknowledged
  only once its result is written, and never lost in between;
- a **keeper** sends the process's heartbeat, keeps its items claimed while they run (so no
  other process takes them over, however long a call runs), and watches for jobs that ended
  or stopped.

Nothing an item does stops the process: a malformed message is reported to the controller
(which counts it apart from the job's tasks), and whatever the function raises or returns
(StopIteration, a CancelledError of its own, SystemExit, a value JSON cannot carry) fails its
item. Losing Redis is not fatal either: each piece retries with a growing pause. SIGTERM (or
Ctrl-C) stops it gracefully: it takes no new item, finishes and acknowledges every item it
holds, and exits 0; a second signal stops it at once, leaving its items to other processes.

The module is long (about 1,000 lines) because it is the whole worker process: its four
pieces share one state (`_WorkerProcess`), plus the command line that starts it. Splitting the
transport from the pieces is issue 12's work, together with the controller's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from pcmodel._queues import STOP
from pcmodel._validate import check_int, is_async_callable
from pcmodel.broker._redis import (
    GROUP,
    PRESENCE_INTERVAL,
    PRESENCE_TTL,
    JobKeys,
    Redis,
    RedisConnectionError,
    RedisError,
    RedisTimeoutError,
    ResponseError,
    check_url,
    clock_offset,
    connect,
    decode_text,
    first_contact,
    jobs_key,
    redacted,
    stream_entries,
    worker_key,
    workers_key,
)
from pcmodel.broker.config import check_seconds
from pcmodel.broker.messages import (
    JobSettings,
    MalformedMessageError,
    WorkerLostError,
    decode_spec,
    decode_work,
    encode_error,
    encode_result,
)
from pcmodel.policies import RateLimiter, call_with_policies
from pcmodel.stopping import cancelled_by_others
from pcmodel.worker import Policies, in_threads

__all__ = ["WorkerStats", "load_function", "queue_name", "serve_worker", "worker_main"]

logger = logging.getLogger("pcmodel.broker")

_WRITE_BATCH: Final = 500
_RETRY_FIRST: Final = 0.1
"""Seconds before the first retry after losing Redis; each failed try doubles the pause..."""
_RETRY_MAX: Final = 5.0
"""...up to this many seconds."""
_RETRY_WARN_EVERY: Final = 12
"""While Redis stays lost, one warning per this many failed tries (about a minute at the cap)."""
_RESYNC_EVERY: Final = 60.0

# The shared rate limit: the same generic cell rate algorithm as `RateLimiter`, run by the
# server on its own clock, so every process of every host books from one schedule. Returns the
# seconds to wait, or -1 if the job is gone (its meta key deleted).
_RATE_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[2]) == 0 then return '-1' end
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local due = tonumber(redis.call('GET', KEYS[1]) or '0')
if due < t then due = t end
redis.call('SET', KEYS[1], string.format('%.6f', due + tonumber(ARGV[1])), 'PX', ARGV[3])
return string.format('%.6f', due - tonumber(ARGV[2]) - t)
"""


@dataclass(slots=True)
class WorkerStats:
    """What a worker process did, reported when it stops."""

    process: str
    """Its consumer name, `host:pid:token`."""
    queue: str
    """The queue it served."""
    workers: int
    """Its number of worker slots."""
    items: int = 0
    """Results it wrote."""
    failed: int = 0
    """Of those, items whose function raised (or that could not run)."""
    malformed: int = 0
    """Messages it could not read, reported as failed items."""
    taken_over: int = 0
    """Items it took over from processes that stopped before finishing them."""


def queue_name(function: object) -> str:
    """The default queue of `function`: its `module:qualname`, which its workers serve too.

    Raises:
        ValueError: the function cannot be named so that another process can import it (a
            lambda, a function defined inside another, or one defined in `__main__`, such as
            a notebook cell): move it into a module, or name the queue yourself.
    """
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise ValueError(
            f"cannot name a queue after {function!r}: worker processes import the function by "
            "'module:name', so define it at the top level of a module, or pass queue='NAME' "
            "here and --queue NAME to the workers"
        )
    if module == "__main__":
        raise ValueError(
            f"{qualname} is defined in __main__ (a script or a notebook), which worker processes "
            "cannot import: move it into a module and start the workers with "
            "--function module:name, or pass queue='NAME' here and --queue NAME to the workers"
        )
    return f"{module}:{qualname}"


def load_function(name: str) -> Callable[[Any], Any]:
    """Import the function named `package.module:attribute` (as given on the command line).

    Raises:
        ValueError: the name is not `module:attribute`.
        TypeError: it names something not callable.
        ImportError, AttributeError: the module or the attribute does not exist, or the module
            raised as it was imported (the message names the module and the exception, with
            the file and line that raised it).
    """
    module_name, colon, attribute = name.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"--function must be 'package.module:name', got {name!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name is not None and (module_name + ".").startswith(missing.name + "."):
            raise  # the module itself (or its package) does not exist
        raise ImportError(_import_failure(module_name, missing)) from missing
    except Exception as error:  # the module's own code failed: say so in one paragraph
        raise ImportError(_import_failure(module_name, error)) from error
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"--function {name!r} names a {type(target).__name__}, which is not callable")
    return target  # type: ignore[no-any-return]


class _SharedRateLimiter(RateLimiter):
    """A `RateLimiter` whose schedule lives in Redis, shared by every worker process of a job."""

    __slots__ = ("_keys", "_script", "_ttl")

    def __init__(self, rate: float, burst: int, client: Redis, keys: JobKeys) -> None:
        super().__init__(rate, burst, time=asyncio.get_running_loop().time)
        self._keys = keys
        self._script = client.register_script(_RATE_SCRIPT)
        # The schedule only needs to outlive the bookings it holds: a burst's worth of slots.
        self._ttl = int(max(60.0, 2 * burst / rate) * 1000)

    async def acquire(self) -> None:
        interval = 1.0 / self.rate
        wait = float(
            await self._script(
                keys=[self._keys.rate, self._keys.meta],
                args=[repr(interval), repr((self.burst - 1) * interval), self._ttl],
            )
        )
        if wait > 0:
            await asyncio.sleep(wait)


async def _pause(seconds: float) -> None:
    """Wait between two tries (a seam, so tests can count the pauses without waiting them)."""
    await asyncio.sleep(seconds)


class _Backoff:
    """Pauses between tries of one loop while Redis cannot be reached: exponential, capped.

    Retrying at once would spin, and a fixed short pause logs a warning several times a second
    for as long as Redis is gone. The pause doubles from 0.1 s up to 5 s; the first failure is
    logged, then one in twelve, then the recovery.
    """

    __slots__ = ("failures", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    async def pause(self, error: BaseException) -> None:
        """Log the failure if it is due; wait before the next try."""
        self.failures += 1
        delay = min(_RETRY_FIRST * 2 ** min(self.failures - 1, 10), _RETRY_MAX)
        if self.failures % _RETRY_WARN_EVERY == 1:
            logger.warning(
                "cannot %s (%s); retrying (%d failed tries, next in %g s)",
                self.what,
                error,
                self.failures,
                delay,
            )
        await _pause(delay)

    def succeeded(self) -> None:
        """A try went through: the next failure starts again from the shortest pause."""
        if self.failures:
            logger.warning("can %s again, after %d failed tries", self.what, self.failures)
            self.failures = 0


class _Job:
    """One job on the queue, as this process sees it."""

    __slots__ = (
        "claim_cursor",
        "gone",
        "halted",
        "inflight",
        "keys",
        "next_keepalive",
        "next_reclaim",
        "policies",
        "problem",
        "running",
        "settings",
    )

    def __init__(self, keys: JobKeys, settings: JobSettings | None, problem: str | None) -> None:
        self.keys = keys
        self.settings = settings
        self.problem = problem
        """Why the job's settings could not be read; its items then fail without running."""
        self.policies: Policies | None = None
        self.inflight: set[bytes] = set()
        """Entry ids this process holds: waiting for a slot, running, or waiting for the writer."""
        self.running: set[asyncio.Task[Any]] = set()
        self.halted = False
        """The controller stopped the job fail-fast: cancel its calls, start none."""
        self.gone = False
        """The job ended (or its controller went away): drop its items, write nothing."""
        self.claim_cursor = b"0-0"
        self.next_keepalive = 0.0
        self.next_reclaim = 0.0

    @property
    def visibility(self) -> float:
        return self.settings.visibility_timeout if self.settings is not None else 30.0


class _Item(NamedTuple):
    job: _Job
    entry_id: bytes
    fields: Any
    deliveries: int


class _WorkerProcess:
    """The pieces of one worker process and the state they share."""

    def __init__(
        self,
        client: Redis,
        function: Callable[[Any], Any],
        *,
        queue: str,
        workers: int,
        name: str,
        poll: float,
    ) -> None:
        self.client = client
        self.queue = queue
        self.workers = workers
        self.name = name
        self.poll = poll
        self.stats = WorkerStats(name, queue, workers)
        self.executor: ThreadPoolExecutor | None = None
        if is_async_callable(function):
            self.function = function
        else:
            # A plain function runs in threads, at most one per slot, as in a local job.
            self.executor = ThreadPoolExecutor(workers, thread_name_prefix="pcmodel-worker")
            self.function = in_threads(function, self.executor)
        self.jobs: dict[str, _Job] = {}
        self.unreadable: set[str] = set()
        self.buffer: asyncio.Queue[Any] = asyncio.Queue()
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        # Invariant: `outstanding` counts the items taken (read or claimed) and not yet handed
        # to the writer; the fetcher never lets it exceed `workers`.
        self.outstanding = 0
        self.wake = asyncio.Event()
        self.offset = 0.0
        self.next_refresh = 0.0
        self.loop = asyncio.get_running_loop()

    # -- the fetcher ------------------------------------------------------------------------

    async def fetch(self, stop: asyncio.Event) -> None:
        """Read new items into the buffer, at most one per free slot, until `stop` is set."""
        backoff = _Backoff("read items from Redis")
        while not stop.is_set():
            free = self.workers - self.outstanding
            try:
                if free <= 0:
                    await self._nap()
                    continue
                if self.loop.time() >= self.next_refresh:
                    await self.refresh()
                readable = {job.keys.work: job for job in self.jobs.values() if not (job.gone or job.halted)}
                if not readable:
                    await self._nap()
                    continue
                # Items left by a stopped process come first: they are older than any new
                # one, and taking them only when a slot is free and no new item is waiting
                # would leave them until the queue runs dry.
                taken = 0
                for candidate in readable.values():
                    if taken < free and self.loop.time() >= candidate.next_reclaim:
                        taken += await self.reclaim(candidate, free - taken)
                if taken:
                    continue
                reply = await self.client.xreadgroup(
                    GROUP,
                    self.name,
                    dict.fromkeys(readable, ">"),
                    count=max(1, free // len(readable)),
                    block=max(1, int(self.poll * 1000)),
                )
            except ResponseError as gone:
                # A job's stream was deleted as we read it (the job ended): look again, after
                # a short pause, so that an error Redis keeps giving cannot make this spin.
                logger.debug("reading items: %s", gone)
                self.next_refresh = 0.0
                await _pause(_RETRY_FIRST)
                continue
            except (RedisConnectionError, RedisTimeoutError, OSError) as unreachable:
                await backoff.pause(unreachable)
                continue
            backoff.succeeded()
            for stream, entries in stream_entries(reply):
                reader = readable.get(stream)
                if reader is None:
                    continue
                for entry_id, fields in entries:
                    self.take(reader, entry_id, fields, 1)

    async def _nap(self) -> None:
        """Wait for a free slot (or a stop) at most one poll interval."""
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll):
                await self.wake.wait()

    def take(self, job: _Job, entry_id: bytes, fields: Any, deliveries: int) -> None:
        """Hold an item and queue it for a slot."""
        job.inflight.add(entry_id)
        self.outstanding += 1
        self.buffer.put_nowait(_Item(job, entry_id, fields, deliveries))

    async def refresh(self) -> None:
        """Learn which jobs run on the queue; forget the ones that ended."""
        self.next_refresh = self.loop.time() + self.poll
        members = await self.client.smembers(jobs_key(self.queue))
        live = {decode_text(member) for member in members}
        for job_id in [job_id for job_id in self.jobs if job_id not in live]:
            self.forget(job_id)
        new = [job_id for job_id in live if job_id not in self.jobs and job_id not in self.unreadable]
        if not new:
            return
        pipe = self.client.pipeline(transaction=False)
        for job_id in new:
            pipe.hget(JobKeys(job_id, self.queue).meta, "spec")
        specs = await pipe.execute()
        for job_id, raw in zip(new, specs, strict=True):
            keys = JobKeys(job_id, self.queue)
            if raw is None:
                # Listed but without settings: its controller went away and the job's keys
                # expired. Take it off the list so no process looks at it again.
                async with self.client.pipeline(transaction=True) as janitor:
                    janitor.srem(jobs_key(self.queue), job_id)
                    janitor.delete(*keys.owned())
                    await janitor.execute()
                logger.info("removed job %s: its controller is gone", job_id)
                continue
            try:
                settings = decode_spec(raw)
            except (ValueError, TypeError, KeyError, RecursionError) as unreadable:
                logger.error(
                    "job %s has settings this worker cannot read (%s): its items fail", job_id, unreadable
                )
                self.jobs[job_id] = _Job(keys, None, str(unreadable))
                continue
            job = _Job(keys, settings, None)
            if (
                settings.timeout is not None
                or settings.retry is not None
                or settings.max_per_second is not None
            ):
                limiter = None
                if settings.max_per_second is not None:
                    limiter = _SharedRateLimiter(settings.max_per_second, settings.burst, self.client, keys)
                job.policies = Policies(settings.timeout, settings.retry, limiter)
            self.jobs[job_id] = job
            logger.info("serving job %s", job_id)

    def forget(self, job_id: str) -> None:
        """The job ended: cancel its calls; its remaining items are dropped unanswered."""
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        job.gone = True
        for call in job.running:
            call.cancel()

    # -- the slots --------------------------------------------------------------------------

    async def slot(self, index: int) -> None:
        """Run items from the buffer until `STOP`; hand each result to the writer."""
        while (item := await self.buffer.get()) is not STOP:
            # A job that ended while its item waited here: drop the item unanswered.
            payload = None if item.job.gone else await self.run(index, item)
            if payload is None:
                item.job.inflight.discard(item.entry_id)
            else:
                self.outbox.put_nowait((item.job, item.entry_id, payload))
            self.outstanding -= 1
            self.wake.set()

    async def run(self, index: int, item: _Item) -> bytes | None:
        """The result message for `item`, or None if its job ended while it ran."""
        job = item.job
        message: dict[str, Any] = {
            "task": None,
            "entry": decode_text(item.entry_id),
            "process": self.name,
            "slot": index,
            "slots": self.workers,
            "deliveries": item.deliveries,
            "attempts": 0,
        }
        settings = job.settings
        if settings is not None and item.deliveries > settings.max_deliveries:
            # Checked before reading the entry: an entry that kills whoever reads it must not
            # be read again. The controller knows which task the entry carries.
            return self._failed(
                message,
                WorkerLostError(
                    f"the item was delivered {item.deliveries} times and every worker that took it "
                    f"stopped before finishing it (max_deliveries={settings.max_deliveries}): it is "
                    "not run again"
                ),
            )
        try:
            work = decode_work(item.fields)
        except MalformedMessageError as malformed:
            self.stats.malformed += 1
            logger.warning("job %s: malformed message %s: %s", job.keys.job_id, message["entry"], malformed)
            return self._failed(message, malformed)
        message["task"] = work.task_id
        if settings is None:
            return self._failed(
                message, MalformedMessageError(f"the job's settings are unreadable: {job.problem}")
            )
        if job.halted:
            message["cancelled"] = True
            return self._failed(message, asyncio.CancelledError())
        # As in a local job, a task starts when a worker slot takes it (a rate-limit wait is
        # part of its duration), and `attempts[0]` counts its calls, retries included.
        attempts = [1]
        started = self.loop.time()
        call = asyncio.create_task(self._call(job, work.params, attempts))
        job.running.add(call)
        failure: BaseException | None = None
        value: Any = None
        try:
            value = await call
        except Exception as exc:  # noqa: BLE001 - a failing call is an outcome, not a crash
            failure = exc
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and cancelled_by_others(current):
                raise  # this process is stopping hard: leave the item to other processes
            if job.gone:
                return None
            failure = exc
            # Only `tend` (a fail-fast halt) and `forget` (the job ended) cancel a call; a call
            # nobody cancelled raised a CancelledError of its own: a plain failure.
            message["cancelled"] = cancelled_by_others(call)
        finally:
            job.running.discard(call)
        finished = self.loop.time()
        message.update(started=started + self.offset, finished=finished + self.offset, attempts=attempts[0])
        if failure is not None:
            self.stats.failed += 1
            message["error"] = encode_error(failure)
        else:
            message["value"] = value
        return encode_result(message)

    def _failed(self, message: dict[str, Any], error: BaseException) -> bytes:
        """A result message for an item that did not run."""
        now = self.loop.time() + self.offset
        message.update(started=now, finished=now, error=encode_error(error))
        self.stats.failed += 1
        return encode_result(message)

    async def _call(self, job: _Job, params: Any, attempts: list[int]) -> Any:
        try:
            if job.policies is None:
                return await self.function(params)
            return await call_with_policies(self.function, params, attempts, *job.policies)
        except (KeyboardInterrupt, SystemExit) as escape:
            # Raised in a task, these would end the event loop and the process with it, and
            # every item it holds for every job: a worker process serves many jobs, so the
            # function's exit is its item's failure. (Ctrl-C and SIGTERM never arrive here:
            # signal handlers stop the process gracefully.)
            raise RuntimeError(
                f"the function raised {type(escape).__name__}({_short(escape)}): a worker process "
                "reports it as the item's failure rather than exiting"
            ) from escape

    # -- the writer -------------------------------------------------------------------------

    async def write(self) -> None:
        """Write results and acknowledge their items, in batches, until `STOP`."""
        while True:
            batch = [await self.outbox.get()]
            while len(batch) < _WRITE_BATCH and not self.outbox.empty():
                batch.append(self.outbox.get_nowait())
            stopping = batch[-1] is STOP
            results = [entry for entry in batch if entry is not STOP]
            if results:
                await self._flush(results)
            if stopping:
                return

    async def _flush(self, results: list[tuple[_Job, bytes, bytes]]) -> None:
        backoff = _Backoff(f"write {len(results)} results to Redis")
        while True:
            pipe = self.client.pipeline(transaction=True)
            for job, entry_id, payload in results:
                if job.gone:
                    continue
                # NOMKSTREAM: a result for a job that ended must not bring its stream back.
                pipe.xadd(job.keys.results, {b"r": payload}, nomkstream=True)
                pipe.xack(job.keys.work, GROUP, entry_id)
                pipe.xdel(job.keys.work, entry_id)
            try:
                answers = await pipe.execute(raise_on_error=False)
            except (RedisError, OSError) as unreachable:
                # Redis is gone, or refused the whole transaction (out of memory, read-only):
                # the items stay claimed by this process (the keeper goes on refreshing them),
                # so writing again is safe: a result written twice is dropped by the controller.
                await backoff.pause(unreachable)
                continue
            backoff.succeeded()
            refused = [answer for answer in answers if isinstance(answer, Exception)]
            if refused:
                # A job's keys replaced by something else (not a stream): that job fails on its
                # controller's side; this process goes on with the others.
                logger.error(
                    "Redis refused %d of the writes of %d results: %s", len(refused), len(results), refused[0]
                )
            break
        for job, entry_id, _ in results:
            job.inflight.discard(entry_id)
        self.stats.items += len(results)

    # -- the keeper -------------------------------------------------------------------------

    async def keep(self) -> None:
        """Heartbeat, keep this process's items claimed, watch for jobs that end or halt."""
        next_presence = 0.0
        next_sync = self.loop.time() + _RESYNC_EVERY
        backoff = _Backoff("reach Redis to send heartbeats")
        while True:
            now = self.loop.time()
            try:
                if now >= next_presence:
                    await self.heartbeat()
                    next_presence = now + PRESENCE_INTERVAL
                if now >= next_sync:
                    self.offset = await clock_offset(self.client, 3)
                    next_sync = now + _RESYNC_EVERY
                await self.tend(now)
            except ResponseError as error:
                logger.debug("tending jobs: %s", error)  # a job's keys were deleted meanwhile
            except (RedisConnectionError, RedisTimeoutError, OSError) as error:
                await backoff.pause(error)
                continue
            backoff.succeeded()
            await asyncio.sleep(self.poll)

    async def heartbeat(self) -> None:
        """Say this process is alive, with what it serves; forget processes long silent."""
        now = self.loop.time() + self.offset
        host, pid, _ = self.name.rsplit(":", 2)
        info = json.dumps(
            {
                "name": self.name,
                "host": host,
                "pid": int(pid),
                "queue": self.queue,
                "workers": self.workers,
                "items": self.stats.items,
            }
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(workers_key(self.queue), {self.name: now})
        pipe.set(worker_key(self.name), info, px=int(PRESENCE_TTL * 1000))
        pipe.zremrangebyscore(workers_key(self.queue), "-inf", now - PRESENCE_TTL)
        await pipe.execute()

    async def leave(self) -> None:
        """Take this process off the queue's list of workers."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(workers_key(self.queue), self.name)
        pipe.delete(worker_key(self.name))
        await pipe.execute()

    async def tend(self, now: float) -> None:
        """One round of care for the jobs: halts, ends, keep-alive claims."""
        holding = [job for job in self.jobs.values() if job.inflight and not job.gone]
        if holding:
            pipe = self.client.pipeline(transaction=False)
            for job in holding:
                pipe.exists(job.keys.meta)
                pipe.hget(job.keys.meta, "halt")
            answers = await pipe.execute()
            for index, job in enumerate(holding):
                exists, halt = answers[2 * index], answers[2 * index + 1]
                if not exists:
                    self.forget(job.keys.job_id)
                elif halt == b"1" and not job.halted:
                    job.halted = True
                    for call in job.running:
                        call.cancel()
        for job in list(self.jobs.values()):
            if job.gone:
                continue
            if job.inflight and now >= job.next_keepalive:
                # Claiming our own items again resets their idle time: while this process is
                # alive, no other takes them over, however long a call runs.
                await self.client.xclaim(job.keys.work, GROUP, self.name, 0, list(job.inflight), justid=True)
                job.next_keepalive = now + job.visibility / 3

    async def reclaim(self, job: _Job, free: int) -> int:
        """Take over up to `free` items a stopped process left idle past the visibility timeout.

        Returns how many were taken. While there may be more to take, the next look is at
        once; otherwise after half a visibility timeout.
        """
        reply = await self.client.xautoclaim(
            job.keys.work,
            GROUP,
            self.name,
            int(job.visibility * 1000),
            start_id=job.claim_cursor,
            count=free,
        )
        job.claim_cursor = cursor = reply[0]
        claimed = reply[1]
        # Redis 7 also lists the claimed ids whose entries no longer exist: drop them.
        dead = list(reply[2]) if len(reply) > 2 else []
        fresh = []
        for entry_id, fields in claimed:
            if fields is None:
                dead.append(entry_id)
            elif entry_id not in job.inflight:
                fresh.append((entry_id, fields))
        if dead:
            await self.client.xack(job.keys.work, GROUP, *dead)
        more = bool(claimed) or cursor not in (b"0-0", "0-0")
        job.next_reclaim = self.loop.time() + (0.0 if more else job.visibility / 2)
        if not fresh:
            return 0
        pending = await self.client.xpending_range(
            job.keys.work,
            GROUP,
            min=fresh[0][0],
            max=fresh[-1][0],
            count=len(fresh) + len(job.inflight),
            consumername=self.name,
        )
        deliveries = {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}
        for entry_id, fields in fresh:
            self.take(job, entry_id, fields, deliveries.get(entry_id, 2))
        self.stats.taken_over += len(fresh)
        logger.warning(
            "job %s: took over %d item%s left by a worker process that stopped",
            job.keys.job_id,
            len(fresh),
            "" if len(fresh) == 1 else "s",
        )
        return len(fresh)


def _short(error: BaseException) -> str:
    """`repr` of an exception's arguments, at most 80 characters."""
    try:
        text = ", ".join(repr(arg) for arg in error.args)
    except Exception:  # noqa: BLE001 - only for a message
        text = "..."
    return text if len(text) <= 80 else text[:77] + "..."


def _process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def serve_worker(
    url: str,
    function: Callable[[Any], Any],
    *,
    workers: int = 50,
    queue: str | None = None,
    stop: asyncio.Event | None = None,
    name: str | None = None,
    poll: float = 0.2,
    on_ready: Callable[[WorkerStats], object] | None = None,
    round_trip_timeout: float = 10.0,
) -> WorkerStats:
    """Serve a queue's jobs from Redis until `stop` is set; return what was done.

    This is what `python -m pcmodel worker` runs. It can also run inside any asyncio program
    (set `stop` to end it gracefully: no new items, every item held is finished and
    acknowledged first; cancel it to end it at once, leaving its items to other processes).

    Args:
        url: the Redis server, like `redis://127.0.0.1:6379/0`.
        function: called with each item's params, like `run_job`'s `function` (an `async def`
            is awaited; a plain function runs in a thread). Its return value must be JSON.
        workers: the most calls in flight at once in this process (>= 1).
        queue: the queue to serve; by default `queue_name(function)`, the function's
            `module:qualname`, which is what a controller running the same function uses.
        stop: set it to stop gracefully; None to run until cancelled.
        name: this process's consumer name; by default `host:pid:random`.
        poll: seconds between two looks for new jobs (and the longest a read blocks).
        on_ready: called once connected and registered, with the (live) stats.
        round_trip_timeout: seconds Redis gets to answer each request (see
            `Broker.round_trip_timeout`).

    Once serving, losing Redis is not fatal: each piece retries with a growing pause (0.1 s
    doubling up to 5 s), logging the first failure, one in twelve after, and the recovery.

    Raises:
        TypeError, ValueError: a bad argument.
        ConnectionError: the Redis server cannot be reached, does not answer, or refuses the
            connection at start (the message names the URL, without its password).
    """
    check_url(url)
    if not callable(function):
        raise TypeError(f"function must be callable, got {function!r} ({type(function).__name__})")
    check_int("workers", workers, 1)
    queue = queue_name(function) if queue is None else queue
    if not isinstance(queue, str) or not queue:
        raise ValueError(f"queue must be a non-empty string, got {queue!r}")
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll <= 60:
        raise ValueError(f"poll must be a number of seconds in (0, 60], got {poll!r}")
    round_trip_timeout = check_seconds("round_trip_timeout", round_trip_timeout)
    stop = asyncio.Event() if stop is None else stop
    client = connect(url, round_trip_timeout)
    process = _WorkerProcess(
        client, function, queue=queue, workers=workers, name=name or _process_name(), poll=poll
    )
    try:
        process.offset = await first_contact(client, url)
        await process.heartbeat()
        if on_ready is not None:
            on_ready(process.stats)
        async with asyncio.TaskGroup() as group:
            keeper = group.create_task(process.keep(), name="pcmodel-broker-keeper")
            writer = group.create_task(process.write(), name="pcmodel-broker-writer")
            slots = [
                group.create_task(process.slot(index), name=f"pcmodel-broker-slot-{index}")
                for index in range(workers)
            ]
            await group.create_task(process.fetch(stop), name="pcmodel-broker-fetcher")
            # Stopping: no new items; every item held runs to the end and is acknowledged.
            for _ in slots:
                process.buffer.put_nowait(STOP)
            await asyncio.wait(slots)
            process.outbox.put_nowait(STOP)
            await writer
            keeper.cancel()
        await process.leave()
    finally:
        if process.executor is not None:
            process.executor.shutdown(wait=False, cancel_futures=True)
        await client.aclose()
    return process.stats


def _import_failure(module: str, error: BaseException) -> str:
    """One paragraph on a module that raised as it was imported: what, and where."""
    where = ""
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        where = f" (at {frames[-1].filename}, line {frames[-1].lineno})"
    return (
        f"importing module {module!r} raised {type(error).__name__}: {error}{where}. Fix the module, "
        f"or check that it imports on its own: python -c 'import {module}'"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcmodel worker",
        description=(
            "Serve jobs from a Redis broker: take items, run FUNCTION on each with up to WORKERS "
            "calls at once, write each result back. Start as many as you like, on any host. "
            "SIGTERM or Ctrl-C stops gracefully (items in flight finish and are acknowledged); "
            "a second signal stops at once."
        ),
    )
    parser.add_argument(
        "--broker", required=True, metavar="URL", help="Redis URL, e.g. redis://127.0.0.1:6379/0"
    )
    parser.add_argument(
        "--function",
        required=True,
        metavar="MODULE:NAME",
        help="the function to run, importable here, e.g. pcmodel.workloads:fetch_price",
    )
    parser.add_argument(
        "--workers", type=int, default=50, metavar="N", help="calls in flight at once (default 50)"
    )
    parser.add_argument(
        "--queue",
        metavar="NAME",
        help="the queue to serve (default: the function's module:qualname, as the controller uses)",
    )
    parser.add_argument(
        "--round-trip-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds Redis gets to answer each request, connecting included (default 10)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on stderr (default WARNING)",
    )
    return parser


def worker_main(argv: Sequence[str] | None = None) -> int:
    """`python -m pcmodel worker ...`: serve until SIGTERM or Ctrl-C; return the exit code.

    Exit codes: 0 after a graceful stop, 1 if the broker cannot be reached or the process was
    stopped at once (a second signal), 2 for bad arguments.
    """
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        url = check_url(args.broker)
        check_int("--workers", args.workers, 1)
        check_seconds("--round-trip-timeout", args.round_trip_timeout)
        function = load_function(args.function)
        queue = args.queue if args.queue is not None else queue_name(function)
    except (ImportError, AttributeError) as error:
        parser.error(f"cannot import --function {args.function!r}: {error}")
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level,
            stream=sys.stderr,
            format="%(asctime)s pcmodel worker %(levelname)s: %(message)s",
        )
    logger.setLevel(args.log_level)
    return asyncio.run(_serve_until_signalled(url, function, queue, args.workers, args.round_trip_timeout))


async def _serve_until_signalled(
    url: str, function: Callable[[Any], Any], queue: str, workers: int, round_trip_timeout: float
) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stop = asyncio.Event()
    name = _process_name()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print(
                f"pcmodel worker {name}: stopping: finishing the items in flight "
                "(signal again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            stop.set()
        else:
            main.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)

    def ready(stats: WorkerStats) -> None:
        print(
            f"pcmodel worker {name}: serving queue {queue!r} with {workers} workers on {redacted(url)}",
            flush=True,
        )

    try:
        stats = await serve_worker(
            url,
            function,
            workers=workers,
            queue=queue,
            stop=stop,
            name=name,
            on_ready=ready,
            round_trip_timeout=round_trip_timeout,
        )
    except asyncio.CancelledError:
        print(
            f"pcmodel worker {name}: stopped at once; other worker processes take over its items "
            "after the visibility timeout",
            file=sys.stderr,
            flush=True,
        )
        return 1
    except ConnectionError as error:
        print(f"pcmodel worker: {error}", file=sys.stderr, flush=True)
        return 1
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        print(
            f"pcmodel worker: cannot reach the broker at {redacted(url)}: {error}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    print(
        f"pcmodel worker {name}: stopped after {stats.items} items ({stats.failed} failed, "
        f"{stats.malformed} malformed, {stats.taken_over} taken over from stopped workers)",
        flush=True,
    )
    return 0
