"""The pieces driven by hand, with their queues, the way the notebooks build the pipeline.

`run_job` wires the producer, the workers and the result handler for you; these tests wire
them directly, so each piece is checked on its own contract: what it takes from its queue,
what it puts on the next one, and what it reports.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from pcmodel import VirtualTimeLoop
from pcmodel._queues import STOP, JobQueue
from pcmodel.producer import ProducerReport, produce
from pcmodel.records import TaskResult
from pcmodel.result_handler import handle_results
from pcmodel.stopping import JobControl
from pcmodel.worker import Policies, WorkerReport, work


def _run(coroutine: Any) -> Any:
    """Run on a virtual clock: exact times."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coroutine)


def _control(queue: JobQueue[Any], loop: asyncio.AbstractEventLoop) -> JobControl:
    return JobControl(queue, fail_fast=False, trace=True, since_start=loop.time)


async def _square_after(n: int) -> int:
    await asyncio.sleep(n)
    return n * n


def test_the_producer_numbers_items_stamps_them_and_waits_on_a_full_queue() -> None:
    async def main() -> tuple[list[Any], ProducerReport]:
        loop = asyncio.get_running_loop()
        queue: JobQueue[Any] = JobQueue(2)
        report = ProducerReport(blocked=[])
        producer = asyncio.create_task(
            produce(
                ["a", "b", "c", "d"], queue, itertools.count(), loop.time, 0.0, report, _control(queue, loop)
            )
        )
        taken = []
        for _ in range(4):
            await asyncio.sleep(1)  # a slow consumer: the producer waits for room
            item = await queue.get()
            taken.append((item[0], item[1], item[2]))
        await producer
        return taken, report

    taken, report = _run(main())
    # Items 0 and 1 went in at once; 2 waited for the first take (t=1), 3 for the second.
    assert taken == [(0, "a", 0.0), (1, "b", 0.0), (2, "c", 1.0), (3, "d", 2.0)]
    assert report.max_depth == 2
    assert report.wait == 2.0
    assert report.blocked == [(0.0, 1.0), (1.0, 2.0)]


@pytest.mark.parametrize("arrive", ["all at once", "one by one"])
def test_the_worker_turns_each_item_into_one_row_and_stops_at_its_marker(arrive: str) -> None:
    """The same rows whether the items wait for the worker or the worker waits for them.

    The worker takes an item at once when one is waiting and awaits one otherwise (a speed
    path, see its comment): both paths must give the same outcome.
    """

    async def main() -> tuple[list[Any], WorkerReport]:
        loop = asyncio.get_running_loop()
        work_queue: JobQueue[Any] = JobQueue(0)
        result_queue: JobQueue[Any] = JobQueue(0)
        items = [(n, n, 0.0) for n in range(4)]
        if arrive == "all at once":
            for item in items:
                work_queue.put_nowait(item)
            work_queue.put_nowait(STOP)
        worker = asyncio.create_task(
            work(7, _square_after, work_queue, result_queue, loop.time, 0.0, _control(work_queue, loop))
        )
        if arrive == "one by one":
            for item in items:
                await asyncio.sleep(0)
                work_queue.put_nowait(item)
            work_queue.put_nowait(STOP)
        report = await worker
        rows = []
        while not result_queue.empty():
            rows.append(result_queue.get_nowait())
        return rows, report

    rows, report = _run(main())
    results = [TaskResult(*row) for row in rows]
    assert [(r.task_id, r.value, r.error, r.worker, r.attempts) for r in results] == [
        (0, 0, None, 7, 1),
        (1, 1, None, 7, 1),
        (2, 4, None, 7, 1),
        (3, 9, None, 7, 1),
    ]
    assert [(r.started_at, r.finished_at) for r in results] == [
        (0.0, 0.0),
        (0.0, 1.0),
        (1.0, 3.0),
        (3.0, 6.0),
    ]
    assert (report.tasks, report.failed, report.busy_time, report.running) == (4, 0, 6.0, None)


def test_the_worker_counts_attempts_and_retries_under_a_policy() -> None:
    from pcmodel import Retry

    calls = itertools.count()

    async def fails_twice_then_works(n: int) -> int:
        if next(calls) < 2:
            raise ConnectionError("flaky")
        return n

    async def main() -> tuple[list[Any], WorkerReport]:
        loop = asyncio.get_running_loop()
        work_queue: JobQueue[Any] = JobQueue(0)
        result_queue: JobQueue[Any] = JobQueue(0)
        for item in [(0, "x", 0.0), (1, "y", 0.0), STOP]:
            work_queue.put_nowait(item)
        policies = Policies(None, Retry(3, backoff=1, jitter=0), None)
        report = await work(
            0,
            fails_twice_then_works,
            work_queue,
            result_queue,
            loop.time,
            0.0,
            _control(work_queue, loop),
            policies,
        )
        return [result_queue.get_nowait() for _ in range(2)], report

    rows, report = _run(main())
    results = [TaskResult(*row) for row in rows]
    assert [(r.value, r.attempts, r.started_at, r.finished_at) for r in results] == [
        ("x", 3, 0.0, 3.0),  # waits of 1 s and 2 s before the third attempt
        ("y", 1, 3.0, 3.0),
    ]
    assert report.retries == 2


def test_the_result_handler_makes_each_record_calls_back_and_keeps_the_trace() -> None:
    async def main() -> tuple[list[TaskResult], list[TaskResult], int]:
        queue: JobQueue[Any] = JobQueue(0)
        for n in range(3):
            queue.put_nowait((n, n, n * 10, None if n != 1 else ValueError("bad"), 0, 0.0, 0.0, 1.0, 1))
        queue.put_nowait(STOP)
        seen: list[TaskResult] = []

        def callback(result: TaskResult) -> None:
            seen.append(result)
            if result.task_id == 2:
                raise RuntimeError("callback broke")

        trace: list[TaskResult] = []
        report = await handle_results(queue, callback, trace)
        return seen, trace, report.callback_errors

    seen, trace, callback_errors = _run(main())
    assert seen == trace
    assert [type(r) for r in seen] == [TaskResult] * 3
    assert [(r.task_id, r.value, r.ok) for r in seen] == [(0, 0, True), (1, 10, False), (2, 20, True)]
    assert callback_errors == 1


def test_the_pieces_wired_by_hand_run_a_whole_job() -> None:
    async def main() -> list[TaskResult]:
        loop = asyncio.get_running_loop()
        work_queue: JobQueue[Any] = JobQueue(2)
        result_queue: JobQueue[Any] = JobQueue(2)
        control = _control(work_queue, loop)
        trace: list[TaskResult] = []
        async with asyncio.TaskGroup() as group:
            handler = group.create_task(handle_results(result_queue, None, trace))
            workers = [
                group.create_task(work(i, _square_after, work_queue, result_queue, loop.time, 0.0, control))
                for i in range(2)
            ]
            await produce(
                [3, 1, 2, 1], work_queue, itertools.count(), loop.time, 0.0, ProducerReport(), control
            )
            for _ in workers:
                await work_queue.put(STOP)
            await asyncio.wait(workers)
            await result_queue.put(STOP)
            await handler
        return sorted(trace)

    trace = _run(main())
    assert [(r.task_id, r.value, r.worker, r.started_at, r.finished_at) for r in trace] == [
        (0, 9, 0, 0.0, 3.0),
        (1, 1, 1, 0.0, 1.0),
        (2, 4, 1, 1.0, 3.0),
        (3, 1, 0, 3.0, 4.0),
    ]


def test_an_item_taken_after_a_wait_for_room_on_the_result_queue_starts_when_it_is_taken() -> None:
    """The worker reuses its last clock reading only when nothing was awaited since."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        work_queue: JobQueue[Any] = JobQueue(0)
        result_queue: JobQueue[Any] = JobQueue(1)  # room for one row: the second waits
        for item in [(0, 0, 0.0), (1, 0, 0.0), (2, 0, 0.0), STOP]:
            work_queue.put_nowait(item)
        worker = asyncio.create_task(
            work(0, _square_after, work_queue, result_queue, loop.time, 0.0, _control(work_queue, loop))
        )
        rows = []
        for _ in range(3):
            await asyncio.sleep(5)  # a slow result handler
            rows.append(await result_queue.get())
        await worker
        return rows

    results = [TaskResult(*row) for row in _run(main())]
    # Task 1 finished at 0 but waited for room until 5; task 2 was taken then, so starts at 5.
    assert [(r.task_id, r.started_at, r.finished_at) for r in results] == [
        (0, 0.0, 0.0),
        (1, 0.0, 0.0),
        (2, 5.0, 5.0),
    ]
