"""The fetcher: takes a queue's items from Redis into the process, one per free slot.

`fetch` reads new items of every job on the queue with `XREADGROUP`, never more than there are
free worker slots, so items wait in Redis, where any process can take them, rather than in
one process's memory. Before new items it takes over the items of processes that stopped
(`_reclaim`), since those are older. `refresh` learns which jobs run on the queue (and their
settings: timeout, retry, the shared rate limit; and their knobs, so that a job paused or
turned before this process heard of it is served as asked from its first item) and forgets
the ones that ended.
With no job to serve, it blocks on the queue's news stream, where each controller announces
its job as it starts it, so an idle process starts on a new job at once. A process busy with
another job (even one whose controller is gone and whose items linger) does not read the
news: it finds a new job at its next refresh, within one poll interval (`poll`, 0.2 s by
default).

Every item taken goes through `ProcessState.take`, into the buffer the slots read. Losing
Redis is not fatal: the loop retries with a growing pause until `stop` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pcmodel.broker._process import RETRY_FIRST, Job, ProcessState
from pcmodel.broker._reclaim import reclaim
from pcmodel.broker._redis import (
    GROUP,
    JobKeys,
    RedisConnectionError,
    RedisTimeoutError,
    ResponseError,
    decode_text,
    jobs_key,
    news_key,
    stream_entries,
)
from pcmodel.broker._tuning import apply_knobs, room, start_job
from pcmodel.broker.messages import decode_spec

__all__ = ["fetch", "refresh"]

logger = logging.getLogger("pcmodel.broker")


async def fetch(process: ProcessState, stop: asyncio.Event) -> None:
    """Read new items into the buffer, at most one per free slot, until `stop` is set."""
    backoff = process.backoff("read items from Redis")
    refused = False
    while not stop.is_set():
        free = process.workers - process.outstanding
        try:
            if free <= 0:
                await _nap(process)
                continue
            if process.loop.time() >= process.next_refresh:
                await refresh(process)
            readable = {job.keys.work: job for job in process.jobs.values() if not (job.gone or job.halted)}
            if not readable:
                await _wait_for_news(process)
                continue
            # A job with a gate here (knobs turned, or adaptive) takes no more than it may start.
            rooms = {key: room(job) for key, job in readable.items()}
            readable = {key: job for key, job in readable.items() if rooms[key] != 0}
            if not readable:
                await _nap(process)
                continue
            # Items left by a stopped process come first: they are older than any new
            # one, and taking them only when a slot is free and no new item is waiting
            # would leave them until the queue runs dry.
            taken = 0
            for key, candidate in readable.items():
                if taken < free and process.loop.time() >= candidate.next_reclaim:
                    taken += await reclaim(process, candidate, min(free - taken, rooms[key] or free))
            if taken:
                continue
            count = min([free // len(readable), *(left for left in rooms.values() if left)])
            reply = await process.client.xreadgroup(
                GROUP,
                process.name,
                dict.fromkeys(readable, ">"),
                count=max(1, count),
                block=max(1, int(process.poll * 1000)),
            )
        except ResponseError as gone:
            # A job's stream was deleted as we read it (the job ended): look again at once,
            # as the next job may be waiting; after a short pause if it happens twice in a
            # row, so that an error Redis keeps giving cannot make this spin.
            logger.debug("reading items: %s", gone)
            process.next_refresh = 0.0
            if refused:
                await process.pause(RETRY_FIRST)
            refused = True
            continue
        except (RedisConnectionError, RedisTimeoutError, OSError) as unreachable:
            await backoff.pause(unreachable)
            continue
        backoff.succeeded()
        refused = False
        for stream, entries in stream_entries(reply):
            reader = readable.get(stream)
            if reader is None:
                continue
            for entry_id, fields in entries:
                process.take(reader, entry_id, fields, 1)


async def _nap(process: ProcessState) -> None:
    """Wait for a free slot (or a stop) at most one poll interval."""
    process.wake.clear()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(process.poll):
            await process.wake.wait()


async def _wait_for_news(process: ProcessState) -> None:
    """With no job to serve, wait (at most one poll interval) for a job to start on the queue.

    Every controller announces its job in the queue's news stream as it starts it; reading
    it from the last announcement seen, blocking, lets an idle process start on a new job at
    once, where looking every poll interval made it wait 0.1 s on average.
    """
    first_look = process.news_seen == b"0-0"
    reply = await process.client.xread(
        {news_key(process.queue): process.news_seen}, block=max(1, int(process.poll * 1000))
    )
    for _, entries in stream_entries(reply):
        if not entries:
            continue
        process.news_seen = entries[-1][0]
        if first_look:
            # Announcements from before this process started may be of jobs long ended:
            # the list of running jobs says which are not.
            process.next_refresh = 0.0
            continue
        for _, fields in entries:
            # An announcement carries its job's settings: the process starts on it at once,
            # without asking for them (a job that ended meanwhile is forgotten as usual).
            job_id, raw = fields.get(b"job"), fields.get(b"spec")
            if raw is None or job_id is None:
                process.next_refresh = 0.0  # not an announcement this side wrote: look
                continue
            job_id = decode_text(job_id)
            if job_id not in process.jobs and job_id not in process.unreadable:
                # The job may have been paused or turned since it was announced: its knobs
                # apply before this process takes any of its items.
                knobs = await process.client.hget(JobKeys(job_id, process.queue).meta, "knobs")
                _serve(process, job_id, raw, knobs)


async def refresh(process: ProcessState) -> None:
    """Learn which jobs run on the queue; forget the ones that ended."""
    process.next_refresh = process.loop.time() + process.poll
    members = await process.client.smembers(jobs_key(process.queue))
    live = {decode_text(member) for member in members}
    for job_id in [job_id for job_id in process.jobs if job_id not in live]:
        process.forget(job_id)
    new = [job_id for job_id in live if job_id not in process.jobs and job_id not in process.unreadable]
    if not new:
        return
    pipe = process.client.pipeline(transaction=False)
    for job_id in new:
        # With its knobs: a job paused or turned before this process heard of it is served
        # as its controller asks from its first item on.
        pipe.hmget(JobKeys(job_id, process.queue).meta, ["spec", "knobs"])
    answers = await pipe.execute()
    for job_id, (raw, knobs) in zip(new, answers, strict=True):
        keys = JobKeys(job_id, process.queue)
        if raw is None:
            # Listed but without settings: its controller went away and the job's keys
            # expired. Take it off the list so no process looks at it again.
            async with process.client.pipeline(transaction=True) as janitor:
                janitor.srem(jobs_key(process.queue), job_id)
                janitor.delete(*keys.owned())
                await janitor.execute()
            logger.info("removed job %s: its controller is gone", job_id)
            continue
        _serve(process, job_id, raw, knobs)


def _serve(process: ProcessState, job_id: str, raw: object, knobs: object) -> None:
    """Start serving a job, from its settings and knobs (`raw`, `knobs`: as its controller wrote them)."""
    keys = JobKeys(job_id, process.queue)
    try:
        settings = decode_spec(raw)
    except (ValueError, TypeError, KeyError, RecursionError) as unreadable:
        logger.error("job %s has settings this worker cannot read (%s): its items fail", job_id, unreadable)
        process.jobs[job_id] = Job(keys, None, str(unreadable))
        return
    job = Job(keys, settings, None)
    start_job(process, job)
    process.jobs[job_id] = job
    apply_knobs(process, job, knobs)
    logger.info("serving job %s", job_id)
