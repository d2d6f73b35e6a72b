"""The keeper: the process's heartbeat, keep-alive claims on its items, and the jobs' ends.

Every poll interval, `keep`:

- sends the process's heartbeat (`heartbeat`: its entry in the queue's workers set, with a
  TTL'd key of its host, pid, slots and items done), which is what `live_workers` lists, and
  forgets processes silent for longer than the presence TTL;
- tends the jobs it serves (`tend`): a job whose keys were deleted has ended, so its calls are
  cancelled and its items dropped; a job the controller halted (fail-fast) has its calls
  cancelled, which fails their items; a job whose knobs were turned gets them applied
  (`_tuning`); and every third of a visibility timeout, the items still held are claimed again, which resets their idle time, so no other process takes them
  over (`_reclaim`) however long a call runs;
- once a minute, measures again the offset between this process's clock and the server's, so
  the times in result messages are on the server's clock, like every other process's.

Losing Redis is not fatal: the loop retries with a growing pause. `leave` takes the process off
the workers set when it stops gracefully.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Final

from pcmodel.broker._process import ProcessState
from pcmodel.broker._redis import (
    GROUP,
    PRESENCE_INTERVAL,
    PRESENCE_TTL,
    RedisConnectionError,
    RedisTimeoutError,
    ResponseError,
    clock_offset,
    worker_key,
    workers_key,
)
from pcmodel.broker._tuning import apply_knobs

__all__ = ["heartbeat", "keep", "leave", "tend"]

logger = logging.getLogger("pcmodel.broker")

_RESYNC_EVERY: Final = 60.0


async def keep(process: ProcessState) -> None:
    """Heartbeat, keep this process's items claimed, watch for jobs that end or halt."""
    next_presence = 0.0
    next_sync = process.loop.time() + _RESYNC_EVERY
    backoff = process.backoff("reach Redis to send heartbeats")
    while True:
        now = process.loop.time()
        try:
            if now >= next_presence:
                await heartbeat(process)
                next_presence = now + PRESENCE_INTERVAL
            if now >= next_sync:
                process.offset = await clock_offset(process.client, 3)
                next_sync = now + _RESYNC_EVERY
            await tend(process, now)
        except ResponseError as error:
            logger.debug("tending jobs: %s", error)  # a job's keys were deleted meanwhile
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            await backoff.pause(error)
            continue
        backoff.succeeded()
        await asyncio.sleep(process.poll)


async def heartbeat(process: ProcessState) -> None:
    """Say this process is alive, with what it serves; forget processes long silent."""
    now = process.loop.time() + process.offset
    host, pid, _ = process.name.rsplit(":", 2)
    info = json.dumps(
        {
            "name": process.name,
            "host": host,
            "pid": int(pid),
            "queue": process.queue,
            "workers": process.workers,
            "items": process.stats.items,
        }
    )
    pipe = process.client.pipeline(transaction=False)
    pipe.zadd(workers_key(process.queue), {process.name: now})
    pipe.set(worker_key(process.name), info, px=int(PRESENCE_TTL * 1000))
    pipe.zremrangebyscore(workers_key(process.queue), "-inf", now - PRESENCE_TTL)
    await pipe.execute()


async def leave(process: ProcessState) -> None:
    """Take this process off the queue's list of workers."""
    pipe = process.client.pipeline(transaction=False)
    pipe.zrem(workers_key(process.queue), process.name)
    pipe.delete(worker_key(process.name))
    await pipe.execute()


async def tend(process: ProcessState, now: float) -> None:
    """One round of care for the jobs: halts, ends, knobs, keep-alive claims."""
    serving = [job for job in process.jobs.values() if not job.gone]
    if serving:
        pipe = process.client.pipeline(transaction=False)
        for job in serving:
            pipe.exists(job.keys.meta)
            pipe.hmget(job.keys.meta, ["halt", "knobs"])
        answers = await pipe.execute()
        for index, job in enumerate(serving):
            exists, (halt, knobs) = answers[2 * index], answers[2 * index + 1]
            if not exists:
                process.forget(job.keys.job_id)
                continue
            apply_knobs(process, job, knobs)
            if halt == b"1" and not job.halted:
                job.halted = True
                for call in job.running:
                    call.cancel()
    for job in list(process.jobs.values()):
        if job.gone:
            continue
        if job.inflight and now >= job.next_keepalive:
            # Claiming our own items again resets their idle time: while this process is
            # alive, no other takes them over, however long a call runs.
            await process.client.xclaim(
                job.keys.work, GROUP, process.name, 0, list(job.inflight), justid=True
            )
            job.next_keepalive = now + job.visibility / 3
