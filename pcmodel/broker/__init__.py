"""Beyond one machine: the same job on worker processes across hosts, through Redis Streams.

Needs the `redis` extra (`pip install 'pcmodel[redis]'`) and a Redis server (Redis 7 is what
the tests run; `.ci/redis-setup.sh` installs Debian's).

Start worker processes, on any hosts that reach the Redis server:

    python -m pcmodel worker --broker redis://127.0.0.1:6379/0 \\
        --function pcmodel.workloads:fetch_price --workers 50

then run the job as usual, naming the broker:

    summary = pcmodel.run_job(fetch_price, cars, on_task_complete=show,
                              broker="redis://127.0.0.1:6379/0")

The function, the callbacks and the summary are the same as in one process. What changes:

- params and return values travel as JSON (never pickle); the code a worker runs is the one
  named on its command line, never something a message names;
- a worker process killed mid-task loses nothing: once its heartbeats stop, the items it held
  are taken over by live processes after the visibility timeout, and results are
  de-duplicated by task id, so `on_task_complete` still runs exactly once per item;
- each job's keys are its own (`pcmodel:job:{id}:...`) and are deleted when it ends.

Modules: `config` (`Broker`, the settings; no redis import), `transport` (`RedisTransport`: a
job's items carried through Redis, behind the one controller of `pcmodel.controller`, with its
result reader in `_results` and its keys' keeper in `_job_keeper`), `controller`
(`run_job_on_broker`, through the one controller), `presence` (`live_workers`,
`wait_for_workers`: who serves a queue), `worker` (the worker process, `serve_worker`, and a map of its pieces:
the fetcher, the slots, the writer and the keeper in `_fetch`, `_reclaim`, `_slots`,
`_writer`, `_keeper`, over the state in `_process`), `naming` (`queue_name`, `load_function`;
no redis import), `rate_limit` (the rate limit every worker process of a job shares), `cli`
(`worker_main`, the command line), `messages` (what travels, and the errors), `records`
(`BrokerJobSummary`). Importing this package is light: redis is imported when one of the
other names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pcmodel.broker.config import Broker

if TYPE_CHECKING:
    from pcmodel.broker.cli import worker_main
    from pcmodel.broker.controller import run_job_on_broker
    from pcmodel.broker.messages import MalformedMessageError, RemoteError, WorkerLostError
    from pcmodel.broker.naming import load_function, queue_name
    from pcmodel.broker.presence import live_workers, wait_for_workers
    from pcmodel.broker.records import BrokerJobSummary, WorkerInfo, WorkerProcess
    from pcmodel.broker.worker import WorkerStats, serve_worker

__all__ = [
    "Broker",
    "BrokerJobSummary",
    "MalformedMessageError",
    "RemoteError",
    "WorkerInfo",
    "WorkerLostError",
    "WorkerProcess",
    "WorkerStats",
    "live_workers",
    "load_function",
    "queue_name",
    "run_job_on_broker",
    "serve_worker",
    "wait_for_workers",
    "worker_main",
]

_HOMES = {
    "live_workers": "presence",
    "run_job_on_broker": "controller",
    "wait_for_workers": "presence",
    "MalformedMessageError": "messages",
    "RemoteError": "messages",
    "WorkerLostError": "messages",
    "BrokerJobSummary": "records",
    "WorkerInfo": "records",
    "WorkerProcess": "records",
    "WorkerStats": "worker",
    "load_function": "naming",
    "queue_name": "naming",
    "serve_worker": "worker",
    "worker_main": "cli",
}


def __getattr__(name: str) -> Any:
    # The first use of a name that needs redis imports its module (and redis) then.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pcmodel.broker' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pcmodel.broker.{home}"), name)
    globals()[name] = value
    return value
