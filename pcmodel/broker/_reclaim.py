"""Taking over: the items a stopped worker process left behind, after the visibility timeout.

A process killed mid-task (`kill -9`, a lost host) holds items nobody will finish. Redis keeps
each item pending with the process that read it; once an item has sat idle longer than the
job's visibility timeout, `reclaim` claims it for this process (`XAUTOCLAIM`) and hands it to
the slots with its delivery count, so a slot can refuse an item that has already stopped too
many processes (`max_deliveries`). Live processes never lose their items this way: the keeper
(`_keeper`) claims them again well within the timeout, however long a call runs.

The fetcher calls `reclaim` before reading new items, never for more items than it has free
slots.
"""

from __future__ import annotations

import logging

from pcmodel.broker._process import Job, ProcessState
from pcmodel.broker._redis import GROUP

__all__ = ["reclaim"]

logger = logging.getLogger("pcmodel.broker")


async def reclaim(process: ProcessState, job: Job, free: int) -> int:
    """Take over up to `free` items a stopped process left idle past the visibility timeout.

    Returns how many were taken. While there may be more to take, the next look is at
    once; otherwise after half a visibility timeout.
    """
    reply = await process.client.xautoclaim(
        job.keys.work,
        GROUP,
        process.name,
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
        await process.client.xack(job.keys.work, GROUP, *dead)
    more = bool(claimed) or cursor not in (b"0-0", "0-0")
    job.next_reclaim = process.loop.time() + (0.0 if more else job.visibility / 2)
    if not fresh:
        return 0
    pending = await process.client.xpending_range(
        job.keys.work,
        GROUP,
        min=fresh[0][0],
        max=fresh[-1][0],
        count=len(fresh) + len(job.inflight),
        consumername=process.name,
    )
    deliveries = {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}
    for entry_id, fields in fresh:
        process.take(job, entry_id, fields, deliveries.get(entry_id, 2))
    process.stats.taken_over += len(fresh)
    logger.warning(
        "job %s: took over %d item%s left by a worker process that stopped",
        job.keys.job_id,
        len(fresh),
        "" if len(fresh) == 1 else "s",
    )
    return len(fresh)
