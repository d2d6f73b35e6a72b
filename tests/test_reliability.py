"""The reliability suite: random jobs with faults, in virtual time, and their invariants.

Whatever the workers, queue sizes, failures, timeouts, retries, callback errors, stops and
cancellation points, a job must: give every item it took exactly one outcome (a result or
"unprocessed"), call `on_task_complete` exactly once per result, call `on_job_complete`
exactly once and last, leave no task behind, and always end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcmodel import JobSummary, Retry, StopSignal, TaskResult, VirtualTimeLoop, start_job


class SourceBroke(Exception):
    """Raised by a source on purpose."""


class CallFailed(Exception):
    """Raised by the function on purpose."""


class CallbackFailed(Exception):
    """Raised by on_task_complete on purpose."""


@dataclass(frozen=True)
class Item:
    number: int
    seconds: float
    failures: int  # attempts that fail before one succeeds (large: always fails)
    callback_fails: bool


@dataclass
class Scenario:
    items: list[Item]
    workers: int
    queue_size: int
    result_queue_size: int
    result_handlers: int
    async_source: bool
    source_breaks_after: int | None
    async_callback: bool
    callback_seconds: float
    timeout: float | None
    retries: int
    fail_fast: bool
    stop_after_results: int | None
    cancel_at: float | None
    trace: bool


@dataclass
class Record:
    pulled: list[int] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)
    task_calls: list[int] = field(default_factory=list)
    job_calls: list[JobSummary] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


items_strategy = st.lists(
    st.builds(
        Item,
        number=st.just(0),
        seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5]),
        failures=st.sampled_from([0, 0, 0, 1, 2, 99]),
        callback_fails=st.booleans(),
    ),
    max_size=25,
).map(lambda items: [Item(n, i.seconds, i.failures, i.callback_fails) for n, i in enumerate(items)])

scenarios = st.builds(
    Scenario,
    items=items_strategy,
    workers=st.integers(1, 6),
    queue_size=st.integers(0, 4),
    result_queue_size=st.integers(0, 3),
    result_handlers=st.integers(1, 3),
    async_source=st.booleans(),
    source_breaks_after=st.none() | st.integers(0, 20),
    async_callback=st.booleans(),
    callback_seconds=st.sampled_from([0.0, 0.0, 0.5, 5.0]),
    timeout=st.none() | st.sampled_from([0.3, 1.0, 2.0]),
    retries=st.integers(0, 2),
    fail_fast=st.booleans(),
    stop_after_results=st.none() | st.integers(0, 15),
    cancel_at=st.none() | st.sampled_from([0.0, 0.1, 0.6, 1.3, 4.0]),
    trace=st.booleans(),
)


async def run_scenario(
    scenario: Scenario, record: Record
) -> tuple[JobSummary | None, set[asyncio.Task[Any]]]:
    stop = StopSignal()

    def sync_items(*, record_pulls: bool = True) -> Iterator[Item]:
        for item in scenario.items:
            if scenario.source_breaks_after is not None and item.number >= scenario.source_breaks_after:
                raise SourceBroke(f"source broke at item {item.number}")
            if record_pulls:
                record.pulled.append(item.number)
            yield item

    async def async_items() -> AsyncIterator[Item]:
        for item in sync_items(record_pulls=False):
            await asyncio.sleep(0.1)
            # Handed over only now: a stop during the sleep cancels the source, not an item.
            record.pulled.append(item.number)
            yield item

    async def function(item: Item) -> int:
        tried = record.attempts[item.number] = record.attempts.get(item.number, 0) + 1
        await asyncio.sleep(item.seconds)
        if tried <= item.failures:
            raise CallFailed(f"item {item.number}, attempt {tried}")
        return item.number

    def check(result: TaskResult) -> None:
        record.task_calls.append(result.task_id)
        record.events.append("task")
        if scenario.stop_after_results is not None and len(record.task_calls) > scenario.stop_after_results:
            stop.set()
        if result.params.callback_fails:
            raise CallbackFailed(f"callback for {result.task_id}")

    async def async_callback(result: TaskResult) -> None:
        await asyncio.sleep(scenario.callback_seconds)
        check(result)

    def sync_callback(result: TaskResult) -> None:
        check(result)

    def on_job_complete(summary: JobSummary) -> None:
        record.job_calls.append(summary)
        record.events.append("job")

    before = asyncio.all_tasks()
    task = start_job(
        function,
        async_items() if scenario.async_source else sync_items(),
        on_task_complete=async_callback if scenario.async_callback else sync_callback,
        on_job_complete=on_job_complete,
        workers=scenario.workers,
        queue_size=scenario.queue_size,
        result_queue_size=scenario.result_queue_size,
        result_handlers=scenario.result_handlers,
        timeout=scenario.timeout,
        retries=Retry(scenario.retries, backoff=0.2, seed=7) if scenario.retries else 0,
        fail_fast=scenario.fail_fast,
        stop=stop,
        trace=scenario.trace,
    )
    if scenario.cancel_at is not None:
        asyncio.get_running_loop().call_later(scenario.cancel_at, task.cancel)
    try:
        summary: JobSummary | None = await task
    except asyncio.CancelledError:
        summary = None
    await asyncio.sleep(0)
    return summary, asyncio.all_tasks() - before - {asyncio.current_task()}


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_every_job_keeps_its_invariants(scenario: Scenario) -> None:
    record = Record()
    logging.getLogger("pcmodel").disabled = True
    try:
        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            summary, leftovers = runner.run(run_scenario(scenario, record))
    finally:
        logging.getLogger("pcmodel").disabled = False

    assert leftovers == set(), "no task outlives the job"
    # Each task's callback ran at most once, whatever happened.
    assert len(record.task_calls) == len(set(record.task_calls))
    if summary is None:  # cancelled: a hard stop, no summary, no job callback
        assert record.job_calls == []
        return

    assert record.job_calls == [summary], "on_job_complete exactly once"
    assert record.events[-1] == "job", "on_job_complete last"
    if summary.results is not None:
        assert sorted(record.task_calls) == [r.task_id for r in summary.results]
    assert len(record.task_calls) == summary.tasks, "on_task_complete once per result"
    assert summary.succeeded + summary.failed == summary.tasks
    expected_callback_errors = sum(scenario.items[n].callback_fails for n in _params_of(summary, record))
    assert summary.callback_errors == expected_callback_errors
    # Every item taken from the source has exactly one outcome.
    assert summary.tasks + summary.unprocessed == len(record.pulled)
    if summary.results is not None:
        assert summary.unprocessed_params is not None
        outcomes = [r.params.number for r in summary.results] + [i.number for i in summary.unprocessed_params]
        assert sorted(outcomes) == record.pulled
        for result in summary.results:
            assert result.attempts == record.attempts[result.params.number]
            assert result.attempts <= scenario.retries + 1
            assert result.enqueued_at <= result.started_at <= result.finished_at <= summary.elapsed
            if result.ok:
                assert result.value == result.params.number
        assert max((r.worker for r in summary.results), default=0) < scenario.workers
    if scenario.source_breaks_after is not None and scenario.source_breaks_after < len(scenario.items):
        assert summary.stop_reason in {"source_error", "stop", "fail_fast"}
    if summary.stop_reason is None:
        assert summary.unprocessed == 0
        assert len(record.pulled) == len(scenario.items)
    if summary.stop_reason == "source_error":
        assert isinstance(summary.error, SourceBroke)
    if summary.stop_reason == "fail_fast":
        assert scenario.fail_fast
        assert isinstance(summary.error, CallFailed | TimeoutError)
    if not scenario.fail_fast:
        assert summary.cancelled == 0


def _params_of(summary: JobSummary, record: Record) -> list[int]:
    """The item numbers that got a result (from the trace, or from the callback log)."""
    if summary.results is not None:
        return [r.params.number for r in summary.results]
    return list(record.task_calls)


@pytest.mark.parametrize(
    "stage", ["producing", "queued", "in the call", "in the callback", "in the job callback"]
)
def test_cancelling_at_any_stage_leaves_no_task(stage: str) -> None:
    gate = asyncio.Event()

    async def slow_source() -> AsyncIterator[int]:
        for n in range(10):
            if stage == "producing":
                await gate.wait()
            yield n

    async def call(n: int) -> int:
        if stage == "in the call":
            await gate.wait()
        await asyncio.sleep(1)
        return n

    async def callback(result: TaskResult) -> None:
        if stage == "in the callback":
            await gate.wait()

    async def job_callback(summary: JobSummary) -> None:
        if stage == "in the job callback":
            await gate.wait()

    async def main() -> set[asyncio.Task[Any]]:
        before = asyncio.all_tasks()
        task = start_job(
            call, slow_source(), workers=2, queue_size=3 if stage == "queued" else 0,
            on_task_complete=callback, on_job_complete=job_callback,
        )  # fmt: skip
        await asyncio.sleep(0.5)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        return asyncio.all_tasks() - before

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        assert runner.run(main()) == set()
