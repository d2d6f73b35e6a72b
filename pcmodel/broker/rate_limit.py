"""A job's rate limit, shared by every worker process on every host, kept by Redis.

`run_job(..., max_per_second=R, burst=B)` limits the calls of the whole job, not of one
process: so the schedule of calls lives in the job's `rate` key, and a Lua script books the
next call on the server's own clock, atomically, whichever process asks. It is the generic
cell rate algorithm of `pcmodel.policies.RateLimiter` (the local job's limiter), run by the
server instead of the process; `SharedRateLimiter` is a drop-in for it in `Policies`.

Once the job ends (its meta key is deleted), the script books nothing and the call goes ahead
at once: the job's items are being dropped anyway.
"""

from __future__ import annotations

import asyncio
from typing import Final

from pcmodel.broker._redis import JobKeys, Redis
from pcmodel.policies import RateLimiter

__all__ = ["RATE_SCRIPT", "SharedRateLimiter"]

# The shared rate limit: the same generic cell rate algorithm as `RateLimiter`, run by the
# server on its own clock, so every process of every host books from one schedule. Returns the
# seconds to wait, or -1 if the job is gone (its meta key deleted).
RATE_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[2]) == 0 then return '-1' end
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local due = tonumber(redis.call('GET', KEYS[1]) or '0')
if due < t then due = t end
redis.call('SET', KEYS[1], string.format('%.6f', due + tonumber(ARGV[1])), 'PX', ARGV[3])
return string.format('%.6f', due - tonumber(ARGV[2]) - t)
"""


class SharedRateLimiter(RateLimiter):
    """A `RateLimiter` whose schedule lives in Redis, shared by every worker process of a job.

    A rate changed on the running job (`JobHandle.set_rate`) books on a schedule of its own
    (`generation`: each change gets a new key, so bookings at the old and the new interval
    never mix in one schedule), and the limiter it replaces is `retire`d: its calls still
    waiting wake and book again with its successor (or go ahead, if the limit was removed).
    """

    __slots__ = ("_key", "_keys", "_retired", "_script", "_ttl", "successor")

    def __init__(self, rate: float, burst: int, client: Redis, keys: JobKeys, generation: int = 0) -> None:
        super().__init__(rate, burst, time=asyncio.get_running_loop().time)
        self._keys = keys
        self._key = keys.rate_of(generation)
        self._script = client.register_script(RATE_SCRIPT)
        # The schedule only needs to outlive the bookings it holds: a burst's worth of slots.
        self._ttl = int(max(60.0, 2 * burst / rate) * 1000)
        self._retired = asyncio.Event()
        self.successor: RateLimiter | None = None
        """The limiter that replaced this one once it is retired; None: no limit since."""

    def retire(self, successor: RateLimiter | None) -> None:
        """Hand the calls waiting here, and any that come late, to `successor`."""
        self.successor = successor
        self._retired.set()

    async def acquire(self) -> None:
        if self._retired.is_set():
            if self.successor is not None:
                await self.successor.acquire()
            return
        interval = 1.0 / self.rate
        wait = float(
            await self._script(
                keys=[self._key, self._keys.meta],
                args=[repr(interval), repr((self.burst - 1) * interval), self._ttl],
            )
        )
        if wait > 0:
            try:
                async with asyncio.timeout(wait):
                    await self._retired.wait()
            except TimeoutError:
                return  # its slot came
            if self.successor is not None:  # retired meanwhile: book with the new rate
                await self.successor.acquire()
