from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

import pcmodel
from pcmodel import run_job, run_job_async
from pcmodel.workloads import paced

from .conftest import ConcurrencySpy


def test_params_are_consumed_lazily_behind_a_bounded_queue() -> None:
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for n in range(1_000):
            pulled += 1
            yield n

    seen_when_first_done: list[int] = []

    def on_task_complete(result: pcmodel.TaskResult) -> None:
        if not seen_when_first_done:
            seen_when_first_done.append(pulled)

    summary = run_job(
        ConcurrencySpy(seconds=1.0), items(), workers=2, queue_size=3,
        on_task_complete=on_task_complete, clock="virtual",
    )  # fmt: skip
    # When the first task finished, only the items in flight, in the queue and the one the
    # producer held while blocked had been pulled: 2 + 3 + 1.
    assert seen_when_first_done == [6]
    assert summary.tasks == 1_000


def test_an_async_iterable_source_is_consumed() -> None:
    async def cars() -> AsyncIterator[str]:
        for name in ("a", "b", "c"):
            await asyncio.sleep(1)
            yield name

    summary = run_job(ConcurrencySpy(seconds=0.5), cars(), workers=5, clock="virtual")
    assert summary.results is not None
    assert [(r.params, r.enqueued_at, r.finished_at) for r in summary.results] == [
        ("a", 1.0, 1.5),
        ("b", 2.0, 2.5),
        ("c", 3.0, 3.5),
    ]
    assert summary.elapsed == 3.5


def test_producer_wait_is_the_time_blocked_on_a_full_queue() -> None:
    # One worker, 1 s per task, queue of 1: the worker takes item 0 at t=0 and item 1 takes
    # its place; item 2 blocks the producer until t=1, item 3 until t=2.
    summary = run_job(ConcurrencySpy(seconds=1.0), range(4), workers=1, queue_size=1, clock="virtual")
    assert summary.producer_wait == 2.0
    assert summary.producer_blocked == ((0.0, 1.0), (1.0, 2.0))
    assert summary.results is not None
    assert [r.enqueued_at for r in summary.results] == [0.0, 0.0, 1.0, 2.0]
    assert summary.max_queue_depth == 1


def test_an_unbounded_queue_never_blocks_the_producer() -> None:
    summary = run_job(ConcurrencySpy(seconds=1.0), range(50), workers=2, queue_size=0, clock="virtual")
    assert summary.producer_wait == 0.0
    assert summary.max_queue_depth == 50


@pytest.mark.parametrize("queue_size", [1, 2, 7])
def test_the_work_queue_never_holds_more_than_queue_size(queue_size: int) -> None:
    summary = run_job(
        ConcurrencySpy(seconds=0.3), range(40), workers=3, queue_size=queue_size, clock="virtual"
    )
    assert summary.queue_depth is not None
    assert max(sample.depth for sample in summary.queue_depth) == queue_size
    assert summary.max_queue_depth == queue_size
    assert summary.queue_depth[-1].depth == 0


def test_several_producers_share_one_numbering() -> None:
    fast = paced([f"fast-{n}" for n in range(6)], 1.0)
    slow = paced([f"slow-{n}" for n in range(3)], 2.5)
    summary = run_job(ConcurrencySpy(seconds=0.1), pcmodel.producers(fast, slow, ["now"]), clock="virtual")
    assert summary.results is not None
    assert [r.task_id for r in summary.results] == list(range(10))
    by_enqueue = sorted(summary.results, key=lambda r: (r.enqueued_at, r.task_id))
    assert [r.task_id for r in by_enqueue] == list(range(10))
    assert {r.params for r in summary.results} == {
        *(f"fast-{n}" for n in range(6)),
        *(f"slow-{n}" for n in range(3)),
        "now",
    }
    # The slow source does not hold up the fast one: fast-5 enters at t=5.
    assert next(r.enqueued_at for r in summary.results if r.params == "fast-5") == 5.0


def test_producers_needs_at_least_one_iterable_source() -> None:
    with pytest.raises(ValueError, match=r"producers\(\) needs at least one source"):
        pcmodel.producers()
    with pytest.raises(TypeError, match=r"producers\(\) source 1 must be an iterable"):
        pcmodel.producers([1], 2)  # type: ignore[arg-type]


async def test_a_source_that_raises_stops_producing_and_the_queued_items_are_processed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> Iterator[int]:
        yield from range(5)
        raise OSError("source went away")

    spy = ConcurrencySpy(seconds=1.0)
    summary = await run_job_async(spy, broken(), workers=2, queue_size=3, clock="virtual")
    assert sorted(spy.calls) == [0, 1, 2, 3, 4]
    assert (summary.tasks, summary.succeeded, summary.unprocessed) == (5, 5, 0)
    assert summary.stop_reason == "source_error"
    assert isinstance(summary.error, OSError)
    assert str(summary.error) == "source went away"
    assert [record.getMessage() for record in caplog.records] == [
        "a params source raised, so the job stopped producing: OSError('source went away')"
    ]


def test_a_broken_source_stops_the_other_producers_too() -> None:
    def broken() -> Iterator[str]:
        yield "b0"
        raise ValueError("bad row")

    steady = paced([f"s{n}" for n in range(100)], 1.0)
    logging.getLogger("pcmodel").disabled = True
    try:
        summary = run_job(ConcurrencySpy(seconds=0.5), pcmodel.producers(steady, broken()), clock="virtual")
    finally:
        logging.getLogger("pcmodel").disabled = False
    assert summary.stop_reason == "source_error"
    assert summary.results is not None
    assert sorted(r.params for r in summary.results) == ["b0", "s0"]
