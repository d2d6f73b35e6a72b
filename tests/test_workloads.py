"""Seeded workloads: same seed, same job; traffic streams arrive on time; slow callbacks."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

import pcmodel
from pcmodel import workloads
from pcmodel.records import TaskResult


def test_seed_job_reproduces_the_write_up() -> None:
    job = workloads.seed_job()
    assert len(job) == 10
    assert job.sequential_time == pytest.approx(10.690327506258539)
    summary = pcmodel.run_job(job.function, job.params, workers=5, clock="virtual")
    assert summary.elapsed == pytest.approx(2.6826728847906676)
    assert [r.value for r in summary.results or ()] == [n * n for n in range(10)]


@pytest.mark.parametrize("make", [workloads.seed_job, workloads.uniform, workloads.car_prices])
def test_same_seed_gives_the_same_job(make: object) -> None:
    assert callable(make)
    assert make(12, seed=3) == make(12, seed=3)
    assert make(12, seed=3).durations != make(12, seed=4).durations


def test_car_prices_fail_at_the_requested_rate() -> None:
    job = workloads.car_prices(400, seed=1, failure_rate=0.25)
    failing = sum(1 for car in job.params if car["fails"])
    assert 70 <= failing <= 130
    summary = pcmodel.run_job(job.function, job.params, workers=50, clock="virtual")
    assert summary.failed == failing
    errors = {type(r.error) for r in summary.results or () if not r.ok}
    assert errors == {workloads.PriceAPIError}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_rate": 1.5}, "failure_rate must be between 0 and 1"),
        ({"latency": (2.0, 1.0)}, "latency must be"),
    ],
)
def test_car_prices_rejects_bad_knobs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        workloads.car_prices(5, **kwargs)  # type: ignore[arg-type]


def test_steady_traffic_arrives_evenly() -> None:
    traffic = workloads.steady(5, interval=0.5, seconds=(0.1, 0.1), payload_bytes=10)
    assert traffic.arrivals == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert traffic.durations == pytest.approx((0.1,) * 5)
    assert traffic.span == 2.0
    assert len(traffic) == 5


def test_bursty_traffic_arrives_in_bursts_at_the_same_average_rate() -> None:
    traffic = workloads.bursty(7, size=3, pause=2.0)
    assert traffic.arrivals == (0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 4.0)
    steady, bursty = workloads.steady(200), workloads.bursty(200)
    assert len(steady) / (steady.span + 0.1) == pytest.approx(len(bursty) / (bursty.span + 2.0))


def test_traffic_source_yields_each_request_at_its_arrival_time() -> None:
    traffic = workloads.bursty(5, size=2, pause=1.5, payload_bytes=3)
    seen: list[tuple[float, int, int]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async for request in traffic.source():
            seen.append((loop.time(), request.number, len(request.payload)))

    with asyncio.Runner(loop_factory=pcmodel.VirtualTimeLoop) as runner:
        runner.run(main())
    assert seen == [(0.0, 0, 3), (0.0, 1, 3), (1.5, 2, 3), (1.5, 3, 3), (3.0, 4, 3)]


def test_a_late_consumer_gets_the_backlog_at_once() -> None:
    traffic = workloads.steady(4, interval=1.0)
    seen: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async for request in traffic.source():
            seen.append(loop.time())
            if request.number == 0:
                await asyncio.sleep(2.5)  # a producer blocked on a full queue

    with asyncio.Runner(loop_factory=pcmodel.VirtualTimeLoop) as runner:
        runner.run(main())
    assert seen == [0.0, 2.5, 2.5, 3.0]


def test_traffic_latency_counts_from_arrival() -> None:
    traffic = workloads.steady(3, interval=1.0, seconds=(2.0, 2.0))
    summary = pcmodel.run_job(traffic.function, traffic.source(), workers=1, clock="virtual")
    results = summary.results or ()
    assert [r.finished_at - r.params.arrives_at for r in results] == pytest.approx([2.0, 3.0, 4.0])
    assert [r.value for r in results] == [traffic.payload_bytes] * 3


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (workloads.steady, {"interval": 0}, "interval must be > 0"),
        (workloads.bursty, {"pause": -1.0}, "pause must be > 0"),
        (workloads.bursty, {"size": 0}, "size must be >= 1"),
        (workloads.steady, {"seconds": (1.0, 0.5)}, "seconds must be"),
    ],
)
def test_traffic_rejects_bad_knobs(make: object, kwargs: dict[str, object], message: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=message):
        make(10, **kwargs)


def test_traffic_rejects_a_bool_seed() -> None:
    with pytest.raises(TypeError, match="seed must be an int"):
        workloads.steady(3, seed=True)


def _result(task_id: int, finished_at: float) -> TaskResult:
    return TaskResult(task_id, None, None, None, 0, 0.0, 0.0, finished_at)


def test_async_slow_callback_takes_virtual_time_in_the_handler() -> None:
    callback = workloads.slow_callback(0.5)
    job = workloads.seed_job(4)
    summary = pcmodel.run_job(job.function, job.params, workers=4, clock="virtual", on_task_complete=callback)
    windows = callback.windows()
    assert len(windows) == 4
    assert all(end - start == pytest.approx(0.5) for start, end in windows)
    # One handler: the calls never overlap, and the first starts when the first task ends.
    assert all(a[1] <= b[0] + 1e-12 for a, b in itertools.pairwise(windows))
    first_finish = min(r.finished_at for r in summary.results or ())
    assert windows[0][0] == pytest.approx(first_finish)
    # On the virtual clock the loop's time is the job's time: the raw call times agree.
    raw = [time for call in callback.calls for time in call[2:]]
    assert raw == pytest.approx([time for window in windows for time in window])
    assert summary.elapsed == pytest.approx(windows[-1][1])


def test_blocking_slow_callback_blocks_the_loop() -> None:
    callback = workloads.slow_callback(0.02, "blocking")

    async def main() -> float:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        assert callback(_result(0, 0.0)) is None  # ran to the end, synchronously
        after = ticks
        task.cancel()
        return after - before

    assert asyncio.run(main()) == 0
    assert len(callback.calls) == 1


def test_thread_slow_callback_leaves_the_loop_free() -> None:
    callback = workloads.slow_callback(0.05, "thread")

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        awaitable = callback(_result(0, 0.0))
        assert awaitable is not None
        await awaitable
        assert time.monotonic() - started >= 0.05
        task.cancel()
        return ticks

    assert asyncio.run(main()) > 0


def test_slow_callback_windows_are_empty_before_any_call() -> None:
    assert workloads.slow_callback(1.0).windows() == []


@pytest.mark.parametrize(
    ("seconds", "kind", "message"),
    [(-1.0, "async", "seconds must be >= 0"), (1.0, "sync", "kind must be")],
)
def test_slow_callback_rejects_bad_arguments(seconds: float, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        workloads.slow_callback(seconds, kind)  # type: ignore[arg-type]
