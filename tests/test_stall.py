"""The stall warning: a real-time job that makes no progress says what it waits for, once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pcmodel import DeadlockError, run_job_async, start_job
from pcmodel._queues import JobQueue
from pcmodel._stall import describe_stall
from pcmodel.sweeps import run_virtual
from pcmodel.worker import WorkerReport


class _Signal(logging.Handler):
    """Sets an asyncio.Event (from the loop's thread) when pcmodel logs a stall."""

    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        super().__init__(logging.WARNING)
        self.loop, self.event = loop, event
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "no task has finished" in record.getMessage():
            self.messages.append(record.getMessage())
            self.loop.call_soon_threadsafe(self.event.set)


async def test_a_stalled_job_warns_once_naming_the_calls_in_flight() -> None:
    stalled = asyncio.Event()
    signal = _Signal(asyncio.get_running_loop(), stalled)
    logger = logging.getLogger("pcmodel")
    logger.addHandler(signal)

    async def call(n: int) -> int:
        if n in (1, 2):
            await stalled.wait()  # stuck until the warning is out
        return n

    try:
        async with asyncio.timeout(30):
            summary = await run_job_async(call, range(4), workers=2, stall_after=0.2)
    finally:
        logger.removeHandler(signal)
    assert summary.succeeded == 4
    assert len(signal.messages) == 1
    message = signal.messages[0]
    assert "task 1 on worker" in message
    assert "task 2 on worker" in message
    assert "The work queue holds 1 items" in message
    assert "producer(s) wait for room in the full work queue" not in message
    assert "The result handlers wait for results." in message


async def test_a_virtual_time_job_never_warns_of_a_stall(caplog: pytest.LogCaptureFixture) -> None:
    async def call(n: int) -> int:
        await asyncio.sleep(1000)
        return n

    with caplog.at_level(logging.WARNING, logger="pcmodel"):
        summary = await run_job_async(call, range(3), workers=1, stall_after=1, clock="virtual")
    assert summary.elapsed == 3000
    assert not [r for r in caplog.records if "no task has finished" in r.getMessage()]


def test_no_watchdog_runs_on_a_virtual_time_loop_whatever_the_clock_option() -> None:
    """A job started on the caller's virtual loop (`run_virtual`) without clock="virtual".

    The watchdog's timers would keep the virtual clock jumping: a stuck job would spin for
    ever instead of raising DeadlockError.
    """

    async def stuck(n: int) -> int:
        await asyncio.Event().wait()
        return n

    async def main() -> list[str]:
        handle = start_job(stuck, [1], workers=1)
        await asyncio.sleep(0)  # the job's first step starts its pieces
        names = [task.get_name() for task in asyncio.all_tasks()]
        handle.cancel()
        await asyncio.gather(handle, return_exceptions=True)
        return names

    names = run_virtual(main())
    assert "pcmodel-worker-0" in names
    assert "pcmodel-stall-watch" not in names
    with pytest.raises(DeadlockError, match=r"stuck at virtual time 0\.000 s"):
        run_virtual(run_job_async(stuck, [1], workers=1))


async def test_the_description_names_the_longest_calls_first_and_counts_the_rest() -> None:
    reports = [WorkerReport(index) for index in range(8)]
    for index, report in enumerate(reports[:7]):
        report.running = (100 + index, float(index))  # worker 0 has run longest
    work_queue: JobQueue[Any] = JobQueue(2)
    work_queue.put_nowait(1)
    work_queue.put_nowait(2)
    result_queue: JobQueue[Any] = JobQueue(2)
    result_queue.put_nowait(3)

    async def forever() -> None:
        await asyncio.Event().wait()

    producer = asyncio.create_task(forever())
    handler = asyncio.create_task(forever())
    await asyncio.sleep(0)
    try:
        text = describe_stall(61.0, 70.0, reports, [producer], [handler], work_queue, result_queue)
    finally:
        producer.cancel()
        handler.cancel()
        await asyncio.gather(producer, handler, return_exceptions=True)
    assert text.startswith("no task has finished for 61.0 s.")
    assert "task 100 on worker 0 for 70.0 s, task 101 on worker 1 for 69.0 s" in text
    assert "and 2 more." in text
    assert "1 of 8 workers are between calls." in text
    assert "The work queue holds 2 items, the result queue 1." in text
    assert "1 producer(s) wait for room in the full work queue." in text
    assert "The result handlers are in on_task_complete" in text


def test_stall_after_is_checked() -> None:
    from pcmodel import run_job

    with pytest.raises(ValueError, match=r"stall_after must be a finite number > 0 or None, got 0"):
        run_job(lambda n: n, [1], stall_after=0)
    with pytest.raises(TypeError, match=r"stall_after must be a number or None, got '60'"):
        run_job(lambda n: n, [1], stall_after="60")  # type: ignore[arg-type]
