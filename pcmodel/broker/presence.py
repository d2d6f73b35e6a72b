"""Which worker processes serve a queue now: `live_workers` and `wait_for_workers`.

Each worker process keeps a heartbeat in Redis (see `pcmodel.broker._keeper`); these read it.
"""

from __future__ import annotations

import asyncio
import json

from pcmodel._validate import check_int
from pcmodel.broker._redis import (
    PRESENCE_TTL,
    Redis,
    RedisConnectionError,
    RedisTimeoutError,
    check_url,
    connect,
    decode_text,
    worker_key,
    workers_key,
)
from pcmodel.broker.records import WorkerInfo

__all__ = ["live_workers", "wait_for_workers"]


async def live_workers(broker: str | Redis, queue: str) -> list[WorkerInfo]:
    """The worker processes serving `queue` now, as their heartbeats describe them.

    Args:
        broker: a Redis URL, or a client from `redis.asyncio`.
        queue: the queue name (a function's `module:qualname` by default).
    """
    if isinstance(broker, str):
        client = connect(check_url(broker))
        try:
            return await live_workers(client, queue)
        finally:
            await client.aclose()
    seconds, micros = await broker.time()
    now = seconds + micros / 1e6
    names = await broker.zrangebyscore(workers_key(queue), now - PRESENCE_TTL, "+inf")
    if not names:
        return []
    infos = await broker.mget([worker_key(decode_text(name)) for name in names])
    workers = []
    for raw in infos:
        if raw is None:
            continue
        try:
            data = json.loads(raw)
            workers.append(
                WorkerInfo(
                    name=str(data["name"]),
                    host=str(data["host"]),
                    pid=int(data["pid"]),
                    queue=str(data["queue"]),
                    workers=int(data["workers"]),
                    items=int(data["items"]),
                )
            )
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # not what a worker writes: skip it
    return workers


async def wait_for_workers(
    url: str,
    queue: str,
    count: int = 1,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for the workers to show up, with its own message
) -> list[WorkerInfo]:
    """Wait until at least `count` worker processes serve `queue`; return them.

    A broker that does not answer yet (a Redis server still starting, say) is asked again
    until the deadline.

    Raises:
        TimeoutError: fewer than `count` showed up within `timeout` seconds (the message
            says if the broker never answered).
    """
    check_int("count", count, 1)
    client = connect(check_url(url))
    workers: list[WorkerInfo] = []
    unanswered: BaseException | None = None
    try:
        async with asyncio.timeout(timeout):
            # Heartbeats live in Redis: looking again is the only way to see a new one.
            while True:
                try:
                    workers = await live_workers(client, queue)
                except (RedisConnectionError, RedisTimeoutError, OSError) as problem:
                    unanswered = problem
                else:
                    unanswered = None
                    if len(workers) >= count:
                        break
                await asyncio.sleep(0.05)
    except TimeoutError:
        why = "" if unanswered is None else f"; the broker did not answer: {unanswered}"
        raise TimeoutError(
            f"{len(workers)} of the {count} worker processes expected on queue {queue!r} showed "
            f"up within {timeout:g} s{why}"
        ) from None
    finally:
        await client.aclose()
    return workers
