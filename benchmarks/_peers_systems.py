"""The controller's side of each system in the Redis benchmark: its worker processes, and a client.

A `Group` is one configuration's worker processes on one queue, started with the library's
own command (`python -m pcmodel worker`, `python -m arq`, `saq`, `taskiq worker`). A client
sends items and collects every result, the way the library documents it:

- `batch(items)` sends them all and returns every item's value. pcmodel runs one job
  (`run_job_async(..., broker=...)`); the others enqueue each item (concurrently, 50 at a
  time: none of them has a call to enqueue many), wait until the system has nothing left
  unfinished (an O(1) count of its own, asked every 5 ms: arq's queue, SAQ's incomplete set,
  taskiq's stream group lag and pending entries), then read every result in one MGET per
  1,000 and decode it as the library does. The same wait for all three, and cheaper than
  one result-wait per item.
- `one(item)` sends one item and waits for its value with the library's own call for it:
  pcmodel's `run_job_async`, arq's `job.result()`, SAQ's `queue.apply()`, taskiq's
  `wait_result()`.
- `cleanup()` deletes what a run left in Redis (results kept for later reading), so runs do
  not slow each other down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._peers_tasks import DEFAULT_SLOTS, RUNS_KEY, Config
from benchmarks._peers_workers import ready_key

ROOT = Path(__file__).resolve().parent.parent
POLL = 0.005
"""Seconds between two looks at a system's count of unfinished items."""
CHUNK = 50
"""Items enqueued concurrently by the controller of arq, SAQ and taskiq (redis-py's pools
hold at most 100 connections unless told otherwise)."""

Item = dict[str, Any]


INSTALL = {
    "pcmodel": ("redis", "pip install -e '.[redis]'"),
    "arq": ("arq click", "pip install click && pip install --no-deps arq (arq pins redis<6)"),
    "saq": ("saq", "pip install -e '.[bench]'"),
    "taskiq": ("taskiq taskiq_redis", "pip install -e '.[bench]'"),
}
"""Per system: the modules it needs, and how to install them."""


def available(system: str) -> str | None:
    """None if `system` can run here, else why not (and how to install what it needs)."""
    import importlib.util

    modules, how = INSTALL[system]
    missing = [name for name in modules.split() if importlib.util.find_spec(name) is None]
    return f"not installed: {', '.join(missing)} ({how})" if missing else None


@dataclass
class Group:
    """One configuration's worker processes, serving one queue."""

    config: Config
    queue: str
    slots: int
    safe: bool
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    """The processes that run the items (for taskiq, the children of `taskiq worker`)."""


def _command(group: Group, url: str) -> list[str]:
    python = sys.executable
    system, slots = group.config.system, str(group.slots)
    if system == "pcmodel":
        return [
            python, "-m", "pcmodel", "worker", "--broker", url, "--queue", group.queue,
            "--function", "benchmarks._peers_tasks:pcmodel_item", "--workers", slots,
        ]  # fmt: skip
    if system == "arq":
        command = [python, "-m", "arq", "benchmarks._peers_workers.ArqSettings"]
        if group.config.options["quiet"]:
            command += ["--custom-log-dict", "benchmarks._peers_workers.ARQ_QUIET_LOGS"]
        return command
    if system == "saq":
        return [python, "-m", "saq", "benchmarks._peers_workers.saq_settings", "--workers", "1"]
    options = group.config.options
    return [
        python, "-m", "taskiq", "worker", "benchmarks._peers_workers:taskiq_broker", "--workers", "1",
        "--max-async-tasks", slots, "--max-prefetch", str(options["prefetch"]),
        "--log-level", options["log_level"],
    ]  # fmt: skip


def start_group(
    url: str, config: Config, queue: str, count: int, slots: int | None, folder: Path, safe: bool = False
) -> Group:
    """Start `count` worker processes of `config` on `queue` (not waiting for them: see `wait_ready`)."""
    group = Group(config, queue, slots or config.slots or DEFAULT_SLOTS[config.system], safe)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PEERS_REDIS": url,
        "PEERS_QUEUE": queue,
        "PEERS_CONFIG": f"safe:{config.system}" if safe else config.label,
        "PEERS_SLOTS": str(group.slots),
    }
    for index in range(count):
        with open(folder / f"{queue}-{index}.log", "wb") as log:
            group.processes.append(
                subprocess.Popen(
                    _command(group, url), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
    return group


async def wait_ready(client: Any, groups: Sequence[Group], folder: Path, within: float = 120.0) -> None:
    """Wait until every process of every group serves its queue; note the processes' pids."""
    from pcmodel.broker import live_workers

    deadline = time.monotonic() + within
    for group in groups:
        while True:
            if group.config.system == "pcmodel":
                ready = len(await live_workers(client, group.queue))
                pids = [process.pid for process in group.processes]
            else:
                keys = [key async for key in client.scan_iter(match=ready_key(group.queue, "*"), count=1000)]
                ready = len(keys)
                pids = [int(value) for value in await client.mget(keys)] if keys else []
            if ready >= len(group.processes):
                group.pids = sorted(pids)
                break
            if any(process.poll() is not None for process in group.processes) or time.monotonic() > deadline:
                raise SystemExit(
                    f"bench_peers: the {group.config.label} workers on {group.queue} did not start; see {folder}"
                )
            await asyncio.sleep(0.05)


def stop_group(group: Group) -> None:
    """Stop the group's processes (SIGTERM, then SIGKILL after 15 s)."""
    for process in group.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in group.processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _chunked(make: Callable[[Item], Awaitable[Any]], items: Sequence[Item]) -> list[Any]:
    """`make(item)` for every item, CHUNK at a time, in order."""
    out: list[Any] = []
    for start in range(0, len(items), CHUNK):
        out += await asyncio.gather(*(make(item) for item in items[start : start + CHUNK]))
    return out


Deadline = Callable[[], float | None]
"""When to give up waiting (a `time.monotonic()` reading), asked again at every look: None for
not yet (the crash test sets one only once it has killed a worker)."""


async def _until(finished: Callable[[], Awaitable[bool]], deadline: Deadline | None) -> bool:
    """Ask `finished()` every POLL seconds until it says yes (True) or the deadline passes (False)."""
    while not await finished():
        limit = deadline() if deadline is not None else None
        if limit is not None and time.monotonic() > limit:
            return False
        await asyncio.sleep(POLL)
    return True


async def _mget(client: Any, keys: Sequence[str]) -> list[Any]:
    values: list[Any] = []
    for start in range(0, len(keys), 1000):
        values += await client.mget(keys[start : start + 1000])
    return values


class PcmodelClient:
    """pcmodel: a job per batch, through `run_job_async(..., broker=Broker(url, queue=...))`."""

    def __init__(self, url: str, group: Group) -> None:
        from pcmodel.broker import Broker

        options = group.config.options
        self.broker = Broker(
            url, queue=group.queue, visibility_timeout=options.get("visibility_timeout", 30.0)
        )
        self.trace, self.queue_size = options["trace"], options["queue_size"]

    async def open(self) -> None:
        """Nothing to open: each job connects on its own."""

    async def batch(self, items: Sequence[Item], deadline: Deadline | None = None) -> list[int]:
        from pcmodel import run_job_async

        values: list[int] = []

        def keep(result: Any) -> None:
            if result.error is None:
                values.append(result.value)

        job = asyncio.ensure_future(
            run_job_async(
                _pcmodel_function(), items, broker=self.broker, trace=self.trace,
                queue_size=self.queue_size, on_task_complete=keep, stall_after=None,
            )
        )  # fmt: skip

        async def finished() -> bool:
            return job.done()

        if not await _until(finished, deadline):
            job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        return values

    async def one(self, item: Item) -> int:
        values = await self.batch([item])
        return values[0]

    async def cleanup(self) -> None:
        """A job deletes its own keys when it ends."""

    async def close(self) -> None:
        """Nothing held."""


def _pcmodel_function() -> Callable[[Item], Awaitable[int]]:
    from benchmarks._peers_tasks import pcmodel_item

    return pcmodel_item


class ArqClient:
    """arq: `enqueue_job` per item; results read from arq's result keys."""

    def __init__(self, url: str, group: Group) -> None:
        self.url, self.queue, self.options = url, group.queue, group.config.options
        self.result_poll = self.options["result_poll"]
        self.job_ids: list[str] = []

    async def open(self) -> None:
        from arq import create_pool

        from benchmarks._peers_workers import arq_redis_settings

        self.pool = await create_pool(
            arq_redis_settings(self.url, self.options), default_queue_name=self.queue
        )

    async def batch(self, items: Sequence[Item], deadline: Deadline | None = None) -> list[int]:
        from arq.constants import result_key_prefix
        from arq.jobs import deserialize_result

        jobs = await _chunked(
            lambda i: self.pool.enqueue_job("peers_item", i["n"], i["seconds"], i["record"]), items
        )
        self.job_ids = [job.job_id for job in jobs]

        async def finished() -> bool:
            return await self.pool.zcard(self.queue) == 0

        await _until(finished, deadline)
        raws = await _mget(self.pool, [result_key_prefix + job_id for job_id in self.job_ids])
        results = [deserialize_result(raw) for raw in raws if raw is not None]
        return [r.result for r in results if r.success]

    async def one(self, item: Item) -> int:
        job = await self.pool.enqueue_job("peers_item", item["n"], item["seconds"], item["record"])
        self.job_ids = [job.job_id]
        value: int = await job.result(poll_delay=self.result_poll)
        return value

    async def cleanup(self) -> None:
        from arq.constants import result_key_prefix

        for start in range(0, len(self.job_ids), 1000):
            await self.pool.delete(*(result_key_prefix + j for j in self.job_ids[start : start + 1000]))
        self.job_ids = []

    async def close(self) -> None:
        await self.pool.aclose()


class SaqClient:
    """SAQ: `queue.enqueue` per item; results read from the jobs' keys."""

    def __init__(self, url: str, group: Group) -> None:
        self.url, self.name = url, group.queue
        self.options = group.config.options
        self.job_options = {k: self.options[k] for k in ("heartbeat", "retries") if k in self.options}
        self.keys: list[str] = []

    async def open(self) -> None:
        from saq import Queue

        self.queue = Queue.from_url(
            self.url, name=self.name, max_concurrent_ops=self.options["max_concurrent_ops"]
        )
        await self.queue.connect()

    async def batch(self, items: Sequence[Item], deadline: Deadline | None = None) -> list[int]:
        from saq.job import Status

        jobs = await _chunked(lambda i: self.queue.enqueue("saq_item", **i, **self.job_options), items)
        self.keys = [job.key for job in jobs]
        incomplete = f"saq:{self.name}:incomplete"

        async def finished() -> bool:
            return await self.queue.redis.zcard(incomplete) == 0  # type: ignore[attr-defined,no-any-return]

        await _until(finished, deadline)
        done = []
        for start in range(0, len(self.keys), 1000):
            done += await self.queue.jobs(self.keys[start : start + 1000])
        return [job.result for job in done if job is not None and job.status == Status.COMPLETE]

    async def one(self, item: Item) -> int:
        value: int = await self.queue.apply("saq_item", poll_interval=self.options["result_poll"], **item)
        return value

    async def cleanup(self) -> None:
        redis = self.queue.redis  # type: ignore[attr-defined]
        for start in range(0, len(self.keys), 1000):
            await redis.delete(*(self.queue.job_id(k) for k in self.keys[start : start + 1000]))
        self.keys = []

    async def close(self) -> None:
        await self.queue.disconnect()


class TaskiqClient:
    """taskiq: `task.kiq()` per item on a RedisStreamBroker; results from the Redis result backend."""

    def __init__(self, url: str, group: Group) -> None:
        self.url, self.queue, self.options = url, group.queue, group.config.options
        self.task_ids: list[str] = []

    async def open(self) -> None:
        import redis.asyncio

        from benchmarks._peers_workers import make_taskiq_broker

        self.broker, self.task = make_taskiq_broker(self.url, self.queue, self.options)
        await self.broker.startup()
        self.redis = redis.asyncio.Redis.from_url(self.url)

    async def batch(self, items: Sequence[Item], deadline: Deadline | None = None) -> list[int]:
        from taskiq.result import TaskiqResult

        tasks = await _chunked(lambda i: self.task.kiq(i["n"], i["seconds"], i["record"]), items)
        self.task_ids = [t.task_id for t in tasks]

        async def finished() -> bool:
            for group in await self.redis.xinfo_groups(self.queue):
                if group["name"].decode() == self.queue:
                    return bool(group["lag"] == 0 and group["pending"] == 0)
            return False

        await _until(finished, deadline)
        backend = self.broker.result_backend
        raws = await _mget(self.redis, [f"{self.queue}:{task_id}" for task_id in self.task_ids])
        results = [
            TaskiqResult[Any].model_validate(backend.serializer.loadb(raw)) for raw in raws if raw is not None
        ]
        return [r.return_value for r in results if not r.is_err]

    async def one(self, item: Item) -> int:
        task = await self.task.kiq(item["n"], item["seconds"], item["record"])
        self.task_ids = [task.task_id]
        result = await task.wait_result(check_interval=self.options["result_poll"], timeout=30)
        value: int = result.return_value
        return value

    async def cleanup(self) -> None:
        for start in range(0, len(self.task_ids), 1000):
            await self.redis.delete(*(f"{self.queue}:{t}" for t in self.task_ids[start : start + 1000]))
        await self.redis.xtrim(self.queue, maxlen=0, approximate=False)
        self.task_ids = []

    async def close(self) -> None:
        await self.broker.shutdown()
        await self.redis.aclose()


CLIENTS: dict[str, type[PcmodelClient | ArqClient | SaqClient | TaskiqClient]] = {
    "pcmodel": PcmodelClient,
    "arq": ArqClient,
    "saq": SaqClient,
    "taskiq": TaskiqClient,
}


def client_for(url: str, group: Group) -> PcmodelClient | ArqClient | SaqClient | TaskiqClient:
    """The controller-side client of `group`'s system."""
    return CLIENTS[group.config.system](url, group)


async def runs_counted(client: Any) -> dict[int, int]:
    """Per item number, how many runs finished (the crash test's record)."""
    raw = await client.hgetall(RUNS_KEY)
    return {int(key): int(value) for key, value in raw.items()}


def kill(pid: int) -> None:
    """`kill -9` the process `pid` (it may be gone already)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def items(count: int, seconds: float, record: bool = False, first: int = 0) -> list[Item]:
    """`count` items numbered from `first`."""
    return [{"n": n, "seconds": seconds, "record": record} for n in range(first, first + count)]


def distinct(values: Iterable[int]) -> int:
    """How many different values."""
    return len(set(values))
