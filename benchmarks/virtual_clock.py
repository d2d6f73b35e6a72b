"""Measurement 4: how fast the virtual clock simulates a job.

100,000 tasks sleep a random 0.1-2 s each (seeded) on 50 workers, on pcmodel's
`VirtualTimeLoop`: the job takes about an hour of virtual time; what is measured is the wall
time, as simulated tasks per second. The simulated makespan is checked against the ideal
greedy makespan (they must agree: on the virtual clock nothing else takes time).

For reference, on the same loop: the bare pipeline (what the loop and the queues cost
without pcmodel's bookkeeping); pcmodel with an unbounded work queue (the producer is never
woken for each item); and 50 tasks taking items from one shared iterator (no queues at all:
what the loop's timers alone cost). And the bare pipeline on a naive jumping loop that asks
the real selector for ready I/O (a `select()` system call) before every jump.

Rates are on this process's CPU time (the job is CPU-bound: on this shared machine wall time
also counts the time other processes held the CPU); wall time is given beside.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from typing import Any

import pcmodel
from benchmarks import _format
from benchmarks._harness import interleaved, load_average, median, spread
from benchmarks.contenders import Contender, bare_pipeline, pcmodel_runner, shared_iterator
from pcmodel.clock import VirtualTimeLoop

SIZES = {"full": {"tasks": 100_000, "rounds": 3}, "quick": {"tasks": 1_000, "rounds": 1}}
LIMIT = 50
SEED = 7


class _NaiveSelector:
    """Jumps the clock by the timeout, but only after a real, non-blocking `select()`."""

    def __init__(self, loop: NaiveJumpingLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if not ready and timeout:
            self._loop.virtual_now += timeout
        return ready

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class NaiveJumpingLoop(asyncio.SelectorEventLoop):
    """A virtual-time loop written the obvious way: one `select()` system call per jump."""

    def __init__(self) -> None:
        super().__init__()
        self.virtual_now = 0.0
        self._selector = _NaiveSelector(self, self._selector)  # type: ignore[has-type,arg-type]

    def time(self) -> float:
        return self.virtual_now


WHERE_THE_TIME_GOES = """\
Where the time goes: each simulated task costs four callbacks of asyncio's own machinery on
the loop: the timer of its `asyncio.sleep`, and the wake-ups of its worker, of the result
handler (every result arrives at a virtual instant of its own, so the handler is woken once
per result) and of the producer (a full bounded queue frees one slot per task, and the
producer is woken to fill it). The loop's own turn costs little now (section 7: it no longer
calls the selector, and its timer heap compares in C); the *no queues* row is the floor of
asyncio's callbacks alone, and the *unbounded* row, whose producer never waits, shows what
the producer's wake-ups cost (about a fifth). Reaching 100,000 tasks/s would take waking the
producer less than once per item, for instance only once the queue is half empty: that
changes the backpressure the course teaches (the queue would no longer stay full while the
producer waits, and the waits would be longer), so it is left alone. With `trace=True` the
job also keeps every `TaskResult` (section 7 explains what that costs).
"""

PCMODEL_FALSE = Contender("pcmodel trace=False", pcmodel_runner(False), make_loop=VirtualTimeLoop)
PCMODEL_TRUE = Contender("pcmodel trace=True", pcmodel_runner(True), make_loop=VirtualTimeLoop)
BARE_VIRTUAL = Contender("bare pipeline on VirtualTimeLoop", bare_pipeline, make_loop=VirtualTimeLoop)
BARE_NAIVE = Contender("bare pipeline on a naive jumping loop", bare_pipeline, make_loop=NaiveJumpingLoop)
UNBOUNDED = Contender(
    "pcmodel trace=False, queue_size=0 (unbounded)",
    pcmodel_runner(False, queue_size=0),
    make_loop=VirtualTimeLoop,
)
NO_QUEUES = Contender("50 tasks sharing one iterator, no queues", shared_iterator, make_loop=VirtualTimeLoop)
CONTENDERS = (PCMODEL_FALSE, PCMODEL_TRUE, BARE_VIRTUAL, UNBOUNDED, NO_QUEUES, BARE_NAIVE)


def run(quick: bool) -> dict[str, Any]:
    """Run the comparison; return its figures as JSON-ready data."""
    size = SIZES["quick" if quick else "full"]
    tasks, rounds = size["tasks"], size["rounds"]
    generator = random.Random(SEED)
    durations = [generator.uniform(0.1, 2.0) for _ in range(tasks)]
    ideal = pcmodel.ideal_makespan(durations, LIMIT)
    load_before = load_average()

    async def simulated(index: int) -> int:
        await asyncio.sleep(durations[index])
        return index

    async def job(contender: Contender) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await contender.run(simulated, range(tasks), lambda _result: None, LIMIT)
        return loop.time() - started

    trials = interleaved(CONTENDERS, rounds, job)
    rows = []
    for contender in CONTENDERS:
        walls = [t.wall for t in trials[contender.name]]
        cpus = [t.cpu for t in trials[contender.name]]
        makespans = [t.extra for t in trials[contender.name]]
        rows.append(
            {
                "name": contender.name,
                "wall": median(walls),
                "cpu": median(cpus),
                "tasks_per_s": tasks / median(cpus),
                "tasks_per_s_wall": tasks / median(walls),
                "makespan": makespans[0],
                "makespan_error": max(abs(m - ideal) for m in makespans) / ideal,
                "spread": list(spread(cpus)),
            }
        )
    return {
        "tasks": tasks,
        "rounds": rounds,
        "limit": LIMIT,
        "ideal": ideal,
        "rows": rows,
        "load": [load_before, load_average()],
    }


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met): at least 100,000 simulated tasks per second."""
    found = []
    for row in data["rows"]:
        if row["name"] in (PCMODEL_FALSE.name, PCMODEL_TRUE.name):
            rate = row["tasks_per_s"]
            found.append(
                (
                    f"virtual clock, {row['name']}: >= 100,000 simulated tasks/s",
                    f"{rate:,.0f}",
                    rate >= 100_000,
                )
            )
    return found


def section(data: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    intro = (
        f"{data['tasks']:,} tasks sleeping 0.1-2 s (seed {SEED}) on {data['limit']} workers, "
        f"{data['rounds']} interleaved rounds, medians. Ideal greedy makespan "
        f"{data['ideal']:,.1f} s of virtual time; *makespan error* is the simulated makespan's "
        "largest relative difference from it over the rounds."
    )
    rows = [
        [
            r["name"],
            f"{r['cpu']:.3f}",
            _format.rate(r["tasks_per_s"]),
            _format.rate(r["tasks_per_s_wall"]),
            f"{r['makespan']:,.3f}",
            f"{r['makespan_error']:.1e}",
            _format.spread(*r["spread"]),
        ]
        for r in data["rows"]
    ]
    table = _format.table(
        [
            "loop and job",
            "CPU (s)",
            "simulated tasks/s",
            "tasks/s (wall)",
            "virtual makespan (s)",
            "makespan error",
            "spread",
        ],
        rows,
    )
    return f"{intro}\n\n{table}\n\n{WHERE_THE_TIME_GOES}"
