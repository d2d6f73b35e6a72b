"""Read-only records of a job run on worker processes: which process ran which lanes.

A job on a broker returns the same `JobSummary` as a job in one process, extended with the
processes that took part. `TaskResult.worker` is a *lane*: each worker process gets a block
of consecutive lanes, one per worker slot, in the order the controller first heard from it.
A process started with `--workers 50` that answered first owns lanes 0-49, the next one 50-99,
and so on, so the timeline shows one band of lanes per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pcmodel.records import JobSummary

__all__ = ["BrokerJobSummary", "WorkerInfo", "WorkerProcess"]


@dataclass(frozen=True, slots=True)
class WorkerProcess:
    """A worker process that took part in a job, and the lanes it owns in the job's timeline."""

    name: str
    """Its consumer name, `host:pid:token`, unique per process start."""
    host: str
    """The host it ran on."""
    pid: int
    """Its process id on that host."""
    first_lane: int
    """Its first lane: `TaskResult.worker` for its slot 0."""
    workers: int
    """Its number of worker slots (`--workers`): it owns lanes `first_lane` to `first_lane + workers - 1`."""
    tasks: int
    """Results of this job it delivered (duplicates not counted)."""

    @property
    def lanes(self) -> range:
        """The lanes it owns."""
        return range(self.first_lane, self.first_lane + self.workers)

    @property
    def label(self) -> str:
        """A short name for plots: `host:pid`."""
        return f"{self.host}:{self.pid}"


@dataclass(frozen=True, slots=True)
class BrokerJobSummary(JobSummary):
    """A `JobSummary` for a job run on worker processes through a broker.

    `workers` counts the lanes of every process that took part. `max_queue_depth` counts the
    items produced and not yet finished (queued or running), which is what the broker's
    backpressure bounds; `queue_depth`, rebuilt from the trace, counts the items waiting for a
    worker slot (in Redis or in a worker process's hands, not yet started).
    """

    job_id: str = ""
    """The job's id: its keys in Redis are `pcmodel:job:{job_id}:...`."""
    queue: str = ""
    """The queue the job ran on (by default the function's `module:qualname`)."""
    processes: tuple[WorkerProcess, ...] = ()
    """The worker processes that delivered results, in lane order."""
    duplicates: int = 0
    """Results dropped because their task had already been reported (or was never produced)."""
    redelivered: int = 0
    """Tasks finished by a worker that took them over from one that stopped (kill -9, crash)."""
    malformed: int = 0
    """Entries of the job's streams that were not messages pcmodel wrote, or could not be read
    (not JSON, nested too deep, fields missing or of the wrong type): each is counted once
    here and logged (the first one), never run as a task nor counted in `tasks`."""

    def process_of(self, lane: int) -> WorkerProcess | None:
        """The process that owns `lane` (a `TaskResult.worker`), or None."""
        for process in self.processes:
            if lane in process.lanes:
                return process
        return None

    def lane_labels(self) -> list[str]:
        """A label per lane, `host:pid/slot`, for the timeline's lane axis."""
        labels = [f"lane {lane}" for lane in range(self.workers)]
        for process in self.processes:
            for slot, lane in enumerate(process.lanes):
                if lane < len(labels):
                    labels[lane] = f"{process.label}/{slot}"
        return labels

    def scalars(self) -> dict[str, Any]:
        """The summary's scalar figures, with the broker's own, as a plain dict."""
        figures = JobSummary.scalars(self)
        figures.update(
            processes=len(self.processes),
            duplicates=self.duplicates,
            redelivered=self.redelivered,
            malformed=self.malformed,
        )
        return figures


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker process, as its heartbeat describes it."""

    name: str
    """Its consumer name, `host:pid:token`."""
    host: str
    """The host it runs on."""
    pid: int
    """Its process id."""
    queue: str
    """The queue it serves."""
    workers: int
    """Its number of worker slots."""
    items: int
    """Results it has written since it started."""
