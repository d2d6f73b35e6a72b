"""pcmodel: the asyncio producer-consumer model, taught and implemented for real.

Producers put work items on a bounded work queue; a fixed pool of workers takes them and
calls an async `function(params)`; results go through a result queue to a result handler,
which calls `on_task_complete`; `on_job_complete` fires once at the end.

    >>> import asyncio, pcmodel
    >>> async def fetch(n):
    ...     await asyncio.sleep(1)
    ...     return n * 10
    >>> summary = pcmodel.run_job(fetch, range(6), workers=3, clock="virtual")
    >>> summary.elapsed, summary.busy_time, summary.speedup
    (2.0, 6.0, 3.0)
"""

from __future__ import annotations

from pcmodel import export, workloads
from pcmodel.adaptive import Adaptive
from pcmodel.broker import Broker
from pcmodel.clock import VirtualTimeLoop
from pcmodel.handle import JobHandle
from pcmodel.ledger import Ledger, LedgerError
from pcmodel.policies import Retry
from pcmodel.producer import Producers, producers
from pcmodel.records import DepthSample, Drop, JobSummary, LimitChange, LiveStats, TaskResult, ideal_makespan
from pcmodel.runner import DeadlockError, run_job, run_job_async, start_job
from pcmodel.stopping import StopSignal
from pcmodel.timeline import plot_timeline

__version__ = "0.1.0"

__all__ = [
    "Adaptive",
    "Broker",
    "DeadlockError",
    "DepthSample",
    "Drop",
    "JobHandle",
    "JobSummary",
    "Ledger",
    "LedgerError",
    "LimitChange",
    "LiveStats",
    "Producers",
    "Retry",
    "StopSignal",
    "TaskResult",
    "VirtualTimeLoop",
    "__version__",
    "export",
    "ideal_makespan",
    "plot_timeline",
    "producers",
    "run_job",
    "run_job_async",
    "start_job",
    "workloads",
]
