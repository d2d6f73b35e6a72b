"""The job as a whole, through the public API: arguments, lifecycle, trace, deadlocks."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import pcmodel
from pcmodel import DeadlockError, run_job, run_job_async, start_job

from .conftest import ConcurrencySpy


async def noop(params: Any) -> Any:
    return params


def ok_callback(result: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"function": 42}, TypeError, r"function must be callable, got 42 \(int\)"),
        (
            {"params": 7},
            TypeError,
            r"params must be an iterable or an async iterable of items, got 7 \(int\)",
        ),
        ({"params": "abc"}, TypeError, r"params must be an iterable of items, got a str .*wrap it in a list"),
        (
            {"on_task_complete": "print"},
            TypeError,
            r"on_task_complete must be a callable or None, got 'print'",
        ),
        ({"on_job_complete": 1}, TypeError, r"on_job_complete must be a callable or None, got 1"),
        ({"workers": 0}, ValueError, r"workers must be >= 1, got 0"),
        (
            {"workers": 2.5},
            TypeError,
            r"workers must be an int or a pcmodel.Adaptive\(min=..., max=...\), got 2.5 \(float\)",
        ),
        (
            {"workers": True},
            TypeError,
            r"workers must be an int or a pcmodel.Adaptive\(min=..., max=...\), got True \(bool\)",
        ),
        ({"queue_size": -1}, ValueError, r"queue_size must be >= 0, got -1"),
        ({"result_queue_size": -5}, ValueError, r"result_queue_size must be >= 0, got -5"),
        ({"result_handlers": 0}, ValueError, r"result_handlers must be >= 1, got 0"),
        ({"clock": "fast"}, ValueError, r"clock must be one of 'real', 'virtual', got 'fast'"),
        ({"clock": None}, TypeError, r"clock must be one of 'real', 'virtual', got None"),
        ({"trace": "yes"}, TypeError, r"trace must be True or False, got 'yes'"),
    ],
)
@pytest.mark.parametrize("entry", ["run_job", "run_job_async", "start_job"])
def test_bad_arguments_fail_before_any_task_starts(
    entry: str, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    spy = ConcurrencySpy(seconds=0.0)
    pulled: list[int] = []

    def params() -> Iterator[int]:
        pulled.append(1)
        yield 1

    call: dict[str, Any] = {"function": spy, "params": params(), **arguments}
    function, source = call.pop("function"), call.pop("params")

    async def attempt() -> None:
        if entry == "run_job":
            run_job(function, source, **call)
        elif entry == "run_job_async":
            await run_job_async(function, source, **call)
        else:
            start_job(function, source, **call)

    with pytest.raises(error, match=message):
        asyncio.run(attempt())
    assert spy.calls == []
    assert pulled == []


def test_trace_false_keeps_nothing_per_task() -> None:
    summary = run_job(ConcurrencySpy(seconds=1.0), range(100), workers=10, trace=False, clock="virtual")
    assert (summary.results, summary.queue_depth, summary.producer_blocked) == (None, None, None)
    assert summary.ideal_makespan is None
    assert (summary.tasks, summary.elapsed, summary.busy_time) == (100, 10.0, 100.0)
    assert summary.max_queue_depth == 100


def test_trace_false_memory_does_not_grow_with_the_number_of_items() -> None:
    import tracemalloc

    def peak(items: int) -> int:
        gc.collect()
        tracemalloc.start()
        run_job(noop, range(items), workers=5, queue_size=10, trace=False, clock="virtual")
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(2_000), peak(40_000)
    # Twenty times the items, about the same peak: nothing per item is kept.
    assert large < small * 1.5 + 50_000


def test_an_empty_job_completes_with_zero_counts() -> None:
    finished: list[Any] = []
    summary = run_job(noop, [], on_job_complete=finished.append, clock="virtual")
    assert finished == [summary]
    assert (summary.tasks, summary.elapsed, summary.speedup, summary.ideal_makespan) == (0, 0.0, 0.0, 0.0)


async def test_run_job_async_on_the_callers_loop_uses_real_time() -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    summary = await run_job_async(ConcurrencySpy(seconds=0.01), range(4), workers=4)
    assert summary.clock == "real"
    assert summary.tasks == 4
    assert loop.time() - before >= summary.elapsed >= 0.01


async def test_run_job_async_with_the_virtual_clock_inside_a_real_loop() -> None:
    summary = await run_job_async(ConcurrencySpy(seconds=60.0), range(10), workers=5, clock="virtual")
    assert summary.elapsed == 120.0
    assert summary.clock == "virtual"


async def test_run_job_inside_a_running_loop_blocks_on_a_private_loop(no_leftover_threads: None) -> None:
    caller_loop = asyncio.get_running_loop()
    loops: set[int] = set()

    def on_task_complete(result: Any) -> None:
        loops.add(id(asyncio.get_running_loop()))

    summary = run_job(ConcurrencySpy(seconds=0.001), range(5), on_task_complete=on_task_complete)
    assert summary.tasks == 5
    assert loops
    assert id(caller_loop) not in loops
    virtual = run_job(ConcurrencySpy(seconds=3.0), range(5), workers=5, clock="virtual")
    assert virtual.elapsed == 3.0


async def test_cancelling_run_job_async_cancels_every_piece_and_leaves_no_task() -> None:
    spy = ConcurrencySpy(seconds=100.0)
    before = asyncio.all_tasks()
    job = asyncio.ensure_future(run_job_async(spy, range(1_000), workers=10))
    while spy.running < 10:  # noqa: ASYNC110 - polling the job until it is busy
        await asyncio.sleep(0)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert spy.running == 0  # every call in flight was cancelled, not abandoned
    assert asyncio.all_tasks() == before


async def test_start_job_runs_in_the_background_and_can_be_cancelled() -> None:
    spy = ConcurrencySpy(seconds=0.001)
    task = start_job(spy, range(20), workers=4)
    assert isinstance(task, pcmodel.JobHandle)
    summary = await task
    assert summary.tasks == 20

    slow = ConcurrencySpy(seconds=100.0)
    before = asyncio.all_tasks() - {task}
    task = start_job(slow, range(100), workers=4)
    while slow.running < 4:  # noqa: ASYNC110 - polling the job until it is busy
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before
    assert slow.running == 0


def test_start_job_without_a_running_loop_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"start_job\(\) needs a running event loop.*use run_job"):
        start_job(noop, [1])


def test_a_stuck_virtual_job_raises_deadlock_error_not_a_hang(no_leftover_threads: None) -> None:
    never = asyncio.Event()

    async def waits_forever(n: int) -> None:
        if n == 2:
            await never.wait()
        await asyncio.sleep(1)

    with pytest.raises(DeadlockError, match=r"stuck at virtual time 2\.000 s: every task is waiting"):
        run_job(waits_forever, range(4), workers=2, clock="virtual")


async def test_a_stuck_virtual_job_in_a_running_loop_raises_deadlock_error(no_leftover_threads: None) -> None:
    async def waits_forever(n: int) -> None:
        await asyncio.Future()

    with pytest.raises(DeadlockError, match=r"stuck at virtual time 0\.000 s"):
        await run_job_async(waits_forever, range(3), clock="virtual")


def test_virtual_jobs_are_repeatable() -> None:
    job = pcmodel.workloads.car_prices(40, seed=3, failure_rate=0.2)
    first = run_job(job.function, job.params, workers=7, queue_size=3, clock="virtual")
    second = run_job(job.function, job.params, workers=7, queue_size=3, clock="virtual")
    assert first.results is not None
    assert second.results is not None
    assert [r[:3] + r[4:] for r in first.results] == [r[:3] + r[4:] for r in second.results]
    assert first.scalars() == second.scalars()
    assert first.failed == sum(item["fails"] for item in job.params) > 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_keyboard_interrupt_cancels_a_job_run_from_inside_a_running_loop(no_leftover_threads: None) -> None:
    import signal
    import threading

    spy = ConcurrencySpy(seconds=60.0)
    cancelled: list[int] = []

    async def slow(n: int) -> int:
        try:
            value: int = await spy(n)
            return value
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    def interrupt_when_busy() -> None:
        while spy.running < 5:
            threading.Event().wait(0.005)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    async def notebook_cell() -> None:
        # What a Jupyter cell does: a sync run_job call while the kernel's loop runs.
        threading.Thread(target=interrupt_when_busy, daemon=True).start()
        run_job(slow, range(100), workers=5)

    # Like a kernel's loop, and unlike asyncio.run(), this loop leaves SIGINT to Python's
    # default handler, which raises KeyboardInterrupt in the main thread.
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(notebook_cell())
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert sorted(cancelled) == [0, 1, 2, 3, 4]
    assert spy.running == 0
