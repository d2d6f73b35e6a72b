"""Slow callbacks: the async kind takes virtual time, the blocking kind blocks the loop, a thread leaves it free."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

import pcmodel
from pcmodel import workloads
from pcmodel.records import TaskResult


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
