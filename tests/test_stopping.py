"""Stopping a job early: on request, at the first failure; and the hard cancel."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pcmodel import StopSignal, TaskResult, run_job, run_job_async, start_job

from .conftest import ConcurrencySpy


def test_a_stop_requested_by_a_callback_finishes_the_calls_in_flight() -> None:
    stop = StopSignal()
    spy = ConcurrencySpy(seconds=1.0)
    seen: list[int] = []
    finished: list[Any] = []

    def on_task_complete(result: TaskResult) -> None:
        seen.append(result.task_id)
        if result.task_id == 4:
            stop.set()

    summary = run_job(
        spy, range(100), workers=3, queue_size=5, stop=stop,
        on_task_complete=on_task_complete, on_job_complete=finished.append, clock="virtual",
    )  # fmt: skip
    assert summary.stop_reason == "stop"
    assert summary.error is None
    # Rounds of three 1 s calls. At t=2 the workers finish tasks 3-5 and take 6-8 before the
    # handler sees task 4 and stops the job: 6-8 are in flight and finish at t=3. Items 9 and
    # 10 were queued and 11 was waiting to enter the queue: those three are unprocessed.
    assert sorted(seen) == list(range(9))
    assert (summary.tasks, summary.failed, summary.cancelled) == (9, 0, 0)
    assert summary.unprocessed == 3
    assert summary.unprocessed_params == (9, 10, 11)
    assert summary.elapsed == 3.0
    assert finished == [summary]
    assert "stopped early (stop), 3 items unprocessed" in str(summary)
    # The two items taken back out of the queue leave it at the stop, at t=2.
    assert summary.drained == ((1.0, 2.0), (1.0, 2.0))
    assert summary.queue_depth is not None
    assert summary.queue_depth[-1] == (2.0, 0)
    assert max(sample.depth for sample in summary.queue_depth) == summary.max_queue_depth == 5


def test_every_item_taken_from_the_source_has_exactly_one_outcome_after_a_stop() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for n in range(1_000):
            pulled.append(n)
            yield n

    stop = StopSignal()

    async def call(n: int) -> int:
        await asyncio.sleep(1 + n % 3)
        if n == 20:
            stop.set()
        return n

    summary = run_job(call, source(), workers=4, queue_size=6, stop=stop, clock="virtual")
    assert summary.results is not None
    assert summary.unprocessed_params is not None
    outcomes = [r.params for r in summary.results] + list(summary.unprocessed_params)
    assert sorted(outcomes) == pulled


def test_a_stop_set_before_the_job_starts_runs_nothing() -> None:
    stop = StopSignal()
    stop.set()
    spy = ConcurrencySpy()
    summary = run_job(spy, range(10), stop=stop, clock="virtual")
    assert spy.calls == []
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (0, 0, "stop")


def test_a_stop_set_from_another_thread_stops_a_real_time_job() -> None:
    stop = StopSignal()
    spy = ConcurrencySpy(seconds=0.01)
    started = threading.Event()

    def on_task_complete(result: TaskResult) -> None:
        started.set()

    def stopper() -> None:
        started.wait(30)
        stop.set()

    thread = threading.Thread(target=stopper)
    thread.start()
    summary = run_job(
        spy, range(100_000), workers=2, queue_size=4, stop=stop, on_task_complete=on_task_complete
    )
    thread.join()
    assert summary.stop_reason == "stop"
    assert 0 < summary.tasks < 100_000
    assert spy.running == 0


def test_fail_fast_cancels_the_calls_in_flight_and_reports_the_rest() -> None:
    async def call(n: int) -> int:
        await asyncio.sleep(1.0 if n != 2 else 0.5)
        if n == 2:
            raise ValueError("item 2 is bad")
        return n

    summary = run_job(call, range(20), workers=3, queue_size=4, fail_fast=True, clock="virtual")
    assert summary.stop_reason == "fail_fast"
    assert isinstance(summary.error, ValueError)
    assert summary.results is not None
    outcomes = {r.task_id: type(r.error).__name__ if r.error else "ok" for r in summary.results}
    assert outcomes == {0: "CancelledError", 1: "CancelledError", 2: "ValueError"}
    assert (summary.tasks, summary.failed, summary.cancelled) == (3, 3, 2)
    # Four were queued and the producer was waiting to queue a fifth.
    assert summary.unprocessed_params == (3, 4, 5, 6, 7)
    assert summary.elapsed == 0.5
    assert all(r.finished_at == 0.5 for r in summary.results)


def test_fail_fast_keeps_every_result_when_workers_wait_on_a_full_result_queue() -> None:
    handled: list[int] = []

    async def slow_callback(result: TaskResult) -> None:
        await asyncio.sleep(5)
        handled.append(result.task_id)

    async def call(n: int) -> int:
        await asyncio.sleep(1)
        if n == 7:
            raise RuntimeError("boom")
        return n

    summary = run_job(
        call, range(50), workers=4, result_queue_size=1, fail_fast=True,
        on_task_complete=slow_callback, clock="virtual",
    )  # fmt: skip
    assert summary.results is not None
    assert sorted(handled) == [r.task_id for r in summary.results]
    assert summary.stop_reason == "fail_fast"
    assert summary.tasks + summary.unprocessed <= 50


def test_fail_fast_without_a_failure_is_an_ordinary_job() -> None:
    summary = run_job(ConcurrencySpy(seconds=1.0), range(10), workers=5, fail_fast=True, clock="virtual")
    assert (summary.stop_reason, summary.tasks, summary.elapsed) == (None, 10, 2.0)


async def test_a_hard_cancel_with_policies_leaves_no_task() -> None:
    spy = ConcurrencySpy(seconds=50.0)
    before = asyncio.all_tasks()
    task = start_job(spy, range(100), workers=5, timeout=100, retries=2, max_per_second=1000)
    while spy.running < 5:  # noqa: ASYNC110 - polling the job until it is busy
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before
    assert spy.running == 0


async def test_a_stop_signal_stops_a_background_job_gracefully() -> None:
    stop = StopSignal()
    spy = ConcurrencySpy(seconds=0.001)
    task = start_job(spy, range(1_000_000), workers=10, stop=stop)
    while len(spy.calls) < 50:  # noqa: ASYNC110 - polling the job until it is busy
        await asyncio.sleep(0.001)
    stop.set()
    summary = await task
    assert summary.stop_reason == "stop"
    assert summary.tasks >= 50
    assert summary.unprocessed <= 100 + 1  # the queue, and the item the producer held
    assert repr(stop) == "StopSignal(set=True)"


async def test_a_stop_reaches_a_virtual_job_running_in_its_own_thread() -> None:
    stop = StopSignal()

    async def call(n: int) -> int:
        await asyncio.sleep(1)
        if n == 3:
            stop.set()
        return n

    summary = await run_job_async(call, range(100), workers=2, queue_size=2, stop=stop, clock="virtual")
    # At t=2 one worker finishes task 2 and takes task 4 while the other, in task 3, stops
    # the job: tasks 0-4 run, the two queued items do not.
    assert summary.stop_reason == "stop"
    assert summary.tasks == 5
    assert summary.unprocessed == 2
