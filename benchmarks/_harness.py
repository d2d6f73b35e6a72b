"""Interleaved rounds, timing and summaries shared by the measurements."""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.contenders import Contender

Job = Callable[[Contender], Awaitable[Any]]
"""Runs one contender once, on the running loop; what it returns is kept with the trial."""


@dataclass(frozen=True)
class Trial:
    """One timed run of one contender."""

    wall: float
    """Seconds of wall time."""
    cpu: float
    """Seconds of CPU time of this process (less disturbed by other processes than wall)."""
    extra: Any = None
    """Whatever the job returned."""


def run_trial(contender: Contender, job: Job) -> Trial:
    """Run `job(contender)` once on a fresh event loop of the contender's kind and time it.

    Only the job is timed: making and closing the loop are not.
    """
    gc.collect()

    async def timed() -> Trial:
        wall, cpu = time.perf_counter(), time.process_time()
        extra = await job(contender)
        return Trial(time.perf_counter() - wall, time.process_time() - cpu, extra)

    with asyncio.Runner(loop_factory=contender.loop_factory()) as runner:
        return runner.run(timed())


def interleaved(contenders: Sequence[Contender], rounds: int, job: Job) -> dict[str, list[Trial]]:
    """Run every contender once per round, A B C ... A B C ..., and collect the trials.

    Each round starts one place further along the list, so no contender always runs first
    (just after a collection) or last.
    """
    trials: dict[str, list[Trial]] = {c.name: [] for c in contenders}
    for round_index in range(rounds):
        shift = round_index % len(contenders)
        for contender in [*contenders[shift:], *contenders[:shift]]:
            trials[contender.name].append(run_trial(contender, job))
    return trials


def median(values: Sequence[float]) -> float:
    """The median of `values`."""
    return statistics.median(values)


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(min / median, max / median): how far the rounds strayed from their median."""
    middle = statistics.median(values)
    if middle == 0:
        return (1.0, 1.0)
    return (min(values) / middle, max(values) / middle)


def load_average() -> float:
    """The one-minute load average (how busy the machine was: other processes add noise)."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - platforms without it
        return float("nan")


def available(contenders: Sequence[Contender]) -> tuple[list[Contender], list[str]]:
    """The contenders that can run here, and the names of those whose library is missing."""
    ready = [c for c in contenders if c.available]
    missing = [c.name for c in contenders if not c.available]
    return ready, missing


def rates(trials: dict[str, list[Trial]], tasks: int, reference: str) -> list[dict[str, Any]]:
    """Per contender: tasks/s, ratio to `reference` and spread, on CPU time and on wall time.

    CPU time (of this process) is the primary measure: the contenders are single-threaded and
    CPU-bound here, and on a shared machine wall time also counts the time other processes
    held the CPU. Wall time is kept beside it.
    """
    reference_cpu = median([t.cpu for t in trials[reference]])
    reference_wall = median([t.wall for t in trials[reference]])
    rows = []
    for name, runs in trials.items():
        cpus = [t.cpu for t in runs]
        walls = [t.wall for t in runs]
        rows.append(
            {
                "name": name,
                "rounds": len(runs),
                "tasks_per_s": tasks / median(cpus),
                "ratio": reference_cpu / median(cpus),
                "spread": list(spread(cpus)),
                "tasks_per_s_wall": tasks / median(walls),
                "ratio_wall": reference_wall / median(walls),
                "spread_wall": list(spread(walls)),
                "cpus": cpus,
                "walls": walls,
            }
        )
    return rows
