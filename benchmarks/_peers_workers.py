"""What each library's own worker command loads, built from the environment the benchmark sets.

    python -m arq benchmarks._peers_workers.ArqSettings
    saq benchmarks._peers_workers.saq_settings
    taskiq worker benchmarks._peers_workers:taskiq_broker

(pcmodel's workers need nothing here: `python -m pcmodel worker --function
benchmarks._peers_tasks:pcmodel_item`.) The names are built when the command first asks for
them (a module `__getattr__`), so a worker process imports only its own library. Environment:

- `PEERS_REDIS`: the Redis URL; `PEERS_QUEUE`: the queue (each run of each system its own);
- `PEERS_CONFIG`: a label of `_peers_tasks.CONFIGS`, or `safe:SYSTEM` for `SAFE_CONFIGS`;
- `PEERS_SLOTS`: calls in flight per process.

Each worker, once connected, sets `peers:ready:QUEUE:PID` (its startup hook: arq's
`on_startup`, SAQ's `startup`, taskiq's WORKER_STARTUP event), which is how the benchmark
knows every process is serving, and which process to kill in the crash test.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from benchmarks._peers_tasks import CONFIGS, SAFE_CONFIGS, Config, arq_item, saq_item, taskiq_item

# Also `ArqSettings` and `taskiq_broker`, built on first use by `__getattr__` below.
__all__ = [
    "ARQ_QUIET_LOGS",
    "arq_redis_settings",
    "config",
    "make_taskiq_broker",
    "ready_key",
    "saq_queue",
    "saq_settings",
]

ARQ_QUIET_LOGS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"arq.quiet": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["arq.quiet"], "level": "WARNING"}},
}
"""arq's logging at WARNING (its CLI's default logs every job at INFO), for --custom-log-dict."""


def config() -> Config:
    """The configuration named by PEERS_CONFIG."""
    name = os.environ["PEERS_CONFIG"]
    if name.startswith("safe:"):
        return SAFE_CONFIGS[name.removeprefix("safe:")]
    return CONFIGS[name]


def ready_key(queue: str, pid: int | str) -> str:
    """The key a worker process sets once it serves `queue` (`pid` "*": a pattern for all)."""
    return f"peers:ready:{queue}:{pid}"


async def _announce(*_: Any) -> None:
    """Set this process's ready key (called by each library's startup hook)."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(os.environ["PEERS_REDIS"])
    try:
        await client.set(ready_key(os.environ["PEERS_QUEUE"], os.getpid()), os.getpid())
    finally:
        await client.aclose()


def arq_redis_settings(url: str, options: dict[str, Any]) -> Any:
    """arq's RedisSettings for `url`, with a connection pool as large as the options say."""
    from arq.connections import RedisSettings

    settings = RedisSettings.from_dsn(url)
    settings.max_connections = options.get("max_connections")
    return settings


def _arq_settings() -> type:
    from arq.worker import func

    options = config().options

    class ArqSettings:
        functions: ClassVar = [func(arq_item, name="peers_item")]
        redis_settings = arq_redis_settings(os.environ["PEERS_REDIS"], options)
        queue_name = os.environ["PEERS_QUEUE"]
        max_jobs = int(os.environ["PEERS_SLOTS"])
        poll_delay = options["poll_delay"]
        job_timeout = options.get("job_timeout", 300)
        log_results = not options["quiet"]
        on_startup = _announce

    return ArqSettings


def saq_queue(url: str, name: str, options: dict[str, Any]) -> Any:
    """A SAQ Redis queue, on a connection pool as large as the options say."""
    import redis.asyncio
    from saq.queue.redis import RedisQueue

    client = redis.asyncio.Redis.from_url(url, max_connections=options.get("max_connections"))
    return RedisQueue(client, name=name, max_concurrent_ops=options["max_concurrent_ops"])


def saq_settings() -> dict[str, Any]:
    """SAQ's worker settings (SAQ calls a callable it is given to get them)."""
    options = config().options
    queue = saq_queue(os.environ["PEERS_REDIS"], os.environ["PEERS_QUEUE"], options)
    settings: dict[str, Any] = {
        "queue": queue,
        "functions": [saq_item],
        "concurrency": int(os.environ["PEERS_SLOTS"]),
        "startup": _announce,
    }
    if "sweep" in options:
        settings["timers"] = {"sweep": options["sweep"]}
    return settings


def make_taskiq_broker(url: str, queue: str, options: dict[str, Any]) -> tuple[Any, Any]:
    """A taskiq stream broker with a Redis result backend on `queue`, and its task `peers_item`.

    The controller makes the same one to send items and read results.
    """
    from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

    broker = RedisStreamBroker(
        url,
        queue_name=queue,
        consumer_group_name=queue,
        xread_count=options["xread_count"],
        idle_timeout=options.get("idle_timeout", 600_000),
        unacknowledged_lock_timeout=options.get("lock_timeout"),
    ).with_result_backend(RedisAsyncResultBackend(url, prefix_str=queue))
    task = broker.register_task(taskiq_item, task_name="peers_item")
    return broker, task


def _taskiq_broker() -> Any:
    from taskiq import TaskiqEvents

    broker, _ = make_taskiq_broker(os.environ["PEERS_REDIS"], os.environ["PEERS_QUEUE"], config().options)
    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, _announce)
    return broker


_BUILDERS = {"ArqSettings": _arq_settings, "taskiq_broker": _taskiq_broker}


def __getattr__(name: str) -> Any:
    # Build a library's object only when its worker command asks for it.
    builder = _BUILDERS.get(name)
    if builder is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = builder()
    globals()[name] = value
    return value
