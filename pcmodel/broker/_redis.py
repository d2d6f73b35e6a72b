"""The Redis side shared by the controller and the workers: key names, connections, one clock.

Key layout (every key of a job carries the job's id in braces, so a job's keys would also
live together on one Redis Cluster node):

| key | type | holds | lives |
|---|---|---|---|
| `pcmodel:job:{ID}:work` | stream + group `pcmodel-workers` | one entry per item: `m` = `{"task": id, "params": ...}` | the job (lease) |
| `pcmodel:job:{ID}:results` | stream | one entry per outcome: `r` = the result message | the job (lease) |
| `pcmodel:job:{ID}:meta` | hash | `spec` = the job's settings (JSON); `halt` = "1" after a fail-fast stop | the job (lease) |
| `pcmodel:job:{ID}:rate` | string | the shared rate limit's next due time | the job |
| `pcmodel:queue:{Q}:jobs` | set | the ids of the jobs running on queue Q | while a job runs |
| `pcmodel:queue:{Q}:workers` | sorted set | worker process names, scored by their last heartbeat | while a worker runs |
| `pcmodel:worker:{NAME}` | string (TTL) | a worker process's host, pid, slots and queue (JSON) | while it runs |

The controller creates a job's keys in one transaction, refreshes their expiry while the job
runs (so a controller killed with `kill -9` leaves nothing behind for long), and deletes them
in one transaction at the end.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Final

from pcmodel.broker.config import check_url, redacted

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "pcmodel.broker needs the redis package: pip install 'pcmodel[redis]' (or pip install redis)"
    ) from error

__all__ = [
    "DRAIN_CONSUMER",
    "GROUP",
    "PRESENCE_INTERVAL",
    "PRESENCE_TTL",
    "JobKeys",
    "Redis",
    "RedisConnectionError",
    "RedisError",
    "RedisTimeoutError",
    "ResponseError",
    "check_url",
    "clock_offset",
    "connect",
    "decode_text",
    "jobs_key",
    "redacted",
    "stream_entries",
    "worker_key",
    "workers_key",
]

Redis = aioredis.Redis

GROUP: Final = "pcmodel-workers"
"""The consumer group every worker process reads a job's work stream in."""
DRAIN_CONSUMER: Final = "pcmodel-controller"
"""The consumer name the controller reads the work stream under, to take back queued items."""
PRESENCE_INTERVAL: Final = 2.0
"""Seconds between two heartbeats of a worker process."""
PRESENCE_TTL: Final = 10.0
"""A worker process not heard from for this long counts as gone."""


@dataclass(frozen=True, slots=True)
class JobKeys:
    """The names of one job's keys."""

    job_id: str
    queue: str

    @property
    def work(self) -> str:
        """The work stream: one entry per item, read by the workers' consumer group."""
        return f"pcmodel:job:{{{self.job_id}}}:work"

    @property
    def results(self) -> str:
        """The result stream: one entry per outcome, read by the controller."""
        return f"pcmodel:job:{{{self.job_id}}}:results"

    @property
    def meta(self) -> str:
        """The job's settings (`spec`) and its `halt` flag."""
        return f"pcmodel:job:{{{self.job_id}}}:meta"

    @property
    def rate(self) -> str:
        """The shared rate limiter's state."""
        return f"pcmodel:job:{{{self.job_id}}}:rate"

    def owned(self) -> tuple[str, str, str, str]:
        """Every key that belongs to the job alone."""
        return (self.work, self.results, self.meta, self.rate)


def jobs_key(queue: str) -> str:
    """The set of the ids of the jobs running on `queue`."""
    return f"pcmodel:queue:{queue}:jobs"


def workers_key(queue: str) -> str:
    """The sorted set of the worker processes serving `queue`, scored by last heartbeat."""
    return f"pcmodel:queue:{queue}:workers"


def worker_key(process: str) -> str:
    """A worker process's description (JSON), expiring unless refreshed."""
    return f"pcmodel:worker:{process}"


def connect(url: str) -> Redis:
    """A client for `url` that returns bytes (messages are decoded by pcmodel, defensively).

    No socket timeout: with one, redis-py sends each command through `asyncio.wait_for`,
    which on Python 3.11 loses a cancel that arrives as the send completes, and a cancelled
    job would then wait forever for its reader. Reads are bounded anyway (every blocking read
    has a BLOCK of at most a second), a server that goes away closes the connection, and TCP
    keepalive covers a network that drops it silently.
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=None,
        socket_connect_timeout=10,
        socket_keepalive=True,
    )


async def clock_offset(client: Redis, samples: int = 5) -> float:
    """Redis's clock minus this loop's clock, in seconds, from the quickest of a few round trips.

    Every process expresses its times on the Redis server's clock (its loop time plus this
    offset), so the times of workers on other hosts line up with the controller's even when
    the hosts' own clocks disagree. The error is at most half the quickest round trip.
    """
    loop = asyncio.get_running_loop()
    best_trip, offset = math.inf, 0.0
    for _ in range(samples):
        before = loop.time()
        seconds, micros = await client.time()
        after = loop.time()
        if after - before < best_trip:
            best_trip = after - before
            offset = seconds + micros / 1e6 - (before + after) / 2
    return offset


def stream_entries(reply: Any) -> list[tuple[str, list[tuple[bytes, Any]]]]:
    """An `XREAD`/`XREADGROUP` reply as `(stream name, [(entry id, fields), ...])` pairs.

    Accepts both reply shapes redis-py gives (a list under RESP2, a dict under RESP3).
    """
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    return [
        (decode_text(name), list(entries[0] if isinstance(entries, tuple) else entries))
        for name, entries in pairs
    ]


def decode_text(value: Any) -> str:
    """A Redis reply (bytes or str) as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
