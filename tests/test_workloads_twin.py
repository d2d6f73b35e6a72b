"""The car-price API's twin on the virtual clock: seeded fates, its error rate, its rate limit, its knobs."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

import pcmodel
from pcmodel import sweeps, workloads


def _latency(rng: random.Random) -> float:
    return 1.2 if rng.random() < 0.1 else rng.uniform(0.02, 0.1)


KNOBS: dict[str, Any] = {"latency": _latency, "error_rate": 0.3, "seed": 5}


def _call(api: workloads.SimulatedCarAPI, car: int) -> tuple[str, float]:
    """One call on a fresh virtual loop: ("ok" or the error's name, seconds it took)."""

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await api(car)
        except workloads.PriceAPIError as error:
            return type(error).__name__, loop.time() - started
        return "ok", loop.time() - started

    return sweeps.run_virtual(main)


def test_simulated_api_draws_each_cars_fate_from_the_seed_and_the_request_count() -> None:
    first, second = workloads.SimulatedCarAPI(**KNOBS), workloads.SimulatedCarAPI(**KNOBS)
    fates = [_call(first, car) for car in [3, 4, 3, 5, 3]]
    # Another order: each car's n-th request meets the same fate.
    others = {car: [_call(second, car) for _ in range(3 if car == 3 else 1)] for car in [5, 3, 4]}
    assert [fates[0], fates[2], fates[4]] == others[3]
    assert fates[1] == others[4][0]
    assert fates[3] == others[5][0]
    assert first.requests == first.answered + first.errors_sent == 5
    assert first.rate_limited == 0


def test_simulated_api_fails_at_its_error_rate() -> None:
    api = workloads.SimulatedCarAPI(latency=(0.0, 0.0), error_rate=0.25, seed=2)
    summary = pcmodel.run_job(api, range(400), workers=50, clock="virtual")
    assert 70 <= summary.failed <= 130
    assert summary.failed == api.errors_sent
    assert {type(r.error) for r in summary.results or () if not r.ok} == {workloads.ServerError}
    assert all(isinstance(r.value, int) for r in summary.results or () if r.ok)


def test_simulated_api_turns_calls_away_beyond_its_rate_with_the_wait_until_a_token() -> None:
    api = workloads.SimulatedCarAPI(latency=(0.0, 0.0), rate_limit=10, burst=2)

    async def main() -> list[object]:
        outcomes: list[object] = []
        for car in range(3):  # at t = 0: two tokens, then none
            try:
                outcomes.append(await api(car))
            except workloads.RateLimited as error:
                outcomes.append(error.retry_after)
        await asyncio.sleep(0.1)  # one token back
        outcomes.append(type(await api(9)).__name__)
        return outcomes

    outcomes = sweeps.run_virtual(main)
    assert outcomes[2] == 0.1
    assert outcomes[3] == "int"
    assert (api.requests, api.rate_limited, api.answered) == (4, 1, 3)
    assert isinstance(workloads.RateLimited("x", retry_after=1.0), workloads.PriceAPIError)
    assert set(workloads.RETRYABLE_ERRORS) == {workloads.ServerError, workloads.RateLimited}


def test_a_retry_policy_honours_the_simulated_retry_after() -> None:
    api = workloads.SimulatedCarAPI(latency=(0.01, 0.01), rate_limit=5, burst=1)
    log = workloads.CallLog(api)
    retry = pcmodel.Retry(10, on=workloads.RETRYABLE_ERRORS, jitter=0.0)
    summary = pcmodel.run_job(log, range(6), workers=6, retries=retry, clock="virtual")
    assert summary.succeeded == 6
    calls = log.calls(summary)
    limited = [call for call in calls if call.outcome == "rate-limited"]
    assert limited
    following = {(call.task_id, call.attempt): call for call in calls}
    for call in limited:
        assert isinstance(call.error, workloads.RateLimited)
        assert call.error.retry_after is not None  # the twin always says how long to wait
        later = following[call.task_id, call.attempt + 1]
        assert later.started_at >= call.finished_at + call.error.retry_after - 1e-9
    # Admitted calls never beat the bucket: at most burst + rate * t in any window of t.
    assert api.peak_per_second() <= 1 + 5
    assert api.peak_per_second(window=0.1) == 1


def test_simulated_api_refills_its_bucket_for_a_new_loop() -> None:
    api = workloads.SimulatedCarAPI(latency=(0.0, 0.0), rate_limit=1, burst=3)
    for _ in range(2):  # each job runs on a loop of its own, whose clock starts again
        summary = pcmodel.run_job(api, range(3), workers=3, clock="virtual")
        assert summary.failed == 0
    assert api.rate_limited == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"error_rate": 1.5}, ValueError, "error_rate must be between 0 and 1"),
        ({"error_rate": "high"}, TypeError, "error_rate must be a number"),
        ({"latency": (0.3, 0.1)}, ValueError, "latency must be"),
        ({"latency": 0.1}, TypeError, "latency must be a"),
        ({"rate_limit": 0}, ValueError, "rate_limit must be > 0"),
        ({"rate_limit": float("inf")}, ValueError, "rate_limit must be > 0"),
        ({"rate_limit": "fast"}, TypeError, "rate_limit must be a number"),
        ({"burst": 3}, ValueError, "burst needs a rate_limit"),
        ({"rate_limit": 5, "burst": 0}, ValueError, "burst must be >= 1"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_simulated_api_rejects_bad_knobs(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        workloads.SimulatedCarAPI(**kwargs)


def test_simulated_api_needs_an_int_car() -> None:
    api = workloads.SimulatedCarAPI()
    with pytest.raises(TypeError, match="car must be an int id"):
        sweeps.run_virtual(api("7"))  # type: ignore[arg-type]
    assert "error_rate=0" in repr(api)


def test_the_simulated_api_meets_the_same_fates_as_the_real_server() -> None:
    carapi = pytest.importorskip("pcmodel.carapi")
    cars = range(60)
    fast: dict[str, Any] = {"latency": (0.0, 0.004), "error_rate": 0.3, "seed": 11}

    async def real() -> list[int]:
        async with carapi.CarAPIServer(**fast) as server, carapi.CarPriceClient(server.url) as fetch:
            retry = pcmodel.Retry(8, on=carapi.RETRYABLE_ERRORS, backoff=0.0, jitter=0.0)
            summary = await pcmodel.run_job_async(fetch, cars, workers=8, retries=retry)
        return [r.attempts for r in summary.results or ()]

    twin = workloads.SimulatedCarAPI(**fast)
    retry = pcmodel.Retry(8, on=workloads.RETRYABLE_ERRORS, backoff=0.0, jitter=0.0)
    replay = pcmodel.run_job(twin, cars, workers=8, retries=retry, clock="virtual")
    attempts = [r.attempts for r in replay.results or ()]
    assert any(a > 1 for a in attempts)
    assert asyncio.run(real()) == attempts


# -- the capacity: calls served at once -------------------------------------------------------


def test_a_call_over_capacity_is_turned_away_at_once_until_the_first_slot_frees() -> None:
    # Latencies drawn by the seed: car 0 takes 0.3 s, car 1 0.5 s (fixed here by a function).
    api = workloads.SimulatedCarAPI(latency=lambda rng: 0.3, capacity=2)

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(api(0))  # served from 0.0 to 0.3
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(api(1))  # served from 0.1 to 0.4
        await asyncio.sleep(0.1)
        outcomes: list[object] = [api.in_flight]
        try:
            await api(2)
        except workloads.RateLimited as error:
            # Turned away at 0.2, at once, told to come back when the first call ends.
            outcomes += [loop.time(), error.retry_after, error.status, str(error)]
        await asyncio.sleep(0.1)  # 0.3: the first call has ended
        outcomes.append(type(await api(3)).__name__)  # admitted: one slot was free
        await asyncio.gather(first, second)
        return outcomes

    outcomes = sweeps.run_virtual(main)
    assert outcomes[:4] == [2, pytest.approx(0.2), 0.1, 429]
    assert outcomes[4] == "car 2: over capacity (2 calls in flight), retry after 0.100 s"
    assert outcomes[5] == "int"
    assert (api.requests, api.over_capacity, api.rate_limited, api.answered) == (4, 1, 0, 3)
    assert api.max_in_flight == 2
    assert api.in_flight == 0


@pytest.mark.parametrize(("workers", "capacity"), [(1, 1), (5, 3), (40, 10), (10, 10)])
def test_a_job_never_has_more_calls_served_than_the_capacity(workers: int, capacity: int) -> None:
    api = workloads.SimulatedCarAPI(capacity=capacity, seed=3)
    summary = pcmodel.run_job(api, range(120), workers=workers, clock="virtual")
    assert api.max_in_flight == min(workers, capacity)
    assert summary.failed == api.over_capacity == api.requests - api.answered
    assert (api.over_capacity > 0) == (workers > capacity)
    for result in summary.results or ():
        if not result.ok:
            assert isinstance(result.error, workloads.RateLimited)
            assert result.error.retry_after is not None
            assert 0.001 <= result.error.retry_after <= 0.25  # at most one latency away


def test_retrying_after_each_429_prices_every_car_within_the_capacity() -> None:
    api = workloads.SimulatedCarAPI(capacity=4, seed=8)
    log = workloads.CallLog(api)
    retry = pcmodel.Retry(1000, on=workloads.RETRYABLE_ERRORS, backoff=0.0, jitter=0.0)
    summary = pcmodel.run_job(log, range(60), workers=12, retries=retry, clock="virtual")
    assert summary.succeeded == 60
    assert api.max_in_flight == 4
    assert api.over_capacity == summary.retries > 0
    calls = log.calls(summary)
    assert sum(c.outcome == "rate-limited" for c in calls) == api.over_capacity
    # Every retry came back exactly when it was told to; eight workers chasing four slots
    # come back together, and all but the first are turned away again (a thundering herd:
    # what an adaptive pool avoids by not sending them).
    after = {(c.task_id, c.attempt): c for c in calls}
    for call in calls:
        if call.outcome == "rate-limited":
            assert call.error is not None
            retry_after = call.error.retry_after  # type: ignore[attr-defined]
            assert after[call.task_id, call.attempt + 1].started_at == pytest.approx(
                call.finished_at + retry_after
            )


def test_the_capacity_can_drop_and_rise_while_a_job_runs() -> None:
    api = workloads.SimulatedCarAPI(latency=(0.05, 0.25), capacity=8, seed=2)
    retry = pcmodel.Retry(1000, on=workloads.RETRYABLE_ERRORS, backoff=0.0, jitter=0.0)
    peaks: dict[str, int] = {}

    def watch(stage: str) -> None:
        # Each stage starts once every call admitted before the change has ended (latency
        # <= 0.25 s): from then on only the new capacity holds.
        peaks[stage] = api.max_in_flight
        api.max_in_flight = api.in_flight

    async def job() -> pcmodel.JobSummary:
        loop = asyncio.get_running_loop()
        loop.call_at(1.0, setattr, api, "capacity", 3)
        loop.call_at(1.25, watch, "before")
        loop.call_at(3.0, watch, "at 3")
        loop.call_at(3.0, setattr, api, "capacity", None)
        return await pcmodel.run_job_async(api, range(400), workers=12, retries=retry)

    summary = sweeps.run_virtual(job)
    watch("no limit")
    assert summary.succeeded == 400
    assert peaks == {"before": 8, "at 3": 3, "no limit": 12}


@pytest.mark.parametrize(
    ("capacity", "error", "message"),
    [
        (0, ValueError, r"capacity must be >= 1 request in flight \(None: no limit\), got 0"),
        (-5, ValueError, r"capacity must be >= 1 request in flight"),
        (10**9 + 1, ValueError, r"capacity must be <= 1000000000, got 1000000001"),
        (10**400, ValueError, r"capacity must be <= 1000000000"),
        (2.0, TypeError, r"capacity must be an int number of requests in flight or None, got 2.0"),
        (float("nan"), TypeError, r"capacity must be an int number of requests in flight or None"),
        (True, TypeError, r"capacity must be an int number of requests in flight or None, got True"),
        ("10", TypeError, r"capacity must be an int number of requests in flight or None, got '10'"),
    ],
)
def test_a_bad_capacity_is_refused_when_made_and_when_changed_leaving_it_as_it_was(
    capacity: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        workloads.SimulatedCarAPI(capacity=capacity)  # type: ignore[arg-type]
    api = workloads.SimulatedCarAPI(capacity=7)
    with pytest.raises(error, match=message):
        api.capacity = capacity  # type: ignore[assignment]
    assert api.capacity == 7
    assert repr(api) == "<SimulatedCarAPI error_rate=0, no rate limit, capacity 7, seed=0>"


def test_below_the_calls_in_flight_a_lowered_capacity_says_when_enough_of_them_have_ended() -> None:
    # Calls of 0.3 s started at 0.0, 0.1 and 0.2 end at 0.3, 0.4 and 0.5.
    api = workloads.SimulatedCarAPI(latency=lambda rng: 0.3, capacity=3)

    async def main() -> list[float | None]:
        calls = []
        for car in range(3):
            calls.append(asyncio.ensure_future(api(car)))
            await asyncio.sleep(0.1)
        api.capacity = 1  # at 0.3: the first call ends now, two remain until 0.4 and 0.5
        waits = []
        for car in (10, 11):
            try:
                await api(car)
            except workloads.RateLimited as error:
                waits.append(error.retry_after)
            await asyncio.sleep(0.15)  # 0.45: one call remains, until 0.5
        await asyncio.gather(*calls)
        return waits

    # One slot under a capacity of 1 means every call in flight has ended: at 0.5.
    assert sweeps.run_virtual(main) == [pytest.approx(0.2), pytest.approx(0.05)]
    assert api.over_capacity == 2


def test_a_call_turned_away_over_capacity_takes_no_token_from_the_rate_limiter() -> None:
    # One call at a time, and a bucket of two tokens refilled at one a second.
    api = workloads.SimulatedCarAPI(latency=lambda rng: 0.3, capacity=1, rate_limit=1, burst=2)

    async def main() -> list[str]:
        async def call(car: int) -> str:
            try:
                await api(car)
            except workloads.RateLimited as error:
                return "capacity" if "over capacity" in str(error) else "rate"
            return "ok"

        first = asyncio.ensure_future(call(0))  # 0.0 to 0.3: a token taken, one left
        await asyncio.sleep(0.1)
        outcomes = [await call(1)]  # over capacity: no token taken
        await first
        outcomes += [await call(2), await call(3)]  # at 0.3, then 0.6: the second token, then 0.6 of one
        return outcomes

    assert sweeps.run_virtual(main) == ["capacity", "ok", "rate"]
    assert (api.over_capacity, api.rate_limited, api.answered) == (1, 1, 2)
