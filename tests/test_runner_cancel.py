"""Cancelling a job started with `start_job` or `run_job_async`: nothing of it is left behind.

Threads cannot be killed: a plain function stuck in its thread is abandoned (and reported),
never waited for, so the cancel returns promptly however long the call takes.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pcmodel import run_job_async, start_job
from pcmodel.clock import Clock

WATCHDOG = 20.0
"""Seconds after which the stuck calls are let go anyway, so that a regression (a cancel that
waits for them) ends the test as a failure instead of hanging it."""


def pcmodel_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pcmodel") and t.is_alive()]


class Stuck:
    """A plain function whose calls block until released: like a call stuck in time.sleep."""

    def __init__(self, workers: int) -> None:
        self.release = threading.Event()
        self.all_started = threading.Event()
        self.started = 0
        self.workers = workers
        self.lock = threading.Lock()
        self.watchdog = threading.Timer(WATCHDOG, self.release.set)
        self.watchdog.daemon = True
        self.watchdog.start()

    def __call__(self, n: int) -> int:
        with self.lock:
            self.started += 1
            if self.started == self.workers:
                self.all_started.set()
        self.release.wait()
        return n

    @property
    def watchdog_fired(self) -> bool:
        return self.release.is_set()


@pytest.fixture
def stuck() -> Iterator[Stuck]:
    function = Stuck(workers=3)
    yield function
    function.watchdog.cancel()
    function.release.set()
    # Once released, the abandoned calls return and their threads end.
    for thread in pcmodel_threads():
        thread.join(WATCHDOG)
    assert pcmodel_threads() == []


async def wait_until(condition: threading.Event) -> None:
    assert await asyncio.to_thread(condition.wait, WATCHDOG), "the job never started"


Starter = Callable[..., "asyncio.Future[Any]"]


def via_start_job(function: Any, params: Any, **options: Any) -> asyncio.Future[Any]:
    return start_job(function, params, **options)


def via_run_job_async(function: Any, params: Any, **options: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(run_job_async(function, params, **options))


STARTERS = pytest.mark.parametrize(
    "starter", [via_start_job, via_run_job_async], ids=["start_job", "run_job_async"]
)
CLOCKS = pytest.mark.parametrize("clock", ["real", "virtual"])


@STARTERS
@CLOCKS
async def test_a_job_cancelled_while_plain_calls_are_stuck_returns_at_once_and_reports_them(
    starter: Starter, clock: Clock, stuck: Stuck, caplog: pytest.LogCaptureFixture
) -> None:
    before = asyncio.all_tasks()
    task = starter(stuck, range(10), workers=stuck.workers, clock=clock)
    await wait_until(stuck.all_started)
    task.cancel()
    await asyncio.wait([task])
    # The cancel did not wait for the stuck calls: they still run, released by no one yet.
    assert not stuck.watchdog_fired
    assert task.cancelled()
    assert asyncio.all_tasks() == before
    # Only the abandoned calls' threads are left (no job thread, no idle worker thread), and
    # the job said so.
    assert len(pcmodel_threads()) == stuck.workers
    assert [r.getMessage().split(" ")[0] for r in caplog.records if "abandoned" in r.getMessage()] == ["3"]


@STARTERS
@CLOCKS
async def test_a_cancelled_job_of_async_calls_leaves_no_task_and_no_thread(
    starter: Starter, clock: Clock
) -> None:
    before = asyncio.all_tasks()
    started = threading.Event()

    async def sleeps(n: int) -> int:
        started.set()
        await asyncio.sleep(60)
        return n

    # Endless items: in virtual time the job runs flat out until the cancel.
    task = starter(sleeps, itertools.count(), workers=4, clock=clock, trace=False)
    await wait_until(started)
    task.cancel()
    async with asyncio.timeout(WATCHDOG):
        await asyncio.wait([task])
    assert task.cancelled()
    assert asyncio.all_tasks() == before
    assert pcmodel_threads() == []
