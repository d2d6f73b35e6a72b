from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import pytest

from pcmodel import run_job, run_job_async
from pcmodel.workloads import seed_job

from .conftest import ConcurrencySpy


@pytest.mark.parametrize(("workers", "tasks"), [(1, 5), (3, 10), (5, 5), (50, 200), (8, 3)])
def test_concurrency_never_exceeds_workers(workers: int, tasks: int) -> None:
    spy = ConcurrencySpy(seconds=1.0)
    summary = run_job(spy, range(tasks), workers=workers, clock="virtual")
    assert spy.max_running == min(workers, tasks)
    assert sorted(spy.calls) == list(range(tasks))
    assert summary.elapsed == -(-tasks // workers) * 1.0  # ceil(tasks / workers) rounds of 1 s


def test_the_seed_job_takes_the_ideal_greedy_time_in_virtual_time() -> None:
    job = seed_job()
    summary = run_job(job.function, job.params, workers=5, clock="virtual")
    assert summary.elapsed == 2.6826728847906676
    assert summary.elapsed == summary.ideal_makespan
    assert summary.busy_time == pytest.approx(job.sequential_time, abs=1e-12)
    assert summary.results is not None
    assert [r.value for r in summary.results] == [n * n for n in range(10)]
    assert [round(r.duration, 12) for r in summary.results] == [round(d, 12) for d in job.durations]


def test_a_failed_task_does_not_stop_the_job() -> None:
    async def flaky(n: int) -> int:
        await asyncio.sleep(1)
        if n % 3 == 0:
            raise ValueError(f"bad item {n}")
        return n

    summary = run_job(flaky, range(10), workers=2, queue_size=1, clock="virtual")
    assert (summary.tasks, summary.succeeded, summary.failed) == (10, 6, 4)
    assert summary.results is not None
    failed = [r for r in summary.results if not r.ok]
    assert [r.task_id for r in failed] == [0, 3, 6, 9]
    assert all(isinstance(r.error, ValueError) and r.value is None for r in failed)
    assert str(failed[1].error) == "bad item 3"
    # Failures cost no extra time: 10 one-second tasks on 2 workers.
    assert summary.elapsed == 5.0


def test_every_item_gets_exactly_one_result_with_its_worker_and_times() -> None:
    spy = ConcurrencySpy(seconds=2.0)
    summary = run_job(spy, [f"item-{n}" for n in range(7)], workers=3, clock="virtual")
    assert summary.results is not None
    assert [r.task_id for r in summary.results] == list(range(7))
    assert [r.params for r in summary.results] == [f"item-{n}" for n in range(7)]
    assert {r.worker for r in summary.results} == {0, 1, 2}
    for result in summary.results:
        assert result.enqueued_at <= result.started_at < result.finished_at
        assert result.duration == 2.0


def test_a_plain_function_runs_in_threads_up_to_workers_at_once() -> None:
    # A barrier of `workers` parties only opens if that many calls run at the same time:
    # asyncio's default executor (6 threads here) would make it time out.
    workers = 12
    barrier = threading.Barrier(workers, timeout=30)
    loop_threads: set[int] = set()

    def blocking(n: int) -> int:
        barrier.wait()
        return n * 2

    def on_task_complete(result: Any) -> None:
        loop_threads.add(threading.get_ident())

    summary = run_job(blocking, range(workers * 3), workers=workers, on_task_complete=on_task_complete)
    assert summary.failed == 0
    assert summary.results is not None
    assert [r.value for r in summary.results] == [n * 2 for n in range(workers * 3)]
    assert loop_threads == {threading.get_ident()}


def test_a_sync_callable_returning_a_coroutine_is_awaited() -> None:
    async def fetch(n: int, scale: int) -> int:
        await asyncio.sleep(1)
        return n * scale

    summary = run_job(lambda n: fetch(n, 10), range(4), workers=4, clock="virtual")
    assert summary.results is not None
    assert [r.value for r in summary.results] == [0, 10, 20, 30]
    assert summary.elapsed == 1.0


def test_partials_and_async_callable_objects_are_awaited_on_the_loop() -> None:
    async def scaled(scale: int, n: int) -> int:
        await asyncio.sleep(1)
        return n * scale

    class Caller:
        async def __call__(self, n: int) -> int:
            await asyncio.sleep(1)
            return -n

    assert run_job(functools.partial(scaled, 3), [1, 2], clock="virtual").elapsed == 1.0
    summary = run_job(Caller(), [1, 2], clock="virtual")
    assert summary.results is not None
    assert [r.value for r in summary.results] == [-1, -2]


async def test_a_slow_result_queue_pushes_back_on_workers() -> None:
    handled: list[float] = []

    async def slow_callback(result: Any) -> None:
        await asyncio.sleep(10)
        handled.append(result.task_id)

    spy = ConcurrencySpy(seconds=1.0)
    summary = await run_job_async(
        spy, range(6), workers=3, result_queue_size=1, on_task_complete=slow_callback, clock="virtual"
    )
    assert summary.results is not None
    assert handled == list(range(6))
    # At t=1 three results are ready: the handler takes one (busy until t=11), one waits in
    # the result queue, the third worker blocks on the full queue until t=11. The other two
    # run one more task each and block too. Without room, workers wait for the callback.
    assert sorted(r.finished_at for r in summary.results) == [1.0, 1.0, 1.0, 2.0, 2.0, 12.0]
