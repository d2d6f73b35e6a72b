"""The Redis side shared by the controller and the workers: key names, connections, one clock.

Key layout (every key of a job carries the job's id in braces, so a job's keys would also
live together on one Redis Cluster node):

| key | type | holds | lives |
|---|---|---|---|
| `pcmodel:job:{ID}:work` | stream + group `pcmodel-workers` | one entry per item: `m` = `{"task": id, "params": ...}` | the job (lease) |
| `pcmodel:job:{ID}:results` | stream | one entry per outcome: `r` = the result message | the job (lease) |
| `pcmodel:job:{ID}:meta` | hash | `spec` = the job's settings (JSON); `halt` = "1" after a fail-fast stop; `knobs` = the knobs turned on the running job (JSON) | the job (lease) |
| `pcmodel:job:{ID}:rate` | string | the shared rate limit's next due time (`rate:N` for the N-th rate set on the running job) | the job |
| `pcmodel:queue:{Q}:jobs` | set | the ids of the jobs running on queue Q | while a job runs |
| `pcmodel:queue:{Q}:news` | stream | one entry per job started on queue Q: `job` = its id, `spec` = its settings; idle worker processes block on it | while a job runs (lease) |
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
    from redis.asyncio.client import Pipeline
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
    "BoundedPipeline",
    "BoundedRedis",
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
    "first_contact",
    "jobs_key",
    "news_key",
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

    def rate_of(self, generation: int) -> str:
        """The shared rate limiter's state for the `generation`-th rate set on the running job
        (0: the rate the job started with)."""
        return self.rate if generation == 0 else f"{self.rate}:{generation}"

    def owned(self) -> tuple[str, str, str, str]:
        """Every key that belongs to the job alone."""
        return (self.work, self.results, self.meta, self.rate)


def jobs_key(queue: str) -> str:
    """The set of the ids of the jobs running on `queue`."""
    return f"pcmodel:queue:{queue}:jobs"


def news_key(queue: str) -> str:
    """The stream where each job started on `queue` is announced, for idle workers to wake on."""
    return f"pcmodel:queue:{queue}:news"


def workers_key(queue: str) -> str:
    """The sorted set of the worker processes serving `queue`, scored by last heartbeat."""
    return f"pcmodel:queue:{queue}:workers"


def worker_key(process: str) -> str:
    """A worker process's description (JSON), expiring unless refreshed."""
    return f"pcmodel:worker:{process}"


def connect(url: str, round_trip_timeout: float = 10.0) -> BoundedRedis:
    """A client for `url` that returns bytes (messages are decoded by pcmodel, defensively).

    Every round trip, connecting included, is bounded by `round_trip_timeout` seconds (plus
    the BLOCK time of a blocking read): a server that accepts connections and never answers
    (frozen, or not Redis at all) then raises a builtins `ConnectionError` naming the URL,
    instead of holding the job or the worker forever. So do the other ways of losing the
    server (refused, reset, closed): see `BoundedRedis`.

    The bound is an `asyncio.timeout` around each command or pipeline, not redis-py's
    `socket_timeout`: with that one, redis-py sends each command through `asyncio.wait_for`,
    which on Python 3.11 loses a cancel that arrives as the send completes, and a cancelled
    job would then wait forever for its reader.
    """
    options: dict[str, Any] = {
        "decode_responses": False,
        # None, not redis-py's default (5 s): its own timeouts nested in ours lost a cancel here
        # (a cancelled job then waited forever for its reader); the bound is ours, below.
        "socket_timeout": None,
        "socket_connect_timeout": round_trip_timeout,
    }
    if url.partition("://")[0] != "unix":
        # TCP keepalive covers a network that drops the connection silently; a unix socket
        # has no such option (redis-py refuses it there).
        options["socket_keepalive"] = True
    client = BoundedRedis.from_url(url, **options)
    assert isinstance(client, BoundedRedis)
    client.bound_to(url, round_trip_timeout)
    return client


class BoundedRedis(aioredis.Redis):
    """A `redis.asyncio.Redis` whose every round trip has a bounded time.

    Losing the server (no answer within the bound, a refused or dropped connection) raises a
    builtins `ConnectionError` that names the URL (without its password), the one error the
    broker documents; an answer that is an error (`ResponseError`) is raised as it is.
    """

    _label = ""
    _round_trip = 10.0

    def bound_to(self, url: str, round_trip_timeout: float) -> None:
        """Name the server in errors as `url` (redacted); bound each round trip."""
        self._label = redacted(url)
        self._round_trip = round_trip_timeout

    @property
    def round_trip_timeout(self) -> float:
        """Seconds each round trip may take (a blocking read gets its BLOCK time on top)."""
        return self._round_trip

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        block = _blocking_seconds(args)
        scope = asyncio.timeout(self._round_trip + block)
        try:
            async with scope:
                return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except (TimeoutError, RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise _lost(self._label, self._round_trip, scope, error, block) from error

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> BoundedPipeline:
        pipe = BoundedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.bound_to_client(self._label, self._round_trip)
        return pipe


class BoundedPipeline(Pipeline):
    """A pipeline of a `BoundedRedis`: its whole round trip is bounded the same way."""

    _label = ""
    _round_trip = 10.0

    def bound_to_client(self, label: str, round_trip_timeout: float) -> None:
        """Take the client's URL label and bound."""
        self._label, self._round_trip = label, round_trip_timeout

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        scope = asyncio.timeout(self._round_trip)
        try:
            async with scope:
                return await super().execute(raise_on_error)
        except (TimeoutError, RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise _lost(self._label, self._round_trip, scope, error) from error


def _lost(
    label: str, seconds: float, scope: asyncio.Timeout, error: BaseException, block: float = 0.0
) -> BaseException:
    """What to raise for `error`, raised in a round trip bounded by `scope`: losing the server
    becomes a builtins ConnectionError that names it; anything else stays itself.

    `seconds` is the configured round trip timeout, named as given; a blocking read waited
    its `block` seconds more, which the message says apart."""
    if isinstance(error, TimeoutError):
        if not scope.expired():
            return error
        waited = f" beyond its {block:g} s blocking read" if block else ""
        return ConnectionError(
            f"the broker at {label} did not answer within {seconds:g} s (Broker.round_trip_timeout)"
            f"{waited}: is it a Redis server, and is it running?"
        )
    return ConnectionError(f"lost the broker at {label}: {error}")


def _blocking_seconds(args: tuple[Any, ...]) -> float:
    """The BLOCK time of a blocking read's arguments, in seconds (0 for other commands)."""
    for index, arg in enumerate(args[:-1]):
        if arg in (b"BLOCK", "BLOCK"):
            try:
                return float(args[index + 1]) / 1000
            except (TypeError, ValueError):
                return 0.0
    return 0.0


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


_OFFSET_KEPT: Final = 60.0
"""Seconds a process reuses a server's clock offset for its next jobs (workers re-measure theirs
as often)."""
_offsets: dict[tuple[str, type], tuple[float, float]] = {}
"""The latest clock offset measured per server URL and kind of loop: `(offset, when)`."""


async def first_contact(client: BoundedRedis, url: str) -> float:
    """The first round trips with the server: `clock_offset`, with clear errors.

    The first job of a process on a server measures the offset (five round trips); the next
    ones, within a minute, reuse it after one round trip that connects and checks the server
    answers: a short job's start is then about three round trips shorter. The offset is kept
    per kind of loop, as each kind has a clock of its own.

    Raises:
        ConnectionError: the server cannot be reached or does not answer (the message names
            the URL, without its password, and says what to check), or it refuses the
            connection (a wrong password, a database number it does not have).
    """
    label = redacted(url)
    loop = asyncio.get_running_loop()
    known = _offsets.get((url, type(loop)))
    fresh = known is not None and loop.time() - known[1] < _OFFSET_KEPT
    try:
        offset = await clock_offset(client, 1 if fresh else 5)
    except ConnectionError as lost:
        cause = lost.__cause__
        if isinstance(cause, TimeoutError):
            reason = f"it did not answer within {client.round_trip_timeout:g} s (Broker.round_trip_timeout)"
        else:
            reason = str(cause or lost)  # refused, reset, no such host: redis-py says which
        raise ConnectionError(
            f"cannot reach the broker at {label}: {reason}. Start a Redis server (redis-server), "
            "or check the URL"
        ) from cause
    except RedisError as refused:
        raise ConnectionError(
            f"the broker at {label} refused the connection: {refused}. Check the URL's password "
            "and database number (a Redis server has 16 databases, 0-15, unless configured otherwise)"
        ) from refused
    if fresh:
        assert known is not None
        return known[0]  # measured on five round trips: better than this one
    _offsets[(url, type(loop))] = (offset, loop.time())
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
