"""The writer: each result to its job's result stream, and its item acknowledged, at once.

For the results the slots put in the outbox, `write` adds them to their job's result stream
and acknowledges and deletes their items (`XADD`, `XACK`, `XDEL`) in one `MULTI` transaction,
so an item is acknowledged only once its result is written, and never lost in between.
Results go in batches of up to 500: whatever has queued up while the previous batch was
written. Each job's results of a batch travel in one result stream entry (one per line, up
to `_ENTRY_BYTES` of them), and its items are acknowledged and deleted by one `XACK` and one
`XDEL`: three commands per job and batch instead of three per item (with no-op items, the
worker's CPU per item fell from 55 to 42 us and Redis's from 16 to 12 us:
`benchmarks.bench_broker_noop`).

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
from pcmodel.broker.messages import encode_results

__all__ = ["write"]

logger = logging.getLogger("pcmodel.broker")

_WRITE_BATCH: Final = 500
_ENTRY_BYTES: Final = 256 * 1024
"""A result stream entry takes further results until it holds this many bytes (large values
then travel in several entries rather than one huge one)."""


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
    by_job: dict[Job, tuple[list[bytes], list[bytes]]] = {}
    for job, entry_id, payload in results:
        entry_ids, payloads = by_job.setdefault(job, ([], []))
        entry_ids.append(entry_id)
        payloads.append(payload)
    while True:
        pipe = process.client.pipeline(transaction=True)
        for job, (entry_ids, payloads) in by_job.items():
            if job.gone:
                continue
            for entry in _entries(payloads):
                # NOMKSTREAM: a result for a job that ended must not bring its stream back.
                pipe.xadd(job.keys.results, {b"r": entry}, nomkstream=True)
            pipe.xack(job.keys.work, GROUP, *entry_ids)
            pipe.xdel(job.keys.work, *entry_ids)
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
        job.written_soon -= 1
    process.stats.items += len(results)


def _entries(payloads: list[bytes]) -> list[bytes]:
    """Result messages as result stream entries of up to about `_ENTRY_BYTES` each."""
    entries: list[bytes] = []
    start, size = 0, 0
    for index, payload in enumerate(payloads):
        if size and size + len(payload) > _ENTRY_BYTES:
            entries.append(encode_results(payloads[start:index]))
            start, size = index, 0
        size += len(payload) + 1
    entries.append(encode_results(payloads[start:]))
    return entries
