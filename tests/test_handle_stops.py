"""Stopping a job whose pool is paused or waits out a Retry-After: every stop ends the job.

A resizable pool (`start_job`, or `workers=Adaptive(...)`) takes items through lanes that close
while the pool is held. A stop must release them, or the final `STOP` is never taken and the
job waits for a `resume()` (or the end of the hold) with nothing left to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import pcmodel
from pcmodel import Adaptive, JobHandle, JobSummary, Retry, StopSignal, VirtualTimeLoop
from tests._knobs import FirstCallBlocks, until


def on_virtual_clock(main: Callable[[], Awaitable[Any]]) -> Any:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())  # type: ignore[arg-type]


async def one_second(n: int) -> int:
    await asyncio.sleep(1)
    return n


class Busy(Exception):
    """An HTTP 429 answer that asks for a minute's rest."""

    status = 429
    retry_after = 60.0


def stop_by(how: str, handle: JobHandle, signal: StopSignal) -> None:
    if how == "signal":
        signal.set()
    else:
        assert handle.stop(graceful=how == "handle")


def test_a_stop_signal_ends_a_paused_real_time_job() -> None:
    async def main() -> JobSummary:
        stop = StopSignal()
        handle = pcmodel.start_job(asyncio.sleep, [0.05] * 20, workers=2, stop=stop)
        await asyncio.sleep(0.02)
        handle.pause()
        await asyncio.sleep(0.1)
        stop.set()
        # A guard against the hang this was: the job ends long before 5 s, never at resume().
        return await asyncio.wait_for(handle, 5)

    summary = asyncio.run(main())
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (2, 18, "stop")


@pytest.mark.parametrize("how", ["signal", "handle", "handle at once"])
def test_every_stop_ends_a_paused_job_with_its_summary(how: str) -> None:
    async def main() -> JobSummary:
        signal = StopSignal()
        handle = pcmodel.start_job(one_second, range(20), workers=2, stop=signal)
        await asyncio.sleep(0.5)
        handle.pause()
        await asyncio.sleep(2.0)
        stop_by(how, handle, signal)
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (2, 18, "stop")
    assert summary.elapsed == 2.5


def test_a_failure_while_paused_stops_a_fail_fast_job() -> None:
    async def zero_fails(n: int) -> int:
        await asyncio.sleep(1.0)
        if n == 0:
            raise ValueError("boom")
        return n

    async def main() -> JobSummary:
        handle = pcmodel.start_job(zero_fails, range(20), workers=2, fail_fast=True)
        await asyncio.sleep(0.5)
        handle.pause()  # items 0 and 1 are in flight: item 0 fails at 1.0, paused
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (2, 18, "fail_fast")
    assert summary.elapsed == 1.0
    assert isinstance(summary.error, ValueError)


def test_a_paused_job_stays_paused_once_stopping() -> None:
    async def main() -> tuple[JobSummary, bool]:
        handle = pcmodel.start_job(one_second, range(10), workers=2)
        await asyncio.sleep(0.5)
        handle.stop()
        handle.pause()  # too late: the stop wins, the calls in flight finish
        paused = handle.stats().paused
        return await handle, paused

    summary, paused = on_virtual_clock(main)
    assert not paused
    assert (summary.tasks, summary.unprocessed, summary.elapsed) == (2, 8, 1.0)


def test_a_source_error_while_paused_keeps_the_queued_items_for_the_resume() -> None:
    """A source's error stops producing but keeps what is queued: a pause holds that."""

    def breaks_after_six() -> Any:
        yield from range(6)
        raise OSError("the source broke")

    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, breaks_after_six(), workers=2)
        handle.pause()
        asyncio.get_running_loop().call_later(5.0, handle.resume)
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (6, 0, "source_error")
    assert summary.elapsed == 8.0


@pytest.mark.parametrize("source", ["ends", "raises"])
def test_a_paused_job_with_every_item_handled_ends_without_a_resume(source: str) -> None:
    """The final STOP starts no call: a pause has no reason to hold it."""

    async def two_then_end() -> Any:
        yield 0
        yield 1
        await asyncio.sleep(3.0)  # paused meanwhile, with both items done
        if source == "raises":
            raise OSError("the source broke")

    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, two_then_end(), workers=2)
        await asyncio.sleep(0.5)
        handle.pause()
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.tasks, summary.unprocessed) == (2, 0)
    assert summary.stop_reason == (None if source == "ends" else "source_error")
    assert summary.elapsed == 3.0


async def third_is_rate_limited(n: int) -> int:
    """Item 2 is answered 429 with Retry-After: 60 s, at 0.1 s."""
    await asyncio.sleep(0.1)
    if n == 2:
        raise Busy()
    return n


def test_a_fail_fast_stop_ends_a_retry_after_hold_at_once() -> None:
    summary = pcmodel.run_job(
        third_is_rate_limited,
        range(50),
        workers=Adaptive(min=1, max=4, initial=4),
        clock="virtual",
        fail_fast=True,
    )
    assert summary.stop_reason == "fail_fast"
    assert summary.elapsed == 0.1  # not the 60.1 of a stop that waited the hold out
    assert (summary.tasks, summary.unprocessed) == (6, 44)


@pytest.mark.parametrize("how", ["signal", "handle", "handle at once"])
def test_every_stop_during_a_retry_after_hold_with_nothing_in_flight_ends_the_job(how: str) -> None:
    async def main() -> JobSummary:
        signal = StopSignal()
        handle = pcmodel.start_job(
            third_is_rate_limited, range(50), workers=Adaptive(min=1, max=4, initial=4), stop=signal
        )
        await asyncio.sleep(1.0)
        stats = handle.stats()
        assert (stats.in_flight, stats.queued) == (0, 44)  # held until 60.1 s
        stop_by(how, handle, signal)
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (6, 44, "stop")
    assert summary.elapsed == 1.0


def test_a_graceful_stop_during_a_hold_lets_the_retries_in_flight_finish() -> None:
    """The calls in flight finish, retries included, when the server said they may."""

    class BusyFor5s(Exception):
        status = 429
        retry_after = 5.0

    answered: list[int] = []

    async def busy_once(n: int) -> int:
        await asyncio.sleep(0.1)
        if n == 0 and not answered:
            answered.append(n)
            raise BusyFor5s()
        return n

    async def main() -> JobSummary:
        handle = pcmodel.start_job(
            busy_once,
            range(20),
            workers=Adaptive(min=1, max=2, initial=2),
            retries=Retry(1, on=(BusyFor5s,), backoff=0, jitter=0),
        )
        await asyncio.sleep(1.0)
        handle.stop()
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.stop_reason, summary.failed, summary.tasks) == ("stop", 0, 2)
    results = summary.results
    assert results is not None
    assert {r.task_id: r.attempts for r in results} == {0: 2, 1: 1}
    # Held until 5.1 s, when the retry starts; it takes 0.1 s.
    assert [r.finished_at for r in results if r.task_id == 0] == [pytest.approx(5.2)]
    assert summary.elapsed == pytest.approx(5.2)


def test_a_graceful_stop_gives_back_the_items_waiting_for_a_rate_slot_uncalled() -> None:
    """No new calls after a stop: not even the ones whose slot under the rate limit comes later."""
    calls: list[float] = []

    async def tenth_of_a_second(n: int) -> int:
        calls.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.1)
        return n

    async def main() -> JobSummary:
        # One call every 100 s: at 1.0 s three workers hold items waiting for slots at 100,
        # 200 and 300 s.
        handle = pcmodel.start_job(tenth_of_a_second, range(50), workers=4, max_per_second=0.01)
        await asyncio.sleep(1.0)
        handle.stop()
        return await handle

    summary = on_virtual_clock(main)
    assert calls == [0.0]
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (1, 49, "stop")
    assert summary.elapsed == 1.0


# A virtual-time job run from a real loop lives in a helper thread, and its knobs come from the
# caller's thread: paused, it waits for them in real time; it is not stuck.


def test_a_virtual_job_paused_from_the_callers_loop_waits_for_its_resume() -> None:
    async def main() -> tuple[JobSummary, pcmodel.LiveStats]:
        handle = pcmodel.start_job(one_second, range(20), workers=2, clock="virtual")
        assert handle.pause()  # applied as the job starts, before its first call
        await until(lambda: handle.stats().workers == 2)  # started, paused before any call
        await asyncio.sleep(0.05)  # real time, with nothing to do on the job's loop
        paused = handle.stats()
        assert not handle.done()
        assert handle.resume()
        return await asyncio.wait_for(handle, 5), paused

    summary, paused = asyncio.run(main())
    assert (paused.paused, paused.done, paused.queued, paused.elapsed) == (True, 0, 20, 0.0)
    assert summary.tasks == 20
    assert summary.elapsed == 10.0  # the pause took no virtual time


@pytest.mark.parametrize("graceful", [True, False])
def test_a_virtual_job_paused_from_the_callers_loop_can_be_stopped(graceful: bool) -> None:
    first_blocks = FirstCallBlocks()

    async def main() -> JobSummary:
        handle = pcmodel.start_job(first_blocks, range(20), workers=1, clock="virtual")
        assert await asyncio.to_thread(first_blocks.started.wait, 10)
        assert handle.pause()  # while item 0 is in flight, in its thread
        await until(lambda: handle.stats().paused)
        first_blocks.release.set()  # item 0 ends; nothing on the job's loop can start another
        await asyncio.sleep(0.05)
        assert handle.stop(graceful=graceful)
        return await asyncio.wait_for(handle, 5)

    summary = asyncio.run(main())
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (1, 19, "stop")


def test_a_paused_job_that_nothing_can_resume_on_its_own_virtual_loop_is_a_deadlock() -> None:
    """On the caller's own virtual loop nothing else can turn a knob: that pause is stuck."""

    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(20), workers=2)
        handle.pause()
        return await handle

    with pytest.raises(pcmodel.DeadlockError, match=r"stuck at virtual time 0\.000 s"):
        on_virtual_clock(main)
