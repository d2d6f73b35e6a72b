"""Seeded workloads: same seed, same job; traffic streams arrive on time; slow callbacks."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

import pytest

import pcmodel
from pcmodel import sweeps, workloads
from pcmodel.records import TaskResult


def test_seed_job_reproduces_the_write_up() -> None:
    job = workloads.seed_job()
    assert len(job) == 10
    assert job.sequential_time == pytest.approx(10.690327506258539)
    summary = pcmodel.run_job(job.function, job.params, workers=5, clock="virtual")
    assert summary.elapsed == pytest.approx(2.6826728847906676)
    assert [r.value for r in summary.results or ()] == [n * n for n in range(10)]


@pytest.mark.parametrize("make", [workloads.seed_job, workloads.uniform, workloads.car_prices])
def test_same_seed_gives_the_same_job(make: object) -> None:
    assert callable(make)
    assert make(12, seed=3) == make(12, seed=3)
    assert make(12, seed=3).durations != make(12, seed=4).durations


def test_car_prices_fail_at_the_requested_rate() -> None:
    job = workloads.car_prices(400, seed=1, failure_rate=0.25)
    failing = sum(1 for car in job.params if car["fails"])
    assert 70 <= failing <= 130
    summary = pcmodel.run_job(job.function, job.params, workers=50, clock="virtual")
    assert summary.failed == failing
    errors = {type(r.error) for r in summary.results or () if not r.ok}
    assert errors == {workloads.PriceAPIError}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_rate": 1.5}, "failure_rate must be between 0 and 1"),
        ({"latency": (2.0, 1.0)}, "latency must be"),
    ],
)
def test_car_prices_rejects_bad_knobs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        workloads.car_prices(5, **kwargs)  # type: ignore[arg-type]


def test_steady_traffic_arrives_evenly() -> None:
    traffic = workloads.steady(5, interval=0.5, seconds=(0.1, 0.1), payload_bytes=10)
    assert traffic.arrivals == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert traffic.durations == pytest.approx((0.1,) * 5)
    assert traffic.span == 2.0
    assert len(traffic) == 5


def test_bursty_traffic_arrives_in_bursts_at_the_same_average_rate() -> None:
    traffic = workloads.bursty(7, size=3, pause=2.0)
    assert traffic.arrivals == (0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 4.0)
    steady, bursty = workloads.steady(200), workloads.bursty(200)
    assert len(steady) / (steady.span + 0.1) == pytest.approx(len(bursty) / (bursty.span + 2.0))


def test_traffic_source_yields_each_request_at_its_arrival_time() -> None:
    traffic = workloads.bursty(5, size=2, pause=1.5, payload_bytes=3)
    seen: list[tuple[float, int, int]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async for request in traffic.source():
            seen.append((loop.time(), request.number, len(request.payload)))

    with asyncio.Runner(loop_factory=pcmodel.VirtualTimeLoop) as runner:
        runner.run(main())
    assert seen == [(0.0, 0, 3), (0.0, 1, 3), (1.5, 2, 3), (1.5, 3, 3), (3.0, 4, 3)]


def test_a_late_consumer_gets_the_backlog_at_once() -> None:
    traffic = workloads.steady(4, interval=1.0)
    seen: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async for request in traffic.source():
            seen.append(loop.time())
            if request.number == 0:
                await asyncio.sleep(2.5)  # a producer blocked on a full queue

    with asyncio.Runner(loop_factory=pcmodel.VirtualTimeLoop) as runner:
        runner.run(main())
    assert seen == [0.0, 2.5, 2.5, 3.0]


def test_traffic_latency_counts_from_arrival() -> None:
    traffic = workloads.steady(3, interval=1.0, seconds=(2.0, 2.0))
    summary = pcmodel.run_job(traffic.function, traffic.source(), workers=1, clock="virtual")
    results = summary.results or ()
    assert [r.finished_at - r.params.arrives_at for r in results] == pytest.approx([2.0, 3.0, 4.0])
    assert [r.value for r in results] == [traffic.payload_bytes] * 3


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (workloads.steady, {"interval": 0}, "interval must be > 0"),
        (workloads.bursty, {"pause": -1.0}, "pause must be > 0"),
        (workloads.bursty, {"size": 0}, "size must be >= 1"),
        (workloads.steady, {"seconds": (1.0, 0.5)}, "seconds must be"),
    ],
)
def test_traffic_rejects_bad_knobs(make: object, kwargs: dict[str, object], message: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=message):
        make(10, **kwargs)


def test_traffic_rejects_a_bool_seed() -> None:
    with pytest.raises(TypeError, match="seed must be an int"):
        workloads.steady(3, seed=True)


def _result(task_id: int, finished_at: float) -> TaskResult:
    return TaskResult(task_id, None, None, None, 0, 0.0, 0.0, finished_at)


def test_async_slow_callback_takes_virtual_time_in_the_handler() -> None:
    callback = workloads.slow_callback(0.5)
    job = workloads.seed_job(4)
    summary = pcmodel.run_job(job.function, job.params, workers=4, clock="virtual", on_task_complete=callback)
    windows = callback.windows()
    assert len(windows) == 4
    assert all(end - start == pytest.approx(0.5) for start, end in windows)
    # One handler: the calls never overlap, and the first starts when the first task ends.
    assert all(a[1] <= b[0] + 1e-12 for a, b in itertools.pairwise(windows))
    first_finish = min(r.finished_at for r in summary.results or ())
    assert windows[0][0] == pytest.approx(first_finish)
    # On the virtual clock the loop's time is the job's time: the raw call times agree.
    raw = [time for call in callback.calls for time in call[2:]]
    assert raw == pytest.approx([time for window in windows for time in window])
    assert summary.elapsed == pytest.approx(windows[-1][1])


def test_blocking_slow_callback_blocks_the_loop() -> None:
    callback = workloads.slow_callback(0.02, "blocking")

    async def main() -> float:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        assert callback(_result(0, 0.0)) is None  # ran to the end, synchronously
        after = ticks
        task.cancel()
        return after - before

    assert asyncio.run(main()) == 0
    assert len(callback.calls) == 1


def test_thread_slow_callback_leaves_the_loop_free() -> None:
    callback = workloads.slow_callback(0.05, "thread")

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        awaitable = callback(_result(0, 0.0))
        assert awaitable is not None
        await awaitable
        assert time.monotonic() - started >= 0.05
        task.cancel()
        return ticks

    assert asyncio.run(main()) > 0


def test_slow_callback_windows_are_empty_before_any_call() -> None:
    assert workloads.slow_callback(1.0).windows() == []


@pytest.mark.parametrize(
    ("seconds", "kind", "message"),
    [(-1.0, "async", "seconds must be >= 0"), (1.0, "sync", "kind must be")],
)
def test_slow_callback_rejects_bad_arguments(seconds: float, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        workloads.slow_callback(seconds, kind)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The simulated car-price API and the call log


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


def test_call_log_places_every_attempt_in_its_tasks_window() -> None:
    api = workloads.SimulatedCarAPI(latency=_latency, error_rate=0.3, seed=5)
    log = workloads.CallLog(api)
    retry = pcmodel.Retry(5, on=(*workloads.RETRYABLE_ERRORS, TimeoutError), seed=3)
    summary = pcmodel.run_job(
        log, range(20), workers=4, timeout=0.5, retries=retry, max_per_second=15, burst=2, clock="virtual"
    )
    calls = log.calls(summary)
    results = summary.results or ()
    assert len(calls) == sum(r.attempts for r in results) == len(log.records)
    assert [c.started_at for c in calls] == sorted(c.started_at for c in calls)
    by_task = {r.task_id: r for r in results}
    for call in calls:
        task = by_task[call.task_id]
        assert call.worker == task.worker
        assert task.started_at <= call.started_at <= call.finished_at <= task.finished_at
    for result in results:
        mine = [c for c in calls if c.task_id == result.task_id]
        assert [c.attempt for c in mine] == list(range(1, result.attempts + 1))
        assert mine[-1].finished_at == result.finished_at
        assert mine[-1].outcome == ("ok" if result.ok else "failed")
    cut = [c for c in calls if c.outcome == "cut off"]
    assert cut
    assert {round(c.finished_at - c.started_at, 9) for c in cut} == {0.5}
    assert {c.outcome for c in calls} <= {"ok", "failed", "cut off"}
    # The first task's first call starts the moment its worker takes it: exact alignment.
    assert calls[0].started_at == results[0].started_at == 0.0


def test_call_log_tells_tasks_with_the_same_params_apart_by_time() -> None:
    log = workloads.CallLog(workloads.simulated_call)
    call = workloads.SimulatedCall(1, 1.0)
    summary = pcmodel.run_job(log, [call, call, call], workers=1, clock="virtual")
    calls = log.calls(summary)
    assert [(c.task_id, c.attempt, c.started_at) for c in calls] == [(0, 1, 0.0), (1, 1, 1.0), (2, 1, 2.0)]


def test_call_log_needs_the_trace() -> None:
    log = workloads.CallLog(workloads.simulated_call)
    summary = pcmodel.run_job(log, workloads.seed_job(3).params, clock="virtual", trace=False)
    with pytest.raises(ValueError, match="trace=True"):
        log.calls(summary)
    assert (
        workloads.CallLog(workloads.simulated_call).calls(
            pcmodel.run_job(workloads.simulated_call, [], clock="virtual")
        )
        == []
    )
