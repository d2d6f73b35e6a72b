"""The controller side of a broker job: `run_job_on_broker`, and who serves a queue.

A broker job runs through the one controller (`pcmodel.controller.execute`), as a local job
does; `pcmodel.broker.transport.RedisTransport` carries its items through Redis Streams. This
module keeps the entry point by the broker's name, and re-exports `live_workers` and
`wait_for_workers` (`pcmodel.broker.presence`). It sits above the controller: the controller
imports none of the broker's modules but, for a broker job, the transport.
"""

from __future__ import annotations

import dataclasses

from pcmodel.broker._redis import check_url
from pcmodel.broker.config import Broker
from pcmodel.broker.presence import live_workers, wait_for_workers
from pcmodel.broker.records import BrokerJobSummary
from pcmodel.controller import execute
from pcmodel.spec import JobSpec

__all__ = ["live_workers", "run_job_on_broker", "wait_for_workers"]


async def run_job_on_broker(spec: JobSpec, broker: str | Broker | None = None) -> BrokerJobSummary:
    """Run the job described by `spec` on the worker processes serving its queue.

    The same job as a local one, with the workers in other processes, on any host that
    reaches the Redis server: start them with
    `python -m pcmodel worker --broker URL --function module:name --workers 50`.
    The callbacks run here, exactly once per item, and the summary is the same (a
    `BrokerJobSummary`, which also says which process owns which timeline lanes).

    What travels: the params, as JSON, and the results' values, as JSON (tuples come back as
    lists). Params JSON cannot carry fail their item here, with a `TypeError`; so does a
    value JSON cannot carry, in the worker. Errors come back as built-in exceptions or as
    `RemoteError`s that keep the type's name.

    From `spec`: `function` only names the queue (the workers run their own copy, named on
    their command line); `timeout`, `retries`, `max_per_second` and `burst` apply in the
    worker processes (the rate limit is shared by all of them); `queue_size` bounds the
    unfinished items; `fail_fast`, `stop`, `trace`, the callbacks and the result handlers
    work here as in a local job. `workers` is each worker process's `--workers`, not this
    argument.

    Args:
        spec: the checked job (see `pcmodel.spec.make_spec`); its clock must be "real".
        broker: a Redis URL, like `redis://127.0.0.1:6379/0`, or a `Broker` that also sets
            the queue, the visibility timeout, the most deliveries and the keys' lease;
            None (the default) runs on `spec.broker`.

    Returns:
        The job's `BrokerJobSummary`.

    Raises:
        TypeError, ValueError: a bad argument, before anything is sent.
        ConnectionError: the broker cannot be reached, refuses the connection (a bad password
            or database number), stops answering within `Broker.round_trip_timeout`, or fails
            mid-job. The message names the URL, without its password.
    """
    if broker is None:
        broker = spec.broker
    if broker is None:
        raise ValueError("run_job_on_broker needs a broker: pass broker=URL, or a spec made with broker=")
    if not isinstance(broker, Broker):
        broker = Broker(check_url(broker))
    summary = await execute(dataclasses.replace(spec, broker=broker))
    assert isinstance(summary, BrokerJobSummary)  # what the Redis transport's jobs return
    return summary
