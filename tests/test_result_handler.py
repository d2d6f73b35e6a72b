from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pcmodel import TaskResult, result_handler, run_job, run_job_async
from pcmodel.workloads import seed_job

from .conftest import ConcurrencySpy


def test_on_task_complete_is_called_once_per_item_by_the_result_handler() -> None:
    calls: list[tuple[int, str]] = []

    def on_task_complete(result: TaskResult) -> None:
        task = asyncio.current_task()
        assert task is not None
        calls.append((result.task_id, task.get_name()))

    run_job(
        ConcurrencySpy(seconds=1.0), range(20), workers=4, on_task_complete=on_task_complete, clock="virtual"
    )
    assert sorted(task_id for task_id, _ in calls) == list(range(20))
    assert {name for _, name in calls} == {"pcmodel-result-handler-0"}


def test_a_slow_callback_never_slows_the_workers() -> None:
    # 10 s per callback, but with room in the result queue the workers finish on their own
    # schedule: the last task ends at the ideal makespan, the job when the handler catches up.
    async def slow(result: TaskResult) -> None:
        await asyncio.sleep(10)

    job = seed_job()
    summary = run_job(
        job.function, job.params, workers=5, on_task_complete=slow, result_queue_size=0, clock="virtual"
    )
    assert summary.results is not None
    assert max(r.finished_at for r in summary.results) == summary.ideal_makespan
    assert summary.elapsed == pytest.approx(min(r.finished_at for r in summary.results) + 100.0)


def test_callback_errors_are_counted_logged_once_and_never_fatal(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    def picky(result: TaskResult) -> None:
        seen.append(result.task_id)
        if result.task_id % 2:
            raise RuntimeError(f"cannot show task {result.task_id}")

    with caplog.at_level(logging.ERROR, logger="pcmodel"):
        summary = run_job(
            ConcurrencySpy(seconds=1.0), range(10), workers=1, on_task_complete=picky, clock="virtual"
        )
    assert summary.callback_errors == 5
    assert summary.tasks == summary.succeeded == 10
    assert sorted(seen) == list(range(10))
    assert len(caplog.records) == 1
    assert "on_task_complete raised on task 1" in caplog.records[0].getMessage()


def test_async_callbacks_are_awaited_and_their_errors_counted() -> None:
    seen: list[int] = []

    async def on_task_complete(result: TaskResult) -> None:
        await asyncio.sleep(0.5)
        seen.append(result.task_id)
        if result.task_id == 3:
            raise ValueError("nope")

    logging.getLogger("pcmodel").disabled = True
    try:
        summary = run_job(
            ConcurrencySpy(seconds=1.0), range(5), on_task_complete=on_task_complete, clock="virtual"
        )
    finally:
        logging.getLogger("pcmodel").disabled = False
    assert sorted(seen) == list(range(5))
    assert summary.callback_errors == 1


@pytest.mark.parametrize("handlers", [1, 3])
def test_on_job_complete_runs_once_after_every_task_callback(handlers: int) -> None:
    events: list[Any] = []

    async def on_task_complete(result: TaskResult) -> None:
        await asyncio.sleep(2)
        events.append(result.task_id)

    def on_job_complete(summary: Any) -> None:
        events.append(summary)

    summary = run_job(
        ConcurrencySpy(seconds=1.0), range(9), workers=3, result_handlers=handlers,
        on_task_complete=on_task_complete, on_job_complete=on_job_complete, clock="virtual",
    )  # fmt: skip
    assert events[-1] is summary
    assert sorted(events[:-1]) == list(range(9))
    # One handler: 9 callbacks of 2 s one after another from t=1. Three: a round of
    # three callbacks per 2 s, each round starting when its results are ready.
    assert summary.elapsed == (19.0 if handlers == 1 else 7.0)


async def test_an_async_on_job_complete_is_awaited() -> None:
    got: list[int] = []

    async def on_job_complete(summary: Any) -> None:
        await asyncio.sleep(0)
        got.append(summary.tasks)

    await run_job_async(ConcurrencySpy(seconds=0.0), range(3), on_job_complete=on_job_complete)
    assert got == [3]


@pytest.mark.parametrize(
    ("with_callback", "trace", "records"),
    [(False, False, 0), (False, True, 12), (True, False, 12), (True, True, 12)],
)
def test_a_task_result_is_built_once_per_task_and_only_if_needed(
    with_callback: bool, trace: bool, records: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[TaskResult] = []
    make = result_handler._new_tuple

    def counting(cls: type[TaskResult], row: tuple[Any, ...]) -> TaskResult:
        record: TaskResult = make(cls, row)
        built.append(record)
        return record

    monkeypatch.setattr(result_handler, "_new_tuple", counting)
    received: list[TaskResult] = []
    summary = run_job(
        ConcurrencySpy(seconds=1.0),
        range(12),
        workers=3,
        on_task_complete=received.append if with_callback else None,
        trace=trace,
        clock="virtual",
    )
    assert summary.tasks == 12
    assert len(built) == records
    if with_callback:
        # The callback gets the very records that were built, and the trace keeps the same ones.
        assert [id(r) for r in received] == [id(r) for r in built]
    if trace:
        assert summary.results is not None
        assert {id(r) for r in summary.results} == {id(r) for r in built}
        assert [r.task_id for r in summary.results] == list(range(12))
