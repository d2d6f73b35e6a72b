"""A job's spec: its arguments, checked once, before anything starts.

`make_spec` checks every argument of `run_job` (and of `run_job_async` and `start_job`) and
returns them as a frozen `JobSpec`, the one value the controller (`pcmodel.controller`) and
whatever carries the items (`pcmodel.transport`) read. A module of its own so that the runner,
the controller and the broker side all import it without importing each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pcmodel import _validate
from pcmodel.adaptive import Adaptive
from pcmodel.clock import Clock
from pcmodel.policies import Retry
from pcmodel.producer import Producers
from pcmodel.records import JobSummary, TaskResult
from pcmodel.stopping import StopSignal

if TYPE_CHECKING:
    from pcmodel.broker.config import Broker

__all__ = ["JobSpec", "make_spec"]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job's checked arguments: everything `execute` needs."""

    function: Callable[[Any], Any]
    sources: tuple[Iterable[Any] | AsyncIterable[Any], ...]
    on_task_complete: Callable[[TaskResult], Any] | None
    on_job_complete: Callable[[JobSummary], Any] | None
    workers: int
    queue_size: int
    result_queue_size: int
    result_handlers: int
    clock: Clock
    trace: bool
    timeout: float | None = None
    retry: Retry | None = None
    max_per_second: float | None = None
    burst: int = 1
    fail_fast: bool = False
    stop: StopSignal | None = None
    broker: Broker | None = None
    stall_after: float | None = 60.0
    adaptive: Adaptive | None = None
    """`workers=Adaptive(...)`: the concurrency the job finds by itself; `workers` is then its
    `max`, the most worker tasks."""


def make_spec(
    function: object,
    params: object,
    *,
    on_task_complete: object = None,
    on_job_complete: object = None,
    workers: object = 50,
    queue_size: object = 100,
    result_queue_size: object = 100,
    result_handlers: object = 1,
    clock: object = "real",
    trace: object = True,
    timeout: object = None,
    retries: object = 0,
    max_per_second: object = None,
    burst: object = 1,
    fail_fast: object = False,
    stop: object = None,
    broker: object = None,
    stall_after: object = 60.0,
) -> JobSpec:
    """Check a job's arguments and return them as a `JobSpec`.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: an argument has a value out of range.
    """
    _validate.check_function(function)
    sources = params.sources if isinstance(params, Producers) else (_validate.check_source("params", params),)
    _validate.check_callable("on_task_complete", on_task_complete, optional=True)
    _validate.check_callable("on_job_complete", on_job_complete, optional=True)
    if stop is not None and not isinstance(stop, StopSignal):
        raise TypeError(f"stop must be a pcmodel.StopSignal or None, got {stop!r} ({type(stop).__name__})")
    checked_broker = _validate.check_broker(broker)
    if checked_broker is not None and clock == "virtual":
        raise ValueError(
            "clock='virtual' cannot drive worker processes through a broker: their calls take "
            "real time; use clock='real'"
        )
    adaptive = workers if isinstance(workers, Adaptive) else None
    return JobSpec(
        function=function,  # type: ignore[arg-type]
        sources=sources,
        on_task_complete=on_task_complete,  # type: ignore[arg-type]
        on_job_complete=on_job_complete,  # type: ignore[arg-type]
        workers=adaptive.max if adaptive is not None else _validate.check_workers(workers),
        queue_size=_validate.check_int("queue_size", queue_size, 0),
        result_queue_size=_validate.check_int("result_queue_size", result_queue_size, 0),
        result_handlers=_validate.check_int("result_handlers", result_handlers, 1),
        clock=_validate.check_clock(clock),
        trace=_validate.check_bool("trace", trace),
        timeout=_validate.check_seconds("timeout", timeout),
        retry=_validate.check_retries(retries),
        max_per_second=_validate.check_rate("max_per_second", max_per_second),
        burst=_validate.check_int("burst", burst, 1),
        fail_fast=_validate.check_bool("fail_fast", fail_fast),
        stop=stop,
        broker=checked_broker,
        stall_after=_validate.check_seconds("stall_after", stall_after),
        adaptive=adaptive,
    )
