"""The worker side: a process that takes a queue's items from Redis and runs them.

    python -m pcmodel worker --broker redis://127.0.0.1:6379/0 \\
        --function pcmodel.workloads:fetch_price --workers 50

Start as many as you like, on any host that reaches the Redis server. Each process serves
one queue (by default the function's `module:qualname`, which is also what a controller
running that function produces to) and runs up to `--workers` calls at once, like the
worker pool of a job in one process. Inside a process, `serve_worker` starts these pieces
in one TaskGroup, each in a module of its own, over one shared state (`_process`):

- a **fetcher** (`_fetch`) reads new items of every job on the queue with `XREADGROUP`, never
  more than there are free worker slots, so items wait in Redis, where any process can take
  them, rather than in one process's memory; before new items, it takes over the items of
  processes that stopped (`_reclaim`: `XAUTOCLAIM` after the visibility timeout), since those
  are older;
- `--workers` **slots** (`_slots`) run the function, each item under the job's timeout, retry
  policy and rate limit (the rate limit is shared by every process, through a script on the
  server: `rate_limit`);
- a **writer** (`_writer`) writes each result to the job's result stream and acknowledges its
  item in the same transaction (`XADD`, `XACK`, `XDEL` in one `MULTI`), so an item is
  acknowledged only once its result is written, and never lost in between;
- a **keeper** (`_keeper`) sends the process's heartbeat, keeps its items claimed while they
  run (so no other process takes them over, however long a call runs), and watches for jobs
  that ended or stopped.

Nothing an item does stops the process: a malformed message is reported to the controller
(which counts it apart from the job's tasks), and whatever the function raises or returns
(StopIteration, a CancelledError of its own, SystemExit, a value JSON cannot carry) fails its
item. Losing Redis is not fatal either: each piece retries with a growing pause. SIGTERM (or
Ctrl-C) stops it gracefully: it takes no new item, finishes and acknowledges every item it
holds, and exits 0; a second signal stops it at once, leaving its items to other processes.

The other names here live in modules of their own and are re-exported: `queue_name` and
`load_function` (`naming`), `WorkerStats` (`_process`) and `worker_main`, the command line
(`cli`, imported when first used: it imports this module).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pcmodel._queues import STOP
from pcmodel._validate import check_worker_count
from pcmodel.broker._fetch import fetch
from pcmodel.broker._keeper import heartbeat, keep, leave
from pcmodel.broker._process import ProcessState, WorkerStats, process_name
from pcmodel.broker._redis import check_url, connect, first_contact
from pcmodel.broker._slots import slot
from pcmodel.broker._writer import write
from pcmodel.broker.config import check_seconds
from pcmodel.broker.naming import load_function, queue_name

if TYPE_CHECKING:
    from pcmodel.broker.cli import worker_main

__all__ = ["WorkerStats", "load_function", "queue_name", "serve_worker", "worker_main"]


async def _pause(seconds: float) -> None:
    """Wait between two tries (a seam, so tests can count the pauses without waiting them)."""
    await asyncio.sleep(seconds)


async def serve_worker(
    url: str,
    function: Callable[[Any], Any],
    *,
    workers: int = 50,
    queue: str | None = None,
    stop: asyncio.Event | None = None,
    name: str | None = None,
    poll: float = 0.2,
    on_ready: Callable[[WorkerStats], object] | None = None,
    round_trip_timeout: float = 10.0,
) -> WorkerStats:
    """Serve a queue's jobs from Redis until `stop` is set; return what was done.

    This is what `python -m pcmodel worker` runs. It can also run inside any asyncio program
    (set `stop` to end it gracefully: no new items, every item held is finished and
    acknowledged first; cancel it to end it at once, leaving its items to other processes).

    Args:
        url: the Redis server, like `redis://127.0.0.1:6379/0`.
        function: called with each item's params, like `run_job`'s `function` (an `async def`
            is awaited; a plain function runs in a thread). Its return value must be JSON.
        workers: the most calls in flight at once in this process (>= 1).
        queue: the queue to serve; by default `queue_name(function)`, the function's
            `module:qualname`, which is what a controller running the same function uses.
        stop: set it to stop gracefully; None to run until cancelled.
        name: this process's consumer name; by default `host:pid:random`.
        poll: while serving jobs, seconds between two looks for new ones (and the longest a
            read blocks); an idle process hears of a new job at once.
        on_ready: called once connected and registered, with the (live) stats.
        round_trip_timeout: seconds Redis gets to answer each request (see
            `Broker.round_trip_timeout`).

    Once serving, losing Redis is not fatal: each piece retries with a growing pause (0.1 s
    doubling up to 5 s), logging the first failure, one in twelve after, and the recovery.

    Raises:
        TypeError, ValueError: a bad argument.
        ConnectionError: the Redis server cannot be reached, does not answer, or refuses the
            connection at start (the message names the URL, without its password).
    """
    check_url(url)
    if not callable(function):
        raise TypeError(f"function must be callable, got {function!r} ({type(function).__name__})")
    check_worker_count("workers", workers)
    queue = queue_name(function) if queue is None else queue
    if not isinstance(queue, str) or not queue:
        raise ValueError(f"queue must be a non-empty string, got {queue!r}")
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll <= 60:
        raise ValueError(f"poll must be a number of seconds in (0, 60], got {poll!r}")
    round_trip_timeout = check_seconds("round_trip_timeout", round_trip_timeout)
    stop = asyncio.Event() if stop is None else stop
    client = connect(url, round_trip_timeout)
    process = ProcessState(
        client,
        function,
        queue=queue,
        workers=workers,
        name=name or process_name(),
        poll=poll,
        pause=_pause,
    )
    try:
        process.offset = await first_contact(client, url)
        await heartbeat(process)
        if on_ready is not None:
            on_ready(process.stats)
        async with asyncio.TaskGroup() as group:
            keeper = group.create_task(keep(process), name="pcmodel-broker-keeper")
            writer = group.create_task(write(process), name="pcmodel-broker-writer")
            slots: dict[int, asyncio.Task[None]] = {}

            def start_slots() -> None:
                # Slots above `process.workers` retire: the idle ones now (cancelling a wait
                # for an item loses no item), the busy ones after their item. Then start the
                # missing ones.
                for index in [index for index in slots if index >= process.workers]:
                    if index in process.idle_slots:
                        slots[index].cancel()
                    if index in process.idle_slots or slots[index].done():
                        del slots[index]
                for index in range(process.workers):
                    if index not in slots or slots[index].done():
                        slots[index] = group.create_task(
                            slot(process, index), name=f"pcmodel-broker-slot-{index}"
                        )

            start_slots()
            process.on_resize = start_slots
            await group.create_task(fetch(process, stop), name="pcmodel-broker-fetcher")
            # Stopping: no new items; every item held runs to the end and is acknowledged.
            process.on_resize = None
            running = [task for task in slots.values() if not task.done()]
            for _ in running:
                process.buffer.put_nowait(STOP)
            await asyncio.wait(running)
            process.outbox.put_nowait(STOP)
            await writer
            keeper.cancel()
        await leave(process)
    finally:
        if process.executor is not None:
            process.executor.shutdown(wait=False, cancel_futures=True)
        await client.aclose()
    return process.stats


def __getattr__(name: str) -> Any:
    # `worker_main` lives in `cli`, which imports `serve_worker` from here: importing it only
    # when first asked for keeps the two modules free of an import cycle.
    if name == "worker_main":
        from pcmodel.broker.cli import worker_main

        globals()[name] = worker_main
        return worker_main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
