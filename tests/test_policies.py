"""Timeouts, retries and the rate limit, in virtual time: exact times, no sleeping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcmodel import Retry, run_job
from pcmodel.policies import RateLimiter

from .conftest import ConcurrencySpy


async def sleep_for(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def test_a_call_over_the_timeout_fails_and_its_worker_moves_on() -> None:
    summary = run_job(sleep_for, [0.5, 3.0, 1.0, 0.5], workers=1, timeout=2.0, clock="virtual")
    assert summary.results is not None
    timed_out = summary.results[1]
    assert isinstance(timed_out.error, TimeoutError)
    assert str(timed_out.error) == "the call took longer than the timeout of 2 s"
    assert (timed_out.started_at, timed_out.finished_at) == (0.5, 2.5)
    assert [r.ok for r in summary.results] == [True, False, True, True]
    assert summary.elapsed == 4.0


def test_a_timeout_error_of_the_function_itself_is_kept_as_it_is() -> None:
    async def own_timeout(n: int) -> None:
        await asyncio.sleep(0.1)
        raise TimeoutError(f"upstream gave up on {n}")

    summary = run_job(own_timeout, [7], timeout=5.0, clock="virtual")
    assert summary.results is not None
    assert str(summary.results[0].error) == "upstream gave up on 7"


class Flaky:
    """Fails the first `failures` attempts of every item, each after `seconds`."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError, seconds: float = 0.5) -> None:
        self.failures = failures
        self.error = error
        self.seconds = seconds
        self.attempts: dict[Any, list[float]] = {}

    async def __call__(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        tries = self.attempts.setdefault(item, [])
        tries.append(loop.time())
        await asyncio.sleep(self.seconds)
        if len(tries) <= self.failures:
            raise self.error(f"attempt {len(tries)} of {item} failed")
        return item


def test_retries_back_off_exponentially_until_the_call_succeeds() -> None:
    flaky = Flaky(failures=2)
    policy = Retry(3, backoff=1.0, multiplier=2.0, jitter=0.0)
    summary = run_job(flaky, ["a", "b"], workers=2, retries=policy, clock="virtual")
    assert summary.results is not None
    assert [(r.ok, r.attempts) for r in summary.results] == [(True, 3), (True, 3)]
    # Attempt at 0 fails at 0.5; wait 1 s; attempt at 1.5 fails at 2.0; wait 2 s; attempt at 4.0.
    assert flaky.attempts["a"] == [0.0, 1.5, 4.0]
    assert summary.results[0].finished_at == 4.5
    assert summary.retries == 4
    assert summary.failed == 0


def test_retries_as_an_int_retry_any_exception() -> None:
    flaky = Flaky(failures=1, error=ValueError)
    summary = run_job(flaky, range(5), retries=1, clock="virtual")
    assert summary.succeeded == 5
    assert summary.retries == 5


def test_when_retries_run_out_the_last_error_is_the_outcome() -> None:
    flaky = Flaky(failures=10)
    summary = run_job(flaky, ["x"], retries=Retry(2, backoff=0.1, jitter=0), clock="virtual")
    assert summary.results is not None
    result = summary.results[0]
    assert (result.ok, result.attempts) == (False, 3)
    assert str(result.error) == "attempt 3 of x failed"


@pytest.mark.parametrize(
    "policy",
    [Retry(3, on=(TimeoutError,)), Retry(3, on=lambda error: "retry" in str(error))],
    ids=["types", "predicate"],
)
def test_only_the_errors_worth_retrying_are_retried(policy: Retry) -> None:
    flaky = Flaky(failures=1, error=ValueError)
    summary = run_job(flaky, [1, 2], retries=policy, clock="virtual")
    assert summary.results is not None
    assert [r.attempts for r in summary.results] == [1, 1]
    assert summary.failed == 2


def test_a_retry_after_hint_sets_the_least_wait() -> None:
    class RateLimited(Exception):
        retry_after = 5.0

    flaky = Flaky(failures=1, error=RateLimited, seconds=0.0)
    run_job(flaky, ["car"], retries=Retry(1, backoff=0.1, jitter=0), clock="virtual")
    assert flaky.attempts["car"] == [0.0, 5.0]


def test_jitter_is_bounded_and_repeatable_with_a_seed() -> None:
    waits = [Retry(5, backoff=1.0, multiplier=1.0, jitter=0.5, seed=42).delay(1) for _ in range(3)]
    assert len(set(waits)) == 1  # the same seed gives the same first draw
    policy = Retry(5, backoff=1.0, multiplier=1.0, jitter=0.5, seed=1)
    draws = [policy.delay(n) for n in range(1, 200)]
    assert all(0.5 <= wait <= 1.5 for wait in draws)
    assert len(set(draws)) > 100
    assert Retry(9, backoff=1.0, multiplier=10.0, max_backoff=7.0, jitter=0).delay(5) == 7.0


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"times": -1}, ValueError, r"Retry times must be >= 0, got -1"),
        ({"times": 1.5}, TypeError, r"Retry times must be an int, got 1.5"),
        ({"on": "ValueError"}, TypeError, r"Retry on must be a tuple of exception types or a function"),
        ({"on": (ValueError, int)}, TypeError, r"Retry on must be a tuple of exception types"),
        ({"jitter": 2}, ValueError, r"Retry jitter must be between 0 and 1, got 2"),
        ({"backoff": -1}, ValueError, r"Retry backoff must be a finite number >= 0, got -1"),
    ],
)
def test_a_bad_retry_policy_is_refused(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Retry(**arguments)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"timeout": 0}, ValueError, r"timeout must be a finite number > 0 or None, got 0"),
        ({"timeout": "1"}, TypeError, r"timeout must be a number or None, got '1' \(str\)"),
        ({"retries": -2}, ValueError, r"retries must be >= 0, got -2"),
        ({"retries": "3"}, TypeError, r"retries must be an int or a pcmodel.Retry, got '3'"),
        ({"max_per_second": float("inf")}, ValueError, r"max_per_second must be a finite number > 0"),
        ({"burst": 0}, ValueError, r"burst must be >= 1, got 0"),
        ({"fail_fast": 1}, TypeError, r"fail_fast must be True or False, got 1"),
        ({"stop": True}, TypeError, r"stop must be a pcmodel.StopSignal or None, got True"),
    ],
)
def test_bad_policy_arguments_fail_before_any_task_starts(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    spy = ConcurrencySpy(seconds=0.0)
    with pytest.raises(error, match=message):
        run_job(spy, [1], **arguments)
    assert spy.calls == []


def call_times(**arguments: Any) -> list[float]:
    flaky = Flaky(failures=0, seconds=0.0)
    summary = run_job(flaky, range(arguments.pop("tasks")), clock="virtual", **arguments)
    assert summary.succeeded == summary.tasks
    return sorted(t for tries in flaky.attempts.values() for t in tries)


def test_the_rate_limit_spaces_calls_across_all_workers() -> None:
    assert call_times(tasks=30, workers=50, max_per_second=10) == pytest.approx([n * 0.1 for n in range(30)])


def test_a_burst_lets_that_many_calls_start_at_once() -> None:
    times = call_times(tasks=8, workers=8, max_per_second=2, burst=4)
    assert times == pytest.approx([0, 0, 0, 0, 0.5, 1.0, 1.5, 2.0])


def test_every_retry_goes_through_the_rate_limit() -> None:
    flaky = Flaky(failures=1, seconds=0.0)
    run_job(
        flaky,
        ["a", "b"],
        workers=2,
        retries=Retry(1, backoff=0.0, jitter=0),
        max_per_second=1,
        clock="virtual",
    )
    times = sorted(t for tries in flaky.attempts.values() for t in tries)
    assert times == [0.0, 1.0, 2.0, 3.0]


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.integers(min_value=1, max_value=6),
    arrivals=st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=60),
)
def test_the_rate_limiter_never_exceeds_burst_plus_rate_times_window(
    rate: float, burst: int, arrivals: list[float]
) -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(rate, burst, time=loop.time)
        starts: list[float] = []

        async def caller(at: float) -> None:
            await asyncio.sleep(at)
            await limiter.acquire()
            starts.append(loop.time())

        await asyncio.gather(*(caller(at) for at in arrivals))
        return sorted(starts)

    from pcmodel import VirtualTimeLoop

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        starts = runner.run(main())
    assert len(starts) == len(arrivals)
    for first, opened in enumerate(starts):
        for last in range(first, len(starts)):
            window = starts[last] - opened
            assert last - first + 1 <= burst + rate * window + 1e-6
