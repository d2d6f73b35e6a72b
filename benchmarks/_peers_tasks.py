"""The one item every system runs in the side-by-side Redis benchmark, and how each is set up.

Every system calls the same coroutine, `run_item(n, seconds, record)`: wait `seconds` (none
for a no-op item), optionally count the finished run in Redis (the crash test: a run counted
twice is an item that ran twice), and return `n`. Only the wrapper differs, because each
library calls its functions its own way: pcmodel passes the params, arq a context then the
arguments, SAQ a context then keyword arguments, taskiq the arguments.

The settings of each system (`CONFIGS`) are plain data here, so the controller and the
worker processes read the same ones: the worker processes build their objects from them in
`benchmarks._peers_workers`, named by environment variables the benchmark sets.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

RUNS_KEY = "peers:runs"
"""The Redis hash counting, per item number, the runs that finished (crash test only)."""

_recorder: Any = None


async def _record(n: int) -> None:
    """Count one finished run of item `n` (one client per worker process, made when first needed)."""
    global _recorder
    if _recorder is None:
        import redis.asyncio

        _recorder = redis.asyncio.Redis.from_url(os.environ["PEERS_REDIS"])
    await _recorder.hincrby(RUNS_KEY, str(n), 1)


async def run_item(n: int, seconds: float, record: bool) -> int:
    """The item: wait `seconds` (0: a no-op), count the run if `record`, return `n`."""
    if seconds:
        await asyncio.sleep(seconds)
    if record:
        await _record(n)
    return n


async def pcmodel_item(params: dict[str, Any]) -> int:
    """The item for pcmodel's workers: `params` is the item's dict."""
    return await run_item(params["n"], params["seconds"], params["record"])


async def arq_item(ctx: dict[str, Any], n: int, seconds: float, record: bool) -> int:
    """The item for arq's workers: a context first, then the arguments."""
    return await run_item(n, seconds, record)


async def saq_item(ctx: dict[str, Any], *, n: int, seconds: float, record: bool) -> int:
    """The item for SAQ's workers: a context first, then keyword arguments."""
    return await run_item(n, seconds, record)


async def taskiq_item(n: int, seconds: float, record: bool) -> int:
    """The item for taskiq's workers (registered on the broker as `peers_item`)."""
    return await run_item(n, seconds, record)


@dataclass(frozen=True)
class Config:
    """One way to run one system: its name in the tables and the settings that differ.

    `slots` is the calls each worker process runs at once, None for the library's default
    (a row that fixes the slots, such as 200 in all, overrides it). `options` are the
    system's own settings, read by `_peers_workers` (worker side) and `_peers_systems`
    (controller side).
    """

    system: str
    label: str
    slots: int | None
    options: dict[str, Any] = field(default_factory=dict)
    why: str = ""


DEFAULT_SLOTS = {"pcmodel": 50, "arq": 10, "saq": 10, "taskiq": 100}
"""Each library's default number of calls in flight per worker process."""

CONFIGS: dict[str, Config] = {
    config.label: config
    for config in (
        Config(
            "pcmodel",
            "pcmodel",
            None,
            {"trace": True, "queue_size": 100},
            "`run_job(..., broker=URL)` and `python -m pcmodel worker` as documented: 50 slots per "
            "process, queue_size=100, trace=True",
        ),
        Config(
            "pcmodel",
            "pcmodel tuned",
            None,
            {"trace": False, "queue_size": 0},
            "trace=False (the summary keeps no per-item records) and queue_size=0 (every item "
            "in Redis at once, as the other systems enqueue them); results still come back to "
            "the controller, each exactly once",
        ),
        Config(
            "arq",
            "arq",
            None,
            {"poll_delay": 0.5, "result_poll": 0.5, "quiet": False},
            "`arq module.WorkerSettings` with arq's defaults: max_jobs=10, poll_delay=0.5 s, "
            "results kept 1 h, a log line per job (INFO); `job.result()` polls every 0.5 s",
        ),
        Config(
            "arq",
            "arq tuned",
            200,
            {"poll_delay": 0.005, "result_poll": 0.005, "quiet": True, "max_connections": 500},
            "max_jobs=200, poll_delay=5 ms (arq polls its queue; no blocking read), "
            "log_results=False and WARNING logging through --custom-log-dict, "
            "RedisSettings(max_connections=500) (redis-py's pool refuses a 101st connection); "
            "`job.result(poll_delay=0.005)`",
        ),
        Config(
            "saq",
            "SAQ",
            None,
            {"max_concurrent_ops": 20, "result_poll": 0.5},
            "`saq module.settings` with SAQ's defaults: concurrency=10 (each slot blocks on "
            "BLMOVE), job timeout 10 s, retries 1, results kept 600 s; `queue.apply()` polls "
            "every 0.5 s",
        ),
        Config(
            "saq",
            "SAQ tuned",
            100,
            {"max_concurrent_ops": 200, "result_poll": 0.005, "max_connections": 500},
            "concurrency=100 per process on a Redis client of up to 500 connections (each slot "
            "holds one, blocked on BLMOVE; redis-py's default pool refuses a 101st), "
            "RedisQueue(max_concurrent_ops=200) (operations are not held at 20 at a time); "
            "`queue.apply(poll_interval=0.005)`. (`job.refresh(until_complete=...)` listens on "
            "pub/sub instead, but misses a job that completes between its read and its "
            "subscription: here one such wait lasted its whole 30 s timeout)",
        ),
        Config(
            "taskiq",
            "taskiq",
            None,
            {"prefetch": 0, "xread_count": 100, "result_poll": 0.2, "log_level": "INFO"},
            "RedisStreamBroker with RedisAsyncResultBackend, as taskiq-redis's README shows; "
            "`taskiq worker` with --max-async-tasks 100, --max-prefetch 0, ack when the result "
            "is saved; `task.wait_result()` polls every 0.2 s",
        ),
        Config(
            "taskiq",
            "taskiq tuned",
            200,
            {"prefetch": 200, "xread_count": 200, "result_poll": 0.005, "log_level": "WARNING"},
            "--max-async-tasks 200, --max-prefetch 200, xread_count=200, --log-level WARNING; "
            "still acknowledged when the result is saved; `wait_result(check_interval=0.005)`",
        ),
    )
}

SAFE_CONFIGS: dict[str, Config] = {
    config.system: config
    for config in (
        Config(
            "pcmodel",
            "pcmodel",
            None,
            {"trace": False, "queue_size": 0, "visibility_timeout": 2.0},
            "Broker(visibility_timeout=2): a dead process's items are taken over 2 s after its "
            "heartbeats stop; results are de-duplicated by task id",
        ),
        Config(
            "arq",
            "arq",
            None,
            {"poll_delay": 0.05, "result_poll": 0.05, "quiet": True, "job_timeout": 2},
            "job_timeout=2 s: a job whose worker died is started again once its in-progress key "
            "expires (job_timeout + 10 s, fixed by arq); max_tries=5 (default)",
        ),
        Config(
            "saq",
            "SAQ",
            None,
            {"max_concurrent_ops": 200, "result_poll": 0.05, "heartbeat": 2, "retries": 3, "sweep": 1},
            "jobs with heartbeat=2 s and retries=3, the worker's sweep every 1 s: a job whose "
            "worker died is found stuck, aborted and retried",
        ),
        Config(
            "taskiq",
            "taskiq",
            None,
            {
                "prefetch": 0,
                "xread_count": 100,
                "result_poll": 0.05,
                "log_level": "WARNING",
                "idle_timeout": 2000,
                "lock_timeout": 2.0,
            },
            "RedisStreamBroker (acknowledged when the result is saved) with idle_timeout=2 s: a "
            "message left unacknowledged 2 s is claimed by another worker (XAUTOCLAIM), and "
            "unacknowledged_lock_timeout=2 s, which its docs advise for workers that get killed",
        ),
    )
}
