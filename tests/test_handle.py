"""The knobs of a running job (`JobHandle`), on the virtual clock: exact times, nothing lost."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import pcmodel
from pcmodel import Adaptive, JobHandle, JobSummary, LimitChange, LiveStats, Retry, VirtualTimeLoop
from pcmodel._validate import MAX_WORKERS
from tests._knobs import FirstCallBlocks, until


def on_virtual_clock(main: Callable[[], Awaitable[Any]]) -> Any:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())  # type: ignore[arg-type]


async def one_second(n: int) -> int:
    await asyncio.sleep(1)
    return n


def results_of(summary: JobSummary) -> tuple[pcmodel.TaskResult, ...]:
    assert summary.results is not None
    return summary.results


def running_at(summary: JobSummary, time: float) -> int:
    """Tasks in flight at `time` (a task ending at `time` no longer is)."""
    return sum(1 for r in results_of(summary) if r.started_at <= time < r.finished_at)


def test_start_job_returns_a_handle_that_behaves_as_the_task_did() -> None:
    async def main() -> tuple[JobHandle, list[JobHandle]]:
        handle = pcmodel.start_job(one_second, range(4), workers=2)
        seen: list[JobHandle] = []
        handle.add_done_callback(seen.append)
        assert isinstance(handle, asyncio.Future)
        assert not handle.done()
        done, _ = await asyncio.wait([handle])
        assert done == {handle}
        assert handle.result().tasks == 4
        assert handle.exception() is None
        assert (await handle).elapsed == 2.0
        await asyncio.sleep(0)
        return handle, seen

    handle, seen = on_virtual_clock(main)
    assert seen == [handle]
    assert not handle.cancelled()
    assert handle.get_name() == "pcmodel-job"


def test_cancel_on_the_handle_is_the_hard_stop_it_was() -> None:
    async def main() -> JobHandle:
        before = asyncio.all_tasks()
        handle = pcmodel.start_job(one_second, itertools.count(), workers=3)
        await asyncio.sleep(2.5)
        assert handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handle
        assert asyncio.all_tasks() == before
        return handle

    handle = on_virtual_clock(main)
    assert handle.cancelled()
    assert handle.task.cancelled()
    assert not handle.set_workers(5)  # over: the knob does nothing


def test_growing_the_pool_mid_job_uses_the_new_workers_at_once() -> None:
    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(20), workers=2)
        await asyncio.sleep(1.5)
        assert handle.set_workers(5)
        return await handle

    summary = on_virtual_clock(main)
    results = results_of(summary)
    assert sorted(r.task_id for r in results) == list(range(20))
    assert summary.limit_changes == (LimitChange(0.0, 2, "start"), LimitChange(1.5, 5, "set_workers"))
    # Two lanes until 1.5 s; three more start then; five from 2 s on.
    assert running_at(summary, 1.0) == 2
    assert running_at(summary, 1.5) == 5
    assert max(running_at(summary, r.started_at) for r in results) == 5
    assert summary.workers == 5


def test_shrinking_the_pool_mid_job_loses_nothing_and_drains_to_the_new_size() -> None:
    durations = [1.0, 0.7, 1.3, 0.4, 2.0, 0.9] * 8

    async def varied(n: int) -> int:
        await asyncio.sleep(durations[n])
        return n

    async def main() -> JobSummary:
        handle = pcmodel.start_job(varied, range(len(durations)), workers=6, queue_size=4)
        await asyncio.sleep(1.5)
        assert handle.set_workers(2)
        return await handle

    summary = on_virtual_clock(main)
    results = results_of(summary)
    assert sorted(r.task_id for r in results) == list(range(len(durations)))
    assert summary.failed == 0
    # The calls in flight at 1.5 s finish (the last at 1.5 + 2.0 at most); no new one starts
    # above the new size: every task started after 1.5 s runs on lane 0 or 1.
    assert all(r.worker < 2 for r in results if r.started_at > 1.5)
    last_old_call = max(r.finished_at for r in results if r.started_at <= 1.5)
    assert last_old_call <= 3.5
    assert all(running_at(summary, r.started_at) <= 2 for r in results if r.started_at >= last_old_call)


def test_set_workers_on_an_adaptive_job_sets_its_limit_by_hand_within_its_bounds() -> None:
    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(40), workers=Adaptive(min=2, max=8))
        with pytest.raises(ValueError, match=r"between the adaptive job's min \(2\) and max \(8\), got 9"):
            handle.set_workers(9)
        with pytest.raises(TypeError, match=r"workers must be an int, got 2.0 \(float\)"):
            handle.set_workers(2.0)  # type: ignore[arg-type]
        await asyncio.sleep(3.5)
        assert handle.set_workers(3)
        return await handle

    summary = on_virtual_clock(main)
    changes = summary.limit_changes
    assert changes is not None
    assert LimitChange(3.5, 3, "set_workers") in changes
    assert [c.limit for c in changes if c.time <= 3.0] == [2, 3, 4, 5, 6, 7, 8]
    assert changes[-1].limit == 8  # slow start is over only after a drop; it grows back


def test_set_rate_changes_the_rate_limit_of_the_running_job_and_none_removes_it() -> None:
    starts: list[float] = []

    async def quick(n: int) -> int:
        starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.01)
        return n

    async def main() -> JobSummary:
        handle = pcmodel.start_job(quick, range(12), workers=4, max_per_second=1)
        await asyncio.sleep(2.5)  # calls at 0, 1, 2
        with pytest.raises(ValueError, match=r"max_per_second must be a finite number > 0"):
            handle.set_rate(-1)
        assert handle.set_rate(4)  # from here: one every 0.25 s
        await asyncio.sleep(1.0)
        assert handle.set_rate(None)
        return await handle

    summary = on_virtual_clock(main)
    assert summary.tasks == 12
    assert [round(s, 6) for s in starts[:3]] == [0.0, 1.0, 2.0]
    # The calls waiting for slots booked under 1/s (3.0, 4.0, 5.0) book again under 4/s.
    assert [round(s, 6) for s in starts[3:7]] == [2.5, 2.75, 3.0, 3.25]
    # No limit from 3.5 s: the four workers start at once, and the last item as one is free.
    assert [round(s, 6) for s in starts[7:]] == [3.5, 3.5, 3.5, 3.5, 3.51]


def test_a_paused_job_starts_no_call_until_resumed_and_its_calls_in_flight_finish() -> None:
    flaky = itertools.count()
    attempts: list[float] = []

    async def fails_once_in_a_while(n: int) -> int:
        attempts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(1)
        if next(flaky) % 3 == 0:
            raise ConnectionError("flaky")
        return n

    async def main() -> tuple[JobSummary, LiveStats]:
        handle = pcmodel.start_job(
            fails_once_in_a_while, range(12), workers=3, retries=Retry(2, backoff=0.5, jitter=0)
        )
        await asyncio.sleep(1.2)
        assert handle.pause()
        await asyncio.sleep(3.0)
        paused = handle.stats()
        assert handle.resume()
        return await handle, paused

    summary, paused = on_virtual_clock(main)
    assert summary.failed == 0
    assert not [t for t in attempts if 1.2 < t < 4.2]  # no item and no retry started
    assert 4.2 in [round(t, 6) for t in attempts]
    assert paused.paused
    # Item 0 failed at 1.0 and one of items 3 and 4 at 2.0: their retries wait for the resume.
    assert (paused.in_flight, paused.done) == (2, 3)
    assert paused.elapsed == pytest.approx(4.2)


@pytest.mark.parametrize("graceful", [True, False])
def test_stop_ends_the_job_with_its_summary_gracefully_or_at_once(graceful: bool) -> None:
    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(20), workers=4)
        await asyncio.sleep(1.5)
        assert handle.stop(graceful=graceful)
        return await handle

    summary = on_virtual_clock(main)
    assert summary.stop_reason == "stop"
    results = results_of(summary)
    if graceful:
        assert (summary.tasks, summary.cancelled, summary.unprocessed) == (8, 0, 12)
        assert summary.elapsed == 2.0
    else:
        assert (summary.tasks, summary.cancelled, summary.unprocessed) == (8, 4, 12)
        assert summary.elapsed == 1.5
        assert [type(r.error) for r in results if not r.ok] == [asyncio.CancelledError] * 4
    assert summary.tasks + summary.unprocessed == 20


def test_stop_ends_a_paused_job_too() -> None:
    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(10), workers=2)
        await asyncio.sleep(0.5)
        handle.pause()
        await asyncio.sleep(5)
        handle.stop()
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (2, 8, "stop")
    assert summary.elapsed == 5.5


def test_stats_gives_the_live_figures_and_the_final_ones_after_the_end() -> None:
    async def main() -> tuple[LiveStats, LiveStats, LiveStats, LiveStats, JobHandle]:
        handle = pcmodel.start_job(one_second, range(10), workers=3)
        before = handle.stats()
        await asyncio.sleep(1.5)
        first = handle.stats()
        await asyncio.sleep(1.0)
        second = handle.stats()
        await handle
        return before, first, second, handle.stats(), handle

    before, first, second, after, handle = on_virtual_clock(main)
    assert before == LiveStats(0, 0, 0, 0, 3, 0, 0.0, False, 0.0)
    assert first == LiveStats(
        in_flight=3,
        queued=4,
        done=3,
        failed=0,
        limit=3,
        workers=3,
        recent_rate=2.0,
        paused=False,
        elapsed=1.5,
    )
    assert (second.done, second.in_flight, second.queued, second.recent_rate) == (6, 3, 1, 3.0)
    assert (after.done, after.in_flight, after.queued, after.elapsed) == (10, 0, 0, 4.0)
    assert not handle.pause()
    assert not handle.stop()


def test_knobs_turned_before_the_first_step_apply_as_the_job_starts() -> None:
    async def main() -> tuple[JobSummary, list[float]]:
        handle = pcmodel.start_job(one_second, range(6), workers=1)
        assert handle.set_workers(3)
        assert handle.pause()
        asyncio.get_running_loop().call_later(2.0, handle.resume)
        summary = await handle
        return summary, [r.started_at for r in results_of(summary)]

    summary, starts = on_virtual_clock(main)
    assert summary.limit_changes == (LimitChange(0.0, 1, "start"), LimitChange(0.0, 3, "set_workers"))
    assert starts == [2.0, 2.0, 2.0, 3.0, 3.0, 3.0]


def test_a_stop_before_the_first_step_starts_nothing() -> None:
    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(6), workers=2)
        handle.stop()
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.tasks, summary.unprocessed, summary.stop_reason) == (0, 6, "stop")


def test_knobs_reach_a_job_on_a_private_loop_in_a_helper_thread() -> None:
    """clock="virtual" from a real loop: the job runs in a thread; the knobs cross over."""
    blocks_first = FirstCallBlocks()

    async def main() -> JobSummary:
        handle = pcmodel.start_job(blocks_first, range(30), workers=1, clock="virtual")
        assert await asyncio.to_thread(blocks_first.started.wait, 10)
        assert handle.set_workers(3)
        # The knob lands on the job's loop through call_soon_threadsafe: wait for it to show.
        await until(lambda: handle.stats().limit == 3)
        stats = handle.stats()
        blocks_first.release.set()
        summary = await handle
        assert (stats.limit, stats.workers) == (3, 3)
        assert stats.in_flight >= 1  # item 0, held in its thread
        return summary

    summary = asyncio.run(main())
    assert summary.tasks == 30
    assert summary.limit_changes == (LimitChange(0.0, 1, "start"), LimitChange(0.0, 3, "set_workers"))
    assert {r.worker for r in results_of(summary)} == {0, 1, 2}


def test_knobs_from_another_thread_reach_a_job_on_the_callers_loop() -> None:
    async def main() -> JobSummary:
        loop = asyncio.get_running_loop()
        turned = asyncio.Event()

        async def first_waits_for_the_knob(n: int) -> int:
            if n == 0:
                await turned.wait()  # the job cannot end before the knob lands
            await asyncio.sleep(0.01)
            return n

        handle = pcmodel.start_job(first_waits_for_the_knob, range(40), workers=2)

        def from_a_widget() -> None:
            assert handle.set_workers(8)  # from this thread: through call_soon_threadsafe...
            loop.call_soon_threadsafe(turned.set)  # ...so it lands before this

        helper = threading.Thread(target=from_a_widget)
        helper.start()
        summary = await handle
        helper.join()
        return summary

    summary = asyncio.run(main())
    assert summary.tasks == 40
    changes = summary.limit_changes
    assert changes is not None
    assert [(c.limit, c.cause) for c in changes] == [(2, "start"), (8, "set_workers")]
    assert summary.workers == 8


def test_workers_waiting_for_items_when_their_lanes_close_give_the_items_back() -> None:
    async def one_per_second() -> Any:
        for n in range(6):
            await asyncio.sleep(1)
            yield n

    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, one_per_second(), workers=4)
        await asyncio.sleep(0.5)  # all four workers wait for an item
        handle.set_workers(1)
        return await handle

    summary = on_virtual_clock(main)
    results = results_of(summary)
    assert [(r.task_id, r.worker) for r in results] == [(n, 0) for n in range(6)]
    # Each item waited for lane 0 only as long as the call before it ran: none was lost.
    assert [(r.enqueued_at, r.started_at) for r in results] == [(n + 1.0, n + 1.0) for n in range(6)]


def test_a_fail_fast_stop_while_workers_wait_for_the_rate_limit_loses_no_item() -> None:
    async def fails_at_three(n: int) -> int:
        await asyncio.sleep(0.1)
        if n == 3:
            raise ValueError("bad item")
        return n

    async def main() -> JobSummary:
        return await pcmodel.start_job(fails_at_three, range(20), workers=4, max_per_second=2, fail_fast=True)

    summary = on_virtual_clock(main)
    assert summary.stop_reason == "fail_fast"
    # Item 3 fails at 1.6 s; items 4-6, held by workers waiting for their slots, and the
    # rest of the queue are reported unprocessed, not run and not lost.
    assert summary.tasks + summary.unprocessed == 20
    assert summary.results is not None
    assert [r.task_id for r in summary.results] == [0, 1, 2, 3]


def test_a_knob_turned_from_the_jobs_own_callback_applies_at_once() -> None:
    handle: JobHandle | None = None

    def shrink_after_three(result: pcmodel.TaskResult) -> None:
        assert handle is not None
        if result.task_id == 2:
            assert handle.set_workers(1)
            assert handle.stats().limit == 1  # on the job's loop: applied already

    async def main() -> JobSummary:
        nonlocal handle
        handle = pcmodel.start_job(one_second, range(9), workers=3, on_task_complete=shrink_after_three)
        return await handle

    summary = on_virtual_clock(main)
    assert summary.limit_changes == (LimitChange(0.0, 3, "start"), LimitChange(1.0, 1, "set_workers"))
    # Items 3-5 started at 1.0 s, as their workers took them, before the callback ran.
    assert [(r.started_at, r.worker) for r in results_of(summary) if r.started_at > 1.0] == [
        (2.0, 0),
        (3.0, 0),
        (4.0, 0),
    ]


def test_knobs_repeated_or_out_of_order_change_nothing_twice() -> None:
    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(6), workers=2)
        assert handle.resume()  # not paused: nothing to do
        assert handle.set_workers(2)  # the same size: no change recorded
        await asyncio.sleep(0.5)
        assert handle.stop()
        assert handle.stop(graceful=False)  # the first stop is the one that counts
        with pytest.raises(TypeError, match=r"graceful must be True or False, got 'yes'"):
            handle.stop(graceful="yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"burst must be >= 1, got 0"):
            handle.set_rate(10, burst=0)
        return await handle

    summary = on_virtual_clock(main)
    assert (summary.tasks, summary.cancelled, summary.unprocessed) == (2, 0, 4)
    assert summary.limit_changes == (LimitChange(0.0, 2, "start"),)


def test_a_transport_without_knobs_says_so_and_ignores_the_ones_turned_before_it_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pcmodel import controller
    from pcmodel._knobs import Knobs
    from pcmodel.spec import make_spec
    from tests.test_transport import InlineTransport

    async def main() -> JobSummary:
        spec = make_spec(one_second, range(3), workers=1)  # the inline transport: 1 s per item
        knobs = Knobs()
        task = asyncio.get_running_loop().create_task(controller.execute(spec, InlineTransport(), knobs))
        handle = JobHandle(task, spec, knobs)
        assert handle.set_workers(4)  # remembered: the transport is not known yet
        await asyncio.sleep(1.5)
        with pytest.raises(
            NotImplementedError, match=r"set_workers\(\) cannot change a job carried by InlineTransport"
        ):
            handle.set_workers(4)
        assert handle.stats().workers == 0  # no figures to give
        assert handle.stop()  # a stop needs no knob of the transport's
        return await handle

    summary = on_virtual_clock(main)
    assert summary.stop_reason == "stop"
    assert "set_workers() was ignored" in caplog.text


def test_a_paused_real_time_job_is_not_reported_as_stalled(caplog: pytest.LogCaptureFixture) -> None:
    async def quick(n: int) -> int:
        await asyncio.sleep(0.01)
        return n

    async def main() -> JobSummary:
        handle = pcmodel.start_job(quick, range(20), workers=2, stall_after=0.1)
        await asyncio.sleep(0.03)
        handle.pause()
        await asyncio.sleep(0.5)  # five times stall_after without a task finishing: held on purpose
        handle.resume()
        return await handle

    summary = asyncio.run(main())
    assert summary.tasks == 20
    assert "no task has finished" not in caplog.text


def test_workers_are_capped_everywhere_with_an_error_that_names_the_cap() -> None:
    # set_workers(10**9) was accepted: the pool made a task per worker until memory ran out
    # (a MemoryError loop, a segfault of the process). The cap applies wherever a count of
    # workers enters: run_job, Adaptive(max=...), and the knob of a running job.
    cap = MAX_WORKERS
    assert cap == 10_000
    with pytest.raises(ValueError, match=r"workers must be <= 10000, got 1000000000"):
        pcmodel.run_job(one_second, range(2), workers=10**9, clock="virtual")
    with pytest.raises(ValueError, match=r"Adaptive max must be <= 10000, got 10001"):
        Adaptive(max=cap + 1)
    assert Adaptive(max=cap).max == cap

    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(4), workers=2)
        with pytest.raises(ValueError, match=r"workers must be <= 10000, got 1000000000"):
            handle.set_workers(10**9)
        with pytest.raises(ValueError, match=r"workers must be <= 10000, got 10001"):
            handle.set_workers(cap + 1)
        assert handle.stats().limit == 2  # the refused knob changed nothing
        return await handle

    summary = on_virtual_clock(main)
    assert summary.tasks == 4
    assert summary.elapsed == 2.0
