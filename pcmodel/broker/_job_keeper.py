"""The keeper of a broker job: its keys kept alive, and a word when nothing moves.

A piece of `pcmodel.broker.transport.RedisTransport` (a mixin over the job's state): it
refreshes the expiry of the job's keys (a controller killed outright leaves nothing behind for
long), warns while no worker process serves the queue, and once per stall when no result has
come for `stall_after` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Final

from pcmodel.broker._redis import PRESENCE_TTL, BoundedRedis, JobKeys, workers_key
from pcmodel.spec import JobSpec

__all__ = ["JobKeeper"]

logger = logging.getLogger("pcmodel.broker")

_NO_WORKER_WARNING_EVERY: Final = 30.0


class JobKeeper:
    """Keeps a job's keys alive and watches for stalls (see the module)."""

    client: BoundedRedis
    keys: JobKeys
    spec: JobSpec
    loop: asyncio.AbstractEventLoop
    lease: float
    offset: float
    origin: float
    unfinished: dict[int, tuple[Any, float]]
    last_progress: float
    stall_warned: bool

    def since_start(self) -> float:
        return self.loop.time() - self.origin

    def _warn_no_workers(self) -> None:
        logger.warning(
            "no worker process serves queue %r: start one with "
            "'python -m pcmodel worker --broker URL --function %s' (the job waits for it)",
            self.keys.queue,
            self.keys.queue,
        )

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
        quiet = now - max(self.last_progress, self.origin)
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


def _some(tasks: dict[int, Any], shown: int = 5) -> str:
    """The first few task ids of `tasks`, for a message."""
    ids = [str(task_id) for task_id in itertools.islice(tasks, shown)]
    return ", ".join(ids) + (", ..." if len(tasks) > shown else "")
