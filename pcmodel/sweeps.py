"""Virtual-time experiments: run one job many times with one knob turned, return plain data.

Each point of a sweep is a whole job run on the virtual clock, so a sweep of a dozen jobs of
hundreds of simulated calls takes a fraction of a second and gives the same numbers every
time. The results are plain records, ready to print, to test, or to plot with
`pcmodel.timeline.plot_speedup` and `plot_queue_sweep` (drawn in `pcmodel.sweep_plots`).

`run_virtual` runs any hand-written async code on the virtual clock, so a lesson can build a
producer and workers by hand and still print exact times.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import statistics
import threading
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pcmodel._threads import result_when_done
from pcmodel.clock import VirtualTimeLoop, fail_if_stuck
from pcmodel.records import TaskResult, ideal_makespan
from pcmodel.runner import run_job
from pcmodel.workloads import Request, Traffic, Workload

__all__ = ["QueuePoint", "WorkersPoint", "run_virtual", "sweep_queue_size", "sweep_workers", "time_virtual"]

_T = TypeVar("_T")


def run_virtual(main: Awaitable[_T] | Callable[[], Awaitable[_T]]) -> _T:
    """Run `main` to the end on a fresh virtual-time loop and return what it returns.

    Like `asyncio.run(main)`, but on the virtual clock: inside, `asyncio.sleep` takes no
    real time and `asyncio.get_running_loop().time()` starts at 0.0, so hand-written async
    code prints exact, repeatable times. Works in a script and in a notebook cell, where a
    loop is already running (it then runs its loop in a thread of its own, as `run_job` does).

    The plain equivalent on the real clock is `asyncio.run(main())` in a script, and
    `await main()` in a notebook cell (where `asyncio.run` fails: the kernel's loop is
    running). Only code that waits with `asyncio.sleep` and asyncio's own primitives belongs
    here: a real network call, or a blocking call, takes no virtual time.

    Args:
        main: a coroutine, such as `main()`; or a function of no arguments returning one.

    Returns:
        What `main` returns.

    Raises:
        TypeError: `main` is neither awaitable nor callable.
        DeadlockError: every task waits and nothing can ever wake one (an `await` on a queue
            that stays empty, say); without this the call would hang.
        KeyboardInterrupt: the run was interrupted; it is cancelled first.
    """
    if not (inspect.isawaitable(main) or callable(main)):
        raise TypeError(f"main must be a coroutine or a function returning one, got {main!r}")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            return runner.run(_guarded(main))
    return _run_in_thread(main)


def time_virtual(main: Awaitable[_T] | Callable[[], Awaitable[_T]]) -> tuple[_T, float]:
    """`run_virtual(main)`, and the virtual seconds it took: `(result, seconds)`."""

    async def timed() -> tuple[_T, float]:
        result = await _awaitable(main)
        return result, asyncio.get_running_loop().time()

    if not (inspect.isawaitable(main) or callable(main)):
        raise TypeError(f"main must be a coroutine or a function returning one, got {main!r}")
    return run_virtual(timed)


def _awaitable(main: Awaitable[_T] | Callable[[], Awaitable[_T]]) -> Awaitable[_T]:
    return main if inspect.isawaitable(main) else main()


async def _guarded(main: Awaitable[_T] | Callable[[], Awaitable[_T]]) -> _T:
    """Await `main()`, turning a stuck virtual loop into a `DeadlockError`."""
    return await fail_if_stuck(
        _awaitable(main),
        "Look for an await that can never finish, such as queue.get() on a queue nobody "
        "fills or queue.join() with an item never marked done.",
    )


def _run_in_thread(main: Awaitable[_T] | Callable[[], Awaitable[_T]]) -> _T:
    """`run_virtual` from a thread that already runs a loop: a private loop in a thread of its own."""
    done: concurrent.futures.Future[_T] = concurrent.futures.Future()
    handles: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []
    ready = threading.Event()

    async def job() -> _T:
        task = asyncio.current_task()
        assert task is not None
        handles.append((asyncio.get_running_loop(), task))
        ready.set()
        return await _guarded(main)

    def target() -> None:
        try:
            with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
                value = runner.run(job())
        except asyncio.CancelledError:
            done.cancel()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread, not lost
            done.set_exception(error)
        else:
            done.set_result(value)  # once the loop is closed: nothing of the run is left
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="pcmodel-virtual", daemon=True)
    thread.start()
    try:
        return result_when_done(done)
    except KeyboardInterrupt:
        ready.wait()
        if handles:
            loop, task = handles[0]
            # A RuntimeError means the loop already closed: the run is over.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        raise
    finally:
        thread.join()  # the outcome is handed over (or the run cancelled): only the return is left


@dataclass(frozen=True, slots=True)
class WorkersPoint:
    """One job of a `sweep_workers`: the pool size and what it achieved."""

    workers: int
    """Size of the worker pool."""
    elapsed: float
    """Seconds the job took (virtual)."""
    speedup: float
    """Sequential time divided by `elapsed`."""
    ideal_makespan: float
    """Makespan of the ideal greedy schedule on this many workers."""
    ideal_speedup: float
    """Sequential time divided by `ideal_makespan`."""


def sweep_workers(workload: Workload, workers: Iterable[int], *, queue_size: int = 100) -> list[WorkersPoint]:
    """Run `workload` once per pool size in `workers`, on the virtual clock.

    Args:
        workload: the job to run (its items are all there at the start).
        workers: the pool sizes to try, each >= 1.
        queue_size: capacity of the work queue for every run.

    Returns:
        One `WorkersPoint` per pool size, in the order given.
    """
    points = []
    sequential = workload.sequential_time
    for count in workers:
        summary = run_job(
            workload.function,
            workload.params,
            workers=count,
            queue_size=queue_size,
            clock="virtual",
            trace=False,
        )
        ideal = ideal_makespan(workload.durations, count)
        points.append(
            WorkersPoint(
                workers=count,
                elapsed=summary.elapsed,
                speedup=summary.speedup,
                ideal_makespan=ideal,
                ideal_speedup=sequential / ideal if ideal > 0 else 0.0,
            )
        )
    return points


@dataclass(frozen=True, slots=True)
class QueuePoint:
    """One job of a `sweep_queue_size`: the queue's capacity and what it cost and saved."""

    queue_size: int
    """Capacity of the work queue (0: unbounded)."""
    max_queue_depth: int
    """Most requests waiting in the work queue at once."""
    peak_held: int
    """Most requests in memory at once: arrived and not yet handled (queued, in a producer's
    hand, in flight, or waiting for the result handler)."""
    peak_memory: int
    """Peak bytes allocated during the job, measured with `tracemalloc` (mostly payloads)."""
    producer_wait: float
    """Seconds the producer spent blocked on a full queue."""
    mean_queue_wait: float
    """Mean seconds a request waited in the work queue before a worker took it."""
    mean_latency: float
    """Mean seconds from a request's arrival to the end of its handling."""
    max_latency: float
    """Longest such time."""
    elapsed: float
    """Seconds the whole job took."""


def sweep_queue_size(traffic: Traffic, sizes: Iterable[int], *, workers: int = 4) -> list[QueuePoint]:
    """Run `traffic` once per work-queue capacity in `sizes`, on the virtual clock.

    Each run keeps no per-task trace (so handled requests and their payloads are freed), and
    measures its peak memory with `tracemalloc`. Latency is counted from each request's
    arrival, so time spent waiting upstream, while the producer is blocked, counts too.

    Args:
        traffic: the stream of requests.
        sizes: the capacities to try, each >= 0 (0: unbounded).
        workers: size of the worker pool for every run.

    Returns:
        One `QueuePoint` per capacity, in the order given.
    """
    return [_queue_point(traffic, size, workers) for size in sizes]


def _queue_point(traffic: Traffic, size: int, workers: int) -> QueuePoint:
    """Run `traffic` once with a work queue of capacity `size` and measure it."""
    queue_waits: list[float] = []
    latencies: list[float] = []
    held = peak_held = 0

    async def counted() -> AsyncIterator[Request]:
        nonlocal held, peak_held
        async for request in traffic.source():
            held += 1
            peak_held = max(peak_held, held)
            yield request

    def measure(result: TaskResult) -> None:
        nonlocal held
        held -= 1
        queue_waits.append(result.wait)
        latencies.append(result.finished_at - result.params.arrives_at)

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        summary = run_job(
            traffic.function,
            counted(),
            on_task_complete=measure,
            workers=workers,
            queue_size=size,
            clock="virtual",
            trace=False,
        )
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return QueuePoint(
        queue_size=size,
        max_queue_depth=summary.max_queue_depth,
        peak_held=peak_held,
        peak_memory=peak,
        producer_wait=summary.producer_wait,
        mean_queue_wait=statistics.fmean(queue_waits) if queue_waits else 0.0,
        mean_latency=statistics.fmean(latencies) if latencies else 0.0,
        max_latency=max(latencies, default=0.0),
        elapsed=summary.elapsed,
    )
