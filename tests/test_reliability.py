"""The reliability suite: random jobs with faults, in virtual time, and their invariants.

Whatever the workers, queue sizes, failures, timeouts, retries, callback errors, stops and
cancellation points, a job must: give every item it took exactly one outcome (a result or
"unprocessed"), call `on_task_complete` exactly once per result, call `on_job_complete`
exactly once and last, leave no task behind, and always end.

The function may be a coroutine function or a plain function (run in threads), and it, the
`on_task_complete` callback and the `on_job_complete` callback may raise what ordinary code
rarely raises: StopIteration (which asyncio cannot carry through a Future), StopAsyncIteration,
a CancelledError of their own (nobody cancelled the worker: the function awaited something
that something else cancelled), BaseException subclasses, exception groups, an exception whose
`str()` raises. Each is an outcome like any other: a failed task, a counted callback error.
KeyboardInterrupt and SystemExit are the two exceptions that stop a job: they have a property
test of their own, at the end.

Every example runs under a real-time watchdog: a job that hangs (a Future that never
resolves keeps a virtual clock from ever moving) is cancelled and reported as a failure
instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcmodel import JobSummary, Retry, StopSignal, TaskResult, VirtualTimeLoop, run_job, start_job

HANG_AFTER = 15.0
"""Real seconds an example may take before the watchdog calls it hung (a normal one takes
milliseconds)."""


class SourceBroke(Exception):
    """Raised by a source on purpose."""


class CallFailed(Exception):
    """Raised by the function on purpose."""


class CallbackFailed(Exception):
    """Raised by a callback on purpose."""


class Odd(BaseException):
    """A BaseException subclass that is neither an Exception nor an interrupt."""


class Unprintable(Exception):
    """An exception whose str() and repr() raise: logging and summaries must survive it."""

    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")

    def __repr__(self) -> str:
        raise RuntimeError("repr() of this exception fails")


PLAIN_KINDS = ["error"]
"""What a failing call raises in the plain scenarios: ordinary exceptions only."""
ODD_KINDS = [
    "error",
    "stop_iteration",
    "stop_async_iteration",
    "own_cancel",  # awaits a future that something else cancelled (in a thread: a concurrent one)
    "raise_cancel",  # raises asyncio.CancelledError itself
    "odd",
    "generator_exit",
    "group",
    "unprintable",
]
"""What a failing call, or a failing `on_task_complete`, raises in the odd scenarios."""
OWN_CANCEL = "own cancel"
"""Recorded while the function awaits the future that will be cancelled under it."""


def make_exception(kind: str, where: str) -> BaseException:
    """A new exception of `kind` (one of ODD_KINDS, not own_cancel), saying `where` it came from."""
    if kind == "error":
        return CallFailed(where)
    if kind == "stop_iteration":
        return StopIteration(where)
    if kind == "stop_async_iteration":
        return StopAsyncIteration(where)
    if kind == "raise_cancel":
        return asyncio.CancelledError(where)
    if kind == "odd":
        return Odd(where)
    if kind == "generator_exit":
        return GeneratorExit(where)
    if kind == "group":
        return BaseExceptionGroup(where, [Odd(where), CallFailed(where)])
    if kind == "unprintable":
        return Unprintable()
    raise AssertionError(f"no exception of kind {kind!r}")


async def raise_cancelled_error_of_its_own(seconds: float) -> None:
    """Await a future that a timer cancels after `seconds`: a CancelledError nobody asked for."""
    future = asyncio.get_running_loop().create_future()
    timer = asyncio.get_running_loop().call_later(seconds, future.cancel)
    try:
        await future
    finally:
        timer.cancel()


@dataclass(frozen=True)
class Item:
    number: int
    seconds: float
    failures: int  # attempts that fail before one succeeds (large: always fails)
    raises: str  # what a failing attempt raises
    callback_raises: str | None  # what on_task_complete raises for this item's result


@dataclass
class Scenario:
    items: list[Item]
    plain_function: bool
    workers: int
    queue_size: int
    result_queue_size: int
    result_handlers: int
    async_source: bool
    source_breaks_after: int | None
    async_callback: bool
    callback_seconds: float
    job_callback_raises: str | None
    async_job_callback: bool
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
    last_raised: dict[int, BaseException | str | None] = field(default_factory=dict)
    task_calls: list[int] = field(default_factory=list)
    job_calls: list[JobSummary] = field(default_factory=list)
    job_callback_error: BaseException | None = None
    events: list[str] = field(default_factory=list)
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    logged: list[logging.LogRecord] = field(default_factory=list)
    hung: bool = False


def scenarios(kinds: list[str], *, odd_callbacks: bool) -> st.SearchStrategy[Scenario]:
    """Random jobs whose failing calls raise one of `kinds`.

    With `odd_callbacks`, the callbacks raise odd exceptions too, and the jobs stop early less
    often, so that most of them get as far as the results the odd exceptions become.
    """
    callback_kinds: list[str | None] = [None, None, "error"]
    job_callback_kinds: list[str | None] = [None]
    one_in = 2  # how rarely a way of stopping early is drawn
    if odd_callbacks:
        callback_kinds = [None, None, None, *kinds]
        job_callback_kinds = [None, None, "error", "unprintable"]
        one_in = 4

    def sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """A value of `strategy` one time in `one_in`, else None."""
        return st.tuples(st.integers(1, one_in), strategy).map(
            lambda drawn: drawn[1] if drawn[0] == 1 else None
        )

    rarely = st.integers(1, one_in).map(lambda drawn: drawn == 1)  # True one time in `one_in`

    items = st.lists(
        st.builds(
            Item,
            number=st.just(0),
            seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5]),
            failures=st.sampled_from([0, 0, 0, 1, 2, 99]),
            raises=st.sampled_from(kinds),
            callback_raises=st.sampled_from(callback_kinds),
        ),
        max_size=25,
    ).map(lambda items: [dataclasses.replace(item, number=n) for n, item in enumerate(items)])
    return st.builds(
        Scenario,
        items=items,
        plain_function=st.booleans(),
        workers=st.integers(1, 6),
        queue_size=st.integers(0, 4),
        result_queue_size=st.integers(0, 3),
        result_handlers=st.integers(1, 3),
        async_source=st.booleans(),
        source_breaks_after=sometimes(st.integers(0, 20)),
        async_callback=st.booleans(),
        callback_seconds=st.sampled_from([0.0, 0.0, 0.5, 5.0]),
        job_callback_raises=st.sampled_from(job_callback_kinds),
        async_job_callback=st.booleans(),
        timeout=st.none() | st.sampled_from([0.3, 1.0, 2.0]),
        retries=st.integers(0, 2),
        fail_fast=rarely,
        stop_after_results=sometimes(st.integers(0, 15)),
        cancel_at=sometimes(st.sampled_from([0.0, 0.1, 0.6, 1.3, 4.0])),
        trace=rarely.map(lambda drawn: not drawn),
    )


async def run_scenario(
    scenario: Scenario, record: Record
) -> tuple[JobSummary | None, set[asyncio.Task[Any]]]:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: record.loop_errors.append(context))
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

    def attempt(item: Item) -> int:
        tried = record.attempts[item.number] = record.attempts.get(item.number, 0) + 1
        record.last_raised[item.number] = None
        return tried

    def failure(item: Item, tried: int) -> BaseException:
        error = make_exception(item.raises, f"item {item.number}, attempt {tried}")
        record.last_raised[item.number] = error
        return error

    async def async_function(item: Item) -> int:
        tried = attempt(item)
        if tried <= item.failures and item.raises == "own_cancel":
            record.last_raised[item.number] = OWN_CANCEL
            await raise_cancelled_error_of_its_own(item.seconds)
        await asyncio.sleep(item.seconds)
        if tried <= item.failures:
            raise failure(item, tried)
        return item.number

    def plain_function(item: Item) -> int:
        # Runs in a thread, where no time passes on the virtual clock: `seconds` is not slept.
        tried = attempt(item)
        if tried <= item.failures and item.raises == "own_cancel":
            record.last_raised[item.number] = OWN_CANCEL
            cancelled: concurrent.futures.Future[int] = concurrent.futures.Future()
            cancelled.cancel()
            return cancelled.result()  # raises concurrent.futures.CancelledError
        if tried <= item.failures:
            raise failure(item, tried)
        return item.number

    def note(result: TaskResult) -> None:
        record.task_calls.append(result.task_id)
        record.events.append("task")
        if scenario.stop_after_results is not None and len(record.task_calls) > scenario.stop_after_results:
            stop.set()

    def sync_callback(result: TaskResult) -> None:
        note(result)
        kind = result.params.callback_raises
        if kind == "own_cancel":
            # A plain callback awaits nothing: the nearest it gets is raising one itself.
            raise asyncio.CancelledError(f"callback for {result.task_id}")
        if kind is not None:
            raise make_exception(kind, f"callback for {result.task_id}")

    async def async_callback(result: TaskResult) -> None:
        await asyncio.sleep(scenario.callback_seconds)
        if result.params.callback_raises == "own_cancel":
            note(result)
            await raise_cancelled_error_of_its_own(0.0)
        sync_callback(result)

    def job_callback(summary: JobSummary) -> None:
        record.job_calls.append(summary)
        record.events.append("job")
        if scenario.job_callback_raises is not None:
            record.job_callback_error = make_exception(scenario.job_callback_raises, "job callback")
            raise record.job_callback_error

    async def async_job_callback(summary: JobSummary) -> None:
        await asyncio.sleep(0)
        job_callback(summary)

    before = asyncio.all_tasks()
    task = start_job(
        plain_function if scenario.plain_function else async_function,
        async_items() if scenario.async_source else sync_items(),
        on_task_complete=async_callback if scenario.async_callback else sync_callback,
        on_job_complete=async_job_callback if scenario.async_job_callback else job_callback,
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
        loop.call_later(scenario.cancel_at, task.cancel)

    def on_hang() -> None:
        record.hung = True
        loop.call_soon_threadsafe(task.cancel)

    watchdog = threading.Timer(HANG_AFTER, on_hang)
    watchdog.daemon = True
    watchdog.start()
    try:
        summary: JobSummary | None = await task
    except asyncio.CancelledError:
        summary = None
    finally:
        watchdog.cancel()
    await asyncio.sleep(0)
    return summary, asyncio.all_tasks() - before - {asyncio.current_task()}


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run_and_check(scenario: Scenario) -> None:
    """Run `scenario` in virtual time and check every invariant of its outcome."""
    record = Record()
    logger = logging.getLogger("pcmodel")
    handler = _Collect(record.logged)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # kept here, out of the test's output
    try:
        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            summary, leftovers = runner.run(run_scenario(scenario, record))
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate

    assert not record.hung, f"the job did not end within {HANG_AFTER} real seconds"
    assert leftovers == set(), "no task outlives the job"
    assert record.loop_errors == [], "nothing reaches the loop's exception handler"
    # Each task's callback ran at most once, whatever happened.
    assert len(record.task_calls) == len(set(record.task_calls))
    if summary is None:  # cancelled: a hard stop, no summary, no job callback
        assert record.job_calls == []
        return

    assert len(record.job_calls) == 1, "on_job_complete exactly once"
    assert record.events[-1] == "job", "on_job_complete last"
    seen = record.job_calls[0]
    if record.job_callback_error is None:
        assert summary is seen
    else:
        # A failing on_job_complete is logged once and counted; the summary is returned.
        assert summary == dataclasses.replace(seen, callback_errors=seen.callback_errors + 1)
        logged = [r for r in record.logged if r.exc_info and r.exc_info[1] is record.job_callback_error]
        assert len(logged) == 1, "a failing on_job_complete is logged once"

    if summary.results is not None:
        assert sorted(record.task_calls) == [r.task_id for r in summary.results]
    assert len(record.task_calls) == summary.tasks, "on_task_complete once per result"
    assert summary.succeeded + summary.failed == summary.tasks
    numbers = _params_of(summary, record)
    expected_callback_errors = sum(scenario.items[n].callback_raises is not None for n in numbers)
    assert seen.callback_errors == expected_callback_errors
    # Every item taken from the source has exactly one outcome.
    assert summary.tasks + summary.unprocessed == len(record.pulled)
    if summary.results is not None:
        assert summary.unprocessed_params is not None
        outcomes = [r.params.number for r in summary.results] + [i.number for i in summary.unprocessed_params]
        assert sorted(outcomes) == record.pulled
        for result in summary.results:
            tried = record.attempts.get(result.params.number, 0)
            if (
                scenario.plain_function
                and isinstance(result.error, asyncio.CancelledError)
                and scenario.fail_fast
            ):
                # A fail-fast stop may cancel a call before a thread picked it up.
                assert result.attempts in {tried, tried + 1}
            else:
                assert result.attempts == tried
            assert result.attempts <= scenario.retries + 1
            assert result.enqueued_at <= result.started_at <= result.finished_at <= summary.elapsed
            if result.ok:
                assert result.value == result.params.number
            else:
                _check_error(result, record.last_raised.get(result.params.number), scenario)
        assert max((r.worker for r in summary.results), default=0) < scenario.workers
        fail_fast_cancels = [
            r
            for r in summary.results
            if isinstance(r.error, asyncio.CancelledError) and record.last_raised.get(r.params.number) is None
        ]
        cancelled_errors = [r for r in summary.results if isinstance(r.error, asyncio.CancelledError)]
        assert len(fail_fast_cancels) <= summary.cancelled <= len(cancelled_errors)
    assert summary.cancelled <= summary.failed
    if scenario.source_breaks_after is not None and scenario.source_breaks_after < len(scenario.items):
        assert summary.stop_reason in {"source_error", "stop", "fail_fast"}
    if summary.stop_reason is None:
        assert summary.unprocessed == 0
        assert len(record.pulled) == len(scenario.items)
    if summary.stop_reason == "source_error":
        assert isinstance(summary.error, SourceBroke)
    if summary.stop_reason == "fail_fast":
        assert scenario.fail_fast
        assert summary.error is not None
        if summary.results is not None:
            assert any(summary.error is r.error for r in summary.results), "the first failure"
    if not scenario.fail_fast:
        # A CancelledError the function raised of its own is a failure, not a cancel.
        assert summary.cancelled == 0


def _check_error(result: TaskResult, raised: BaseException | str | None, scenario: Scenario) -> None:
    """A failed result's error is what the function raised (or a timeout, or a fail-fast cancel)."""
    error = result.error
    assert error is not None
    if scenario.fail_fast and isinstance(error, asyncio.CancelledError):
        return  # a fail-fast stop cancelled the call, whatever it was doing
    if isinstance(error, TimeoutError) and (raised is None or raised == OWN_CANCEL):
        assert scenario.timeout is not None, "a timeout only where the job has one"
        return
    if raised == OWN_CANCEL:
        assert isinstance(error, asyncio.CancelledError | concurrent.futures.CancelledError), repr(error)
    elif isinstance(raised, StopIteration):
        # asyncio cannot carry a StopIteration through a Future: a RuntimeError says what happened.
        assert type(error) is RuntimeError, repr(error)
        assert error.__cause__ is raised
    else:
        assert error is raised, f"{type(error).__name__} is not the {type(raised).__name__} raised"


def _params_of(summary: JobSummary, record: Record) -> list[int]:
    """The item numbers that got a result (from the trace, or from the callback log)."""
    if summary.results is not None:
        return [r.params.number for r in summary.results]
    return list(record.task_calls)


@settings(max_examples=200, deadline=timedelta(seconds=30), suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(PLAIN_KINDS, odd_callbacks=False))
def test_every_job_keeps_its_invariants(scenario: Scenario) -> None:
    run_and_check(scenario)


@settings(max_examples=200, deadline=timedelta(seconds=30), suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(ODD_KINDS, odd_callbacks=True))
def test_odd_exceptions_are_outcomes_and_keep_the_invariants(scenario: Scenario) -> None:
    run_and_check(scenario)


@dataclass
class InterruptScenario:
    items: int
    at: int  # the task id whose call or callback raises the interrupt
    interrupt: type[KeyboardInterrupt | SystemExit]
    where: str  # "function", "on_task_complete" or "on_job_complete"
    plain: bool  # a plain function and a plain callback, or async ones
    workers: int
    queue_size: int
    result_queue_size: int
    trace: bool


interrupt_scenarios = st.builds(
    InterruptScenario,
    items=st.integers(1, 20),
    at=st.integers(0, 19),
    interrupt=st.sampled_from([KeyboardInterrupt, SystemExit]),
    where=st.sampled_from(["function", "on_task_complete", "on_job_complete"]),
    plain=st.booleans(),
    workers=st.integers(1, 5),
    queue_size=st.integers(0, 3),
    result_queue_size=st.integers(0, 2),
    trace=st.booleans(),
).filter(lambda s: s.at < s.items)


@settings(max_examples=60, deadline=timedelta(seconds=30), suppress_health_check=[HealthCheck.too_slow])
@given(scenario=interrupt_scenarios)
def test_an_interrupt_anywhere_stops_the_job_and_is_raised_as_itself(scenario: InterruptScenario) -> None:
    interrupt = scenario.interrupt(f"interrupt at task {scenario.at}")
    task_calls: list[int] = []
    job_calls: list[JobSummary] = []

    def plain_function(n: int) -> int:
        if scenario.where == "function" and n == scenario.at:
            raise interrupt
        return n

    async def async_function(n: int) -> int:
        await asyncio.sleep(0.5)
        return plain_function(n)

    def plain_callback(result: TaskResult) -> None:
        task_calls.append(result.task_id)
        if scenario.where == "on_task_complete" and result.task_id == scenario.at:
            raise interrupt

    async def async_callback(result: TaskResult) -> None:
        await asyncio.sleep(0.1)
        plain_callback(result)

    def job_callback(summary: JobSummary) -> None:
        job_calls.append(summary)
        if scenario.where == "on_job_complete":
            raise interrupt

    def job() -> JobSummary:
        return run_job(
            plain_function if scenario.plain else async_function,
            range(scenario.items),
            on_task_complete=plain_callback if scenario.plain else async_callback,
            on_job_complete=job_callback,
            workers=scenario.workers,
            queue_size=scenario.queue_size,
            result_queue_size=scenario.result_queue_size,
            trace=scenario.trace,
            clock="virtual",
        )

    threads_before = _pcmodel_threads()
    outcome = _in_a_thread(job)
    assert isinstance(outcome, BaseException), "the interrupt is raised, not a summary returned"
    assert outcome is interrupt, f"{outcome!r} is not the interrupt raised"
    assert len(task_calls) == len(set(task_calls)), "on_task_complete at most once per task"
    if scenario.where == "on_job_complete":
        assert len(job_calls) == 1
        assert sorted(task_calls) == list(range(scenario.items))
    else:
        assert job_calls == [], "an interrupted job has no summary"
    _wait_for_no_new_pcmodel_thread(threads_before)


def _in_a_thread(call: Callable[[], Any]) -> Any:
    """`call()`'s return value or exception; a call that hangs fails the test instead."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=target, name="test-interrupt", daemon=True)
    thread.start()
    thread.join(HANG_AFTER)
    assert not thread.is_alive(), f"the job did not end within {HANG_AFTER} real seconds"
    return outcome[0]


def _pcmodel_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pcmodel") and t.is_alive()}


def _wait_for_no_new_pcmodel_thread(before: set[threading.Thread]) -> None:
    """Every pcmodel thread the job started ends soon after it (the calls here never block)."""
    pause = threading.Event()
    for _ in range(500):
        if not _pcmodel_threads() - before:
            return
        pause.wait(0.01)
    names = sorted(t.name for t in _pcmodel_threads() - before)
    raise AssertionError(f"pcmodel threads still running after the job: {names}")


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
