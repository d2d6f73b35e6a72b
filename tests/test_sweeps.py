"""Virtual-time sweeps and `run_virtual`: exact, repeatable numbers for the lessons."""

from __future__ import annotations

import asyncio

import pytest

import pcmodel
from pcmodel import sweeps, workloads


def test_run_virtual_returns_the_result_with_exact_times() -> None:
    async def main() -> tuple[str, float]:
        await asyncio.sleep(2.5)
        await asyncio.gather(asyncio.sleep(1.0), asyncio.sleep(3.0))
        return "done", asyncio.get_running_loop().time()

    assert sweeps.run_virtual(main) == ("done", 5.5)


async def test_run_virtual_works_inside_a_running_loop() -> None:
    async def main() -> float:
        await asyncio.sleep(100.0)
        return asyncio.get_running_loop().time()

    # As in a notebook cell: a loop already runs in this thread.
    assert sweeps.run_virtual(main) == 100.0


@pytest.mark.usefixtures("no_leftover_threads")
async def test_run_virtual_turns_a_hang_into_a_deadlock_error() -> None:
    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        await queue.get()  # nobody ever puts

    with pytest.raises(pcmodel.DeadlockError, match=r"stuck at virtual time 0\.000 s"):
        sweeps.run_virtual(main)


def test_run_virtual_passes_exceptions_through() -> None:
    async def main() -> None:
        await asyncio.sleep(1)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        sweeps.run_virtual(main)


def test_run_virtual_shows_the_task_done_hang_under_a_timeout() -> None:
    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        queue.put_nowait(1)

        async def careless_worker() -> None:
            await queue.get()
            raise ValueError("before task_done")

        worker = asyncio.create_task(careless_worker())
        try:
            async with asyncio.timeout(10):
                await queue.join()
        finally:
            await asyncio.gather(worker, return_exceptions=True)

    with pytest.raises(TimeoutError):
        sweeps.run_virtual(main)


def test_run_virtual_takes_a_coroutine_or_a_function() -> None:
    async def main(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return asyncio.get_running_loop().time()

    assert sweeps.run_virtual(main(3.0)) == 3.0
    assert sweeps.run_virtual(lambda: main(4.0)) == 4.0
    with pytest.raises(TypeError, match="main must be a coroutine or a function"):
        sweeps.run_virtual(42)  # type: ignore[arg-type]


def test_time_virtual_gives_the_result_and_the_virtual_seconds() -> None:
    async def main() -> str:
        await asyncio.gather(asyncio.sleep(1.5), asyncio.sleep(0.5))
        return "ok"

    assert sweeps.time_virtual(main()) == ("ok", 1.5)
    assert sweeps.time_virtual(main) == ("ok", 1.5)


def test_sweep_workers_matches_the_ideal_schedule_on_the_virtual_clock() -> None:
    job = workloads.seed_job()
    points = sweeps.sweep_workers(job, [1, 5, 10, 20])
    assert [p.workers for p in points] == [1, 5, 10, 20]
    assert points[0].elapsed == pytest.approx(job.sequential_time)
    assert points[1].elapsed == pytest.approx(2.6826728847906676)
    for point in points:
        assert point.elapsed == pytest.approx(point.ideal_makespan)
        assert point.speedup == pytest.approx(point.ideal_speedup)
    # Past one worker per task, more workers change nothing: the longest task is the floor.
    assert points[2].elapsed == points[3].elapsed == pytest.approx(max(job.durations))


def test_sweep_workers_is_repeatable() -> None:
    job = workloads.car_prices(30, seed=2)
    assert sweeps.sweep_workers(job, range(1, 8)) == sweeps.sweep_workers(job, range(1, 8))


def test_queue_size_trades_memory_for_producer_wait_under_bursts() -> None:
    traffic = workloads.bursty(60, size=12, pause=2.0, payload_bytes=50_000)
    small, medium, unbounded = sweeps.sweep_queue_size(traffic, [1, 4, 0], workers=4)
    assert [p.queue_size for p in (small, medium, unbounded)] == [1, 4, 0]
    # The queue never holds more than its capacity; unbounded, it takes a whole burst at once.
    assert small.max_queue_depth == 1
    assert medium.max_queue_depth == 4
    assert unbounded.max_queue_depth == 12
    assert small.peak_held < medium.peak_held < unbounded.peak_held
    assert small.peak_memory < medium.peak_memory < unbounded.peak_memory
    assert small.producer_wait > medium.producer_wait > unbounded.producer_wait == 0.0
    assert small.mean_queue_wait < medium.mean_queue_wait < unbounded.mean_queue_wait
    # Requests wait upstream instead of in the queue: arrival-to-done latency is the same.
    assert small.mean_latency == pytest.approx(unbounded.mean_latency)
    assert small.elapsed == pytest.approx(unbounded.elapsed)


def test_peak_memory_follows_the_requests_held() -> None:
    payload = 200_000
    traffic = workloads.bursty(40, size=20, pause=3.0, payload_bytes=payload)
    points = sweeps.sweep_queue_size(traffic, [2, 16], workers=2)
    grew = points[1].peak_memory - points[0].peak_memory
    held = points[1].peak_held - points[0].peak_held
    assert held == 14
    assert grew == pytest.approx(held * payload, rel=0.1)


def test_a_steady_stream_below_capacity_needs_only_a_tiny_queue() -> None:
    traffic = workloads.steady(100)
    points = sweeps.sweep_queue_size(traffic, [2, 64], workers=4)
    assert points[0].producer_wait == points[1].producer_wait == 0.0
    assert points[0].max_queue_depth == points[1].max_queue_depth <= 2
