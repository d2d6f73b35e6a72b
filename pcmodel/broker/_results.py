"""The reader of a broker job's result stream: entries in, each task's outcome out, once.

A piece of `pcmodel.broker.transport.RedisTransport` (a mixin over the job's state): it
follows the result stream, de-duplicates results by task id, gives each worker process its
band of timeline lanes, counts what is not a result a worker wrote (`malformed`), and hands
each outcome to the controller's result queue as a row of `TaskResult` fields.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

from pcmodel._summary import Tally
from pcmodel.broker._redis import BoundedRedis, JobKeys, stream_entries
from pcmodel.broker.messages import MalformedMessageError, ResultMessage, decode_error, decode_results
from pcmodel.broker.records import WorkerProcess
from pcmodel.spec import JobSpec
from pcmodel.stopping import JobControl
from pcmodel.transport import Job

__all__ = ["Lanes", "ResultReader"]

logger = logging.getLogger("pcmodel.broker")

_READ_BATCH: Final = 500
"""Most entries one read takes."""


@dataclass(slots=True)
class Lanes:
    """The band of timeline lanes of one worker process: one lane per worker slot."""

    name: str
    first: int
    workers: int
    tasks: int = 0


class ResultReader:
    """Follows a job's result stream (see the module); `RedisTransport` holds the state."""

    client: BoundedRedis
    keys: JobKeys
    spec: JobSpec
    job: Job | None
    loop: asyncio.AbstractEventLoop
    offset: float
    origin: float
    unfinished: dict[int, tuple[Any, float]]
    entry_tasks: dict[str, int]
    producing_done: bool
    done: asyncio.Event
    space: asyncio.Event
    tally: Tally
    lanes: dict[str, Lanes]
    next_lane: int
    malformed_seen: set[str]
    duplicates: int
    redelivered: int
    malformed: int
    last_progress: float

    @property
    def control(self) -> JobControl:
        assert self.job is not None
        return self.job.control

    def since_start(self) -> float:
        return self.loop.time() - self.origin

    def processes(self) -> tuple[WorkerProcess, ...]:
        """The worker processes that delivered results, in the order of their lanes."""
        return tuple(
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
                await self._take(fields)
            # Read results leave Redis at once: the stream stays short however long the job.
            await self.client.xdel(self.keys.results, *(entry_id for entry_id, _ in entries))
            if self.producing_done and not self.unfinished:
                self.done.set()
                return

    async def _take(self, fields: Any) -> None:
        """Hand one result stream entry's results on as their tasks' results, or count why not."""
        messages = decode_results(fields)
        # An entry that is not all results a worker wrote counts once, however many of its
        # lines are unreadable; the lines that are results count all the same.
        problem = next((message for message in messages if isinstance(message, MalformedMessageError)), None)
        if problem is not None:
            self._malformed(problem)
        for message in messages:
            if isinstance(message, MalformedMessageError):
                if message.task is not None and message.task in self.unfinished:
                    await self._unreadable_result(message.task, message)
            else:
                await self._take_one(message)

    async def _take_one(self, message: ResultMessage) -> None:
        """Hand one result message on as its task's result, or count why not."""
        task_id = message.task
        if task_id is None:
            # A worker's report on a work entry it did not read: one this controller sent
            # (given up after max_deliveries) is that task's result; any other is malformed.
            task_id = self.entry_tasks.get(message.entry)
            if task_id is None:
                if message.entry in self.malformed_seen:
                    self.duplicates += 1
                else:
                    self.malformed_seen.add(message.entry)
                    self._malformed(decode_error(message.error, message.process))
                return
        known = self.unfinished.get(task_id)
        if known is None:
            self.duplicates += 1
            return
        params, enqueued_at = known
        lane = self._lane(message)
        started = message.started - self.offset - self.origin
        finished = message.finished - self.offset - self.origin
        # Clocks agree to within half a round trip: never report a start before the enqueue.
        started = max(started, enqueued_at)
        finished = max(finished, started)
        error = decode_error(message.error, message.process) if message.error is not None else None
        if message.deliveries > 1:
            self.redelivered += 1
        self.lanes[message.process].tasks += 1
        self.last_progress = self.loop.time()
        await self._deliver(
            task_id,
            params,
            message.value,
            error,
            lane,
            enqueued_at,
            started,
            finished,
            message.attempts,
            cancelled=message.cancelled,
        )
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
        await self._failed_here(task_id, params, error, enqueued_at=enqueued_at, at=now, attempts=1)
        self.space.set()

    def _malformed(self, problem: BaseException) -> None:
        """Count an entry that is not a message pcmodel wrote; log the first one."""
        self.malformed += 1
        if self.malformed == 1:
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
            lanes = self.lanes[process] = Lanes(process, self.next_lane, message.slots)
            self.next_lane += message.slots
        return lanes.first + min(message.slot, lanes.workers - 1)

    async def _failed_here(
        self, task_id: int, params: Any, error: BaseException, *, enqueued_at: float, at: float, attempts: int
    ) -> None:
        """Report a task that failed on this side, in no worker's lane (-1), at `at`."""
        await self._deliver(task_id, params, None, error, -1, enqueued_at, at, at, attempts)

    async def _deliver(
        self,
        task_id: int,
        params: Any,
        value: Any,
        error: BaseException | None,
        lane: int,
        enqueued_at: float,
        started: float,
        finished: float,
        attempts: int,
        *,
        cancelled: bool = False,
    ) -> None:
        """Count a result and hand it to the result handlers, as a row of `TaskResult` fields."""
        self.tally.count(error, started, finished, attempts)
        # Only a fail-fast stop cancels calls; a CancelledError the function raised of its own
        # is a plain failure.
        if error is not None and cancelled:
            self.tally.cancelled += 1
            self.control.note_stop_cancel(error)  # not an outcome of the call (see `JobBook`)
        assert self.job is not None
        await self.job.result_queue.put(
            (task_id, params, value, error, lane, enqueued_at, started, finished, attempts)
        )
        if error is not None and self.spec.fail_fast:
            self.control.task_failed(error)


def _pid_of(name: str) -> int:
    parts = name.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0
