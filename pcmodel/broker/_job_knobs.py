"""The knobs of a running broker job, on the controller's side: turned here, applied by every worker.

A piece of `pcmodel.broker.transport.RedisTransport` (a mixin over the job's state): the
methods a `pcmodel.JobHandle` calls (`set_workers`, `set_rate`, `pause`, `resume`, `counts`)
change the job's `Knobs` at once and return; a publisher task writes them, whole, in the
`knobs` field of the job's meta hash after each change (the latest state, one write at a
time, so a later change can never be overwritten by an earlier one). Each worker process reads
the field every poll interval and applies it between two items (`pcmodel.broker._tuning`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pcmodel._summary import Tally
from pcmodel._validate import check_worker_count
from pcmodel.broker._redis import BoundedRedis, JobKeys
from pcmodel.broker._results import Lanes
from pcmodel.broker._tuning import Knobs, encode_knobs
from pcmodel.policies import MIN_RATE
from pcmodel.records import LiveStats
from pcmodel.spec import JobSpec

__all__ = ["JobKnobs"]

logger = logging.getLogger("pcmodel.broker")


class JobKnobs:
    """The knobs of a running broker job (see the module); `RedisTransport` holds the state."""

    client: BoundedRedis
    keys: JobKeys
    spec: JobSpec
    tally: Tally
    unfinished: dict[int, tuple[Any, float]]
    next_lane: int
    lanes: dict[str, Lanes]
    knobs: Knobs
    knobs_turned: asyncio.Event

    def set_workers(self, workers: int) -> None:
        """At most `workers` of the job's calls at once in each worker process, from now on.

        A process whose `--workers` is lower grows its slots for the job; in an adaptive job
        this sets each process's limit by hand (between the job's `min` and `max`), and the
        limit moves on from there.

        Raises:
            TypeError, ValueError: `workers` is not an int between 1 and `MAX_WORKERS` (10 000;
                within `min` and `max` for an adaptive job).
        """
        check_worker_count("workers", workers)
        adaptive = self.spec.adaptive
        if adaptive is not None and not adaptive.min <= workers <= adaptive.max:
            raise ValueError(
                f"the limit of this adaptive job must be between its min ({adaptive.min}) and max "
                f"({adaptive.max}), got {workers!r}"
            )
        self._turn(self.knobs._replace(workers=workers))

    def set_rate(self, max_per_second: float | None, burst: int | None = None) -> None:
        """The job's rate limit from now on, shared by every worker process; None removes it.

        Raises:
            TypeError, ValueError: `max_per_second` is not a number >= 1e-6 (or None), or
                `burst` not an int >= 1 (or None, which keeps the current one).
        """
        if max_per_second is not None:
            if isinstance(max_per_second, bool) or not isinstance(max_per_second, int | float):
                raise TypeError(
                    f"max_per_second must be a number or None, got {max_per_second!r} "
                    f"({type(max_per_second).__name__})"
                )
            if not MIN_RATE <= max_per_second < float("inf"):
                raise ValueError(
                    f"max_per_second must be a finite number >= {MIN_RATE}, got {max_per_second!r}"
                )
        if burst is None:
            burst = self.knobs.rate[1] if self.knobs.rate is not None else self.spec.burst
        elif isinstance(burst, bool) or not isinstance(burst, int):
            raise TypeError(f"burst must be an int or None, got {burst!r} ({type(burst).__name__})")
        elif burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        rate = None if max_per_second is None else float(max_per_second)
        self._turn(self.knobs._replace(rate=(rate, burst), rate_changes=self.knobs.rate_changes + 1))

    def pause(self) -> None:
        """No worker process starts a call of the job (nor a retry) until `resume`."""
        self._turn(self.knobs._replace(paused=True))

    def resume(self) -> None:
        """Let the worker processes start the job's calls again."""
        self._turn(self.knobs._replace(paused=False))

    def counts(self) -> LiveStats:
        """The live figures this side knows (`JobHandle.stats` adds the rate and the time).

        For a broker job `in_flight` counts the items sent and not yet reported, queued in
        Redis or running in a worker process (`queued` is 0: only Redis knows how those
        split); `limit` is the calls at once each process allows (as set by `set_workers`, or
        the adaptive job's starting limit, or the most slots a process reported), and
        `workers` the timeline lanes of the processes that reported so far.
        """
        adaptive = self.spec.adaptive
        limit = self.knobs.workers
        if limit is None:
            slots = [lanes.workers for lanes in self.lanes.values()]
            limit = adaptive.start if adaptive is not None else max(slots, default=0)
        return LiveStats(
            in_flight=len(self.unfinished),
            queued=0,
            done=self.tally.tasks,
            failed=self.tally.failed,
            limit=limit,
            workers=self.next_lane,
            recent_rate=0.0,
            paused=self.knobs.paused,
            elapsed=0.0,
        )

    def _turn(self, knobs: Knobs) -> None:
        if knobs != self.knobs:
            self.knobs = knobs
            self.knobs_turned.set()

    async def _publish_knobs(self) -> None:
        """Write the knobs in the job's meta hash after each change, the latest state each time."""
        while True:
            await self.knobs_turned.wait()
            self.knobs_turned.clear()
            await self.client.hset(self.keys.meta, "knobs", encode_knobs(self.knobs))
            logger.info("job %s: knobs set to %s", self.keys.job_id, self.knobs)
