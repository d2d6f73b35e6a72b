"""The seam between the controller and whatever carries a job's items to its workers.

The controller (`pcmodel.controller`) owns a job's lifecycle, once: check, start, produce,
stop, unwind, summarize, `on_job_complete`. What differs between one process and many is
how an item reaches a worker slot and how its outcome comes back: that is a `Transport`.
httpx is the model: its `Client` knows only `handle_async_request()`, and the HTTP, mock and
ASGI transports plug in behind it.

A transport, used as `async with transport:` around the whole job,

1. gets ready in `__aenter__`, before the job's clock starts (connects, creates its keys);
2. `start`s its own tasks in the job's task group: the worker tasks in one process, a reader
   and a keeper of the job's keys for Redis. Every outcome goes onto the controller's result
   queue as a row of `TaskResult` fields;
3. runs each producer (`produce`): it sends every item of a source, waiting while `queue_size`
   items are unfinished (the backpressure);
4. on a stop, `take_back`s the items no worker has started (reporting each to the job's
   `JobControl`), and on a fail-fast stop halts the calls in flight;
5. `finish`es: waits until every item sent has its outcome on the result queue;
6. `report`s its counts and its own figures for the summary;
7. releases what it holds in `__aexit__`, whatever happened.

A transport may also offer knobs on a running job (`Tunable`), which `pcmodel.JobHandle`
turns: all of them are called on the job's loop, between two steps of its pieces, and must
not block. What each must do:

- `set_workers(n)`: let at most `n` calls be in flight from now on (an adaptive job: set its
  limit by hand, between its `min` and `max`, recorded as a "set_workers" `LimitChange`);
  lose nothing (every item still gets exactly one outcome) and, once the calls in flight
  finish, never exceed `n` (an adaptive limit may grow back above it on its own). The calls
  in flight are not interrupted.
- `set_rate(max_per_second, burst)`: the rate limit of every attempt from now on; None
  removes it.
- `pause()` / `resume()`: start no call (no item, no retry) until `resume`; the calls in
  flight finish. A stop resumes a paused job, so its calls in flight can end (the in-process
  transport releases its pool in `take_back`, for every stop that takes the queue back).
- `counts()`: the live figures (a `LiveStats` with `recent_rate` and `elapsed` at 0, which
  the handle fills in), readable from any thread (approximate there).

The in-process transport implements all of them (`pcmodel._pool`); the broker transport writes
them into the job's keys, and each worker process applies them between two items (per process:
`set_workers` is each process's slots; see `pcmodel.broker._job_knobs`).

Two live here: `pcmodel._local_transport.LocalTransport` (the bounded queues and worker
tasks of one process) and `pcmodel.broker.transport.RedisTransport` (Redis Streams, worker
processes anywhere). A third (NATS JetStream, say) is a new module implementing this
protocol, and one line in `pcmodel.controller.open_transport`: not a new controller.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from pcmodel._queues import JobQueue
from pcmodel._summary import Tally
from pcmodel.producer import ProducerReport
from pcmodel.records import JobSummary, LiveStats
from pcmodel.spec import JobSpec
from pcmodel.stopping import JobControl

__all__ = ["Job", "Transport", "TransportReport", "Tunable"]


@dataclass(slots=True, eq=False)
class Job:
    """What the controller shares with the transport of a running job."""

    spec: JobSpec
    control: JobControl
    result_queue: JobQueue[Any]
    """Where every outcome goes, as a row of `TaskResult` fields, for the result handlers."""
    now: Callable[[], float]
    """The job's clock."""
    start: float
    """The job's start on that clock: every time a result reports is relative to it."""
    task_ids: itertools.count[int] = field(default_factory=itertools.count)
    """The job's task numbering, shared by all its producers."""
    producers: list[asyncio.Task[None]] = field(default_factory=list)
    handlers: list[asyncio.Task[Any]] = field(default_factory=list)

    def since_start(self) -> float:
        return self.now() - self.start


@dataclass(frozen=True, slots=True)
class TransportReport:
    """What a transport adds to the job's summary."""

    tally: Tally
    workers: int
    """The worker lanes."""
    kind: type[JobSummary] = JobSummary
    """The summary's type."""
    extras: dict[str, Any] = field(default_factory=dict)
    """The fields only `kind` has, or figures only this transport knows."""


class Transport(Protocol):
    """Carries one job's items to its workers and their outcomes back to the controller."""

    now: Callable[[], float]
    """The job's clock (read once `__aenter__` returned)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release everything; may raise a clearer error in place of `error`."""

    def start(self, job: Job, group: asyncio.TaskGroup) -> None:
        """Start the transport's own tasks in the job's group (before the producers)."""

    def produce(
        self, source: Iterable[Any] | AsyncIterable[Any], report: ProducerReport
    ) -> Coroutine[Any, Any, None]:
        """One producer: send every item of `source`, keeping count in `report`."""

    def take_back(self, control: JobControl, *, cancel_in_flight: bool) -> None:
        """A stop: take back the items not yet started; maybe halt the calls in flight."""

    async def finish(self) -> None:
        """After the producers: wait until every item sent has its outcome on the result queue."""

    def report(self) -> TransportReport:
        """The counts and figures for the summary (after `__aexit__`)."""


@runtime_checkable
class Tunable(Protocol):
    """The knobs a transport may offer on a running job (see the module docstring)."""

    def set_workers(self, workers: int) -> None:
        """At most `workers` calls in flight from now on."""

    def set_rate(self, max_per_second: float | None, burst: int | None) -> None:
        """The rate limit from now on (None: none); `burst` None keeps the current one."""

    def pause(self) -> None:
        """Start no call until `resume`."""

    def resume(self) -> None:
        """Start calls again."""

    def counts(self) -> LiveStats:
        """The live figures."""
