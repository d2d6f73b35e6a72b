"""The writer: each result to its job's result stream, and its item acknowledged, at once.

For each result the slots put in the outbox, `write` adds the result to the job's result
stream and acknowledges and deletes its item (`XADD`, `XACK`, `XDEL`) in one `MULTI`
transaction, so an item is acknowledged only once its result is written, and never lost in
between. Results go in batches of up to 500: whatever has queued up while the previous batch
was written.

If Redis is lost, or refuses the whole transaction, the batch is written again after a growing
pause: its items stay claimed by this process meanwhile (the keeper goes on refreshing them),
and a result written twice is dropped by the controller. A write Redis refuses for one job (its
keys replaced by something that is not a stream) is logged, and the process goes on.
"""

from __future__ import annotations

import logging
from typing import Final

from pcmodel._queues import STOP
from pcmodel.broker._process import Job, ProcessState
from pcmodel.broker._redis import GROUP, RedisError

__all__ = ["write"]

logger = logging.getLogger("pcmodel.broker")

_WRITE_BATCH: Final = 500


async def write(process: ProcessState) -> None:
    """Write results and acknowledge their items, in batches, until `STOP`."""
    while True:
        batch = [await process.outbox.get()]
        while len(batch) < _WRITE_BATCH and not process.outbox.empty():
            batch.append(process.outbox.get_nowait())
        stopping = batch[-1] is STOP
        results = [entry for entry in batch if entry is not STOP]
        if results:
            await _flush(process, results)
        if stopping:
            return


async def _flush(process: ProcessState, results: list[tuple[Job, bytes, bytes]]) -> None:
    backoff = process.backoff(f"write {len(results)} results to Redis")
    while True:
        pipe = process.client.pipeline(transaction=True)
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
    process.stats.items += len(results)
