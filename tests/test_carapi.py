"""The car-price API and its client, over real sockets on loopback (no HTTP mocks)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

import pcmodel
from pcmodel.carapi import (
    RETRYABLE_ERRORS,
    CarAPIError,
    CarAPIServer,
    CarPriceClient,
    RateLimited,
    ServerError,
    car_info,
    serve_main,
)
from pcmodel.records import JobSummary, TaskResult

_T = TypeVar("_T")

FAST = (0.0, 0.005)  # seconds: latency for tests that only count outcomes


def run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coroutine)


async def price_job(
    error_rate: float, cars: int, *, seed: int, workers: int = 50, params: Any = None
) -> tuple[JobSummary, list[TaskResult], pcmodel.carapi.ServerStatistics]:
    """Price `cars` cars on a fresh server; return the summary, the callback's results, the stats."""
    seen: list[TaskResult] = []
    async with (
        CarAPIServer(latency=FAST, error_rate=error_rate, seed=seed) as server,
        CarPriceClient(server.url) as fetch_price,
    ):
        summary = await pcmodel.run_job_async(
            fetch_price,
            range(cars) if params is None else params,
            workers=workers,
            on_task_complete=seen.append,
        )
        return summary, seen, server.statistics()


def open_sockets() -> int:
    """Sockets this process holds, from /proc (Linux)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # the fd iterdir itself used, closed since
            count += os.readlink(fd).startswith("socket:")
    return count


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts sockets in /proc")


# -- every car gets exactly one outcome --------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 7, 50])
def test_every_car_is_priced_or_reported_failed_exactly_once(workers: int) -> None:
    summary, seen, stats = run(price_job(0.2, 150, seed=3, workers=workers))

    assert collections.Counter(r.task_id for r in seen) == collections.Counter(range(150))
    assert summary.tasks == 150
    for result in seen:
        assert result.params == result.task_id
        if result.ok:
            assert result.value == car_info(result.params)["price"]
        else:
            assert isinstance(result.error, ServerError)
            assert result.error.status == 500
            assert result.error.car_id == result.params
            assert result.error.retryable
    # What the job saw is what the server did: one request per car, no more.
    assert stats.requests == 150
    assert stats.answered == summary.succeeded
    assert stats.errors_sent == summary.failed > 0
    assert stats.rate_limited == 0
    assert stats.max_in_flight <= workers


def test_cars_can_be_given_as_mappings_with_an_id() -> None:
    cars: list[dict[str, Any]] = [{"id": car_id, "owner": f"owner {car_id}"} for car_id in (5, 9, 1_000_000)]
    summary, seen, _ = run(price_job(0.0, 0, seed=0, params=cars))

    assert summary.succeeded == 3
    assert {r.params["id"]: r.value for r in seen} == {c["id"]: car_info(c["id"])["price"] for c in cars}


def test_the_client_fetches_a_cars_details_as_the_catalogue_has_them() -> None:
    async def details() -> dict[str, Any]:
        async with CarAPIServer(latency=FAST) as server, CarPriceClient(server.url) as client:
            return await client.car(42)

    assert run(details()) == car_info(42)


def test_the_catalogue_is_the_same_in_every_run() -> None:
    car = car_info(7)
    assert car == car_info(7)
    assert set(car) == {"id", "model", "year", "mileage_km", "price", "currency"}
    assert car["price"] >= 500
    assert len({car_info(i)["model"] for i in range(100)}) > 5


# -- the error rate -------------------------------------------------------------------------


def test_error_rate_is_about_as_configured() -> None:
    summary, _, stats = run(price_job(0.25, 400, seed=11))

    # 400 draws at 0.25: 100 expected, standard deviation 8.7. The seed makes it exact.
    assert 60 <= summary.failed <= 140
    assert stats.errors_sent == summary.failed


def test_the_same_seed_fails_the_same_cars_whatever_the_arrival_order() -> None:
    def failed_cars(seed: int, workers: int) -> set[int]:
        _, seen, _ = run(price_job(0.3, 120, seed=seed, workers=workers))
        return {r.task_id for r in seen if not r.ok}

    first = failed_cars(5, 50)
    assert first
    assert failed_cars(5, 3) == first
    assert failed_cars(6, 50) != first


@pytest.mark.parametrize(("error_rate", "failed"), [(0.0, 0), (1.0, 60)])
def test_error_rate_bounds_fail_none_or_all(error_rate: float, failed: int) -> None:
    summary, _, stats = run(price_job(error_rate, 60, seed=0))
    assert summary.failed == stats.errors_sent == failed


def test_a_retry_can_succeed_where_the_first_call_failed() -> None:
    async def retry_failed() -> tuple[int, int]:
        async with (
            CarAPIServer(latency=FAST, error_rate=0.5, seed=2) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            first = await pcmodel.run_job_async(fetch_price, range(40), workers=10)
            assert first.results is not None
            failed = [r.params for r in first.results if not r.ok]
            second = await pcmodel.run_job_async(fetch_price, failed, workers=10)
            return len(failed), second.succeeded

    failed, recovered = run(retry_failed())
    assert failed > 0
    assert recovered > 0


# -- the rate limit -------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after_headers() -> None:
    async def three_requests() -> list[tuple[int, dict[str, str], Any]]:
        async with CarAPIServer(latency=(0, 0), rate_limit=5, burst=2) as server:
            answers = []
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.get(f"{server.url}/cars/1/price") as response:
                        answers.append((response.status, dict(response.headers), await response.json()))
            assert server.statistics().rate_limited == 1
            return answers

    (s1, _, _), (s2, _, _), (s3, headers, body) = run(three_requests())
    assert (s1, s2, s3) == (200, 200, 429)
    # One token every 0.2 s: at most 200 ms to wait, rounded up to a whole second for HTTP.
    assert headers["Retry-After"] == "1"
    assert 0 < int(headers["Retry-After-Ms"]) <= 200
    assert body["error"] == "rate limit exceeded"


def test_a_full_bucket_lets_exactly_the_burst_through() -> None:
    # One token every 100 s: the 30 concurrent calls all meet the bucket as it started.
    async def flood() -> tuple[JobSummary, pcmodel.carapi.ServerStatistics]:
        async with (
            CarAPIServer(latency=(0, 0), rate_limit=0.01, burst=4) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            summary = await pcmodel.run_job_async(fetch_price, range(30), workers=30)
            return summary, server.statistics()

    summary, stats = run(flood())
    assert summary.succeeded == stats.answered == 4
    assert summary.failed == stats.rate_limited == 26
    assert summary.results is not None
    for result in summary.results:
        if not result.ok:
            error = result.error
            assert isinstance(error, RateLimited)
            assert error.status == 429
            assert error.retryable
            assert error.retry_after is not None
            assert 0 < error.retry_after <= 100
            assert f"car {result.params}: the price API answered 429" in str(error)


async def honouring_retry_after(
    fetch_price: Callable[[int], Awaitable[int]], attempts: list[int]
) -> Callable[[int], Awaitable[int]]:
    """Wrap `fetch_price` so a 429 waits the server's Retry-After and tries again."""

    async def fetch(car: int) -> int:
        while True:
            attempts.append(car)
            try:
                return await fetch_price(car)
            except RateLimited as error:
                wait = error.retry_after
            assert wait is not None
            await asyncio.sleep(wait)

    return fetch


@pytest.mark.parametrize(("rate", "burst"), [(100.0, 1), (80.0, 10)])
def test_honouring_retry_after_prices_every_car_within_the_rate(rate: float, burst: int) -> None:
    async def job() -> tuple[JobSummary, pcmodel.carapi.ServerStatistics, list[int]]:
        attempts: list[int] = []
        async with (
            CarAPIServer(latency=(0, 0), rate_limit=rate, burst=burst) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            fetch = await honouring_retry_after(fetch_price, attempts)
            summary = await pcmodel.run_job_async(fetch, range(40), workers=20)
            return summary, server.statistics(), attempts

    summary, stats, attempts = run(job())
    assert summary.succeeded == 40
    assert stats.answered == 40
    assert stats.rate_limited == len(attempts) - 40 > 0
    # The token bucket's promise: in any 1-second window, at most burst + rate requests.
    assert stats.peak_per_second <= burst + rate


def test_reset_statistics_zeroes_the_counters_and_refills_the_bucket() -> None:
    async def twice() -> tuple[int, int, int]:
        async with (
            CarAPIServer(latency=(0, 0), rate_limit=0.01, burst=2) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            first = await pcmodel.run_job_async(fetch_price, range(5), workers=5)
            before = server.statistics().requests
            server.reset_statistics()
            assert server.statistics().requests == 0
            second = await pcmodel.run_job_async(fetch_price, range(5), workers=5)
            return before, first.succeeded, second.succeeded

    assert run(twice()) == (5, 2, 2)


# -- other answers --------------------------------------------------------------------------


def test_an_unknown_car_is_a_404_that_is_not_worth_retrying() -> None:
    async def unknown() -> BaseException | None:
        async with (
            CarAPIServer(latency=FAST) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            summary = await pcmodel.run_job_async(fetch_price, [-1, 10**10])
            assert server.statistics().not_found == 2
            assert summary.results is not None
            return summary.results[0].error

    error = run(unknown())
    assert type(error) is CarAPIError
    assert error.status == 404
    assert not error.retryable
    assert not isinstance(error, RETRYABLE_ERRORS)


def test_a_refused_connection_raises_a_retryable_error() -> None:
    async def refused() -> BaseException | None:
        server = CarAPIServer()
        await server.start()
        url = server.url
        await server.stop()
        async with CarPriceClient(url) as fetch_price:
            summary = await pcmodel.run_job_async(fetch_price, [1])
        assert summary.results is not None
        return summary.results[0].error

    error = run(refused())
    assert isinstance(error, aiohttp.ClientConnectionError)
    assert isinstance(error, RETRYABLE_ERRORS)


def test_the_stats_and_health_endpoints_are_not_counted() -> None:
    async def probe() -> tuple[dict[str, Any], dict[str, Any]]:
        async with CarAPIServer(latency=FAST, error_rate=1.0) as server:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{server.url}/health") as response:
                    health = await response.json()
                async with session.get(f"{server.url}/stats") as response:
                    stats = await response.json()
            return health, stats

    health, stats = run(probe())
    assert health == {"status": "ok"}
    assert stats["requests"] == 0
    assert stats["errors_sent"] == 0


# -- lifecycle ------------------------------------------------------------------------------


@needs_proc
def test_server_and_client_stop_cleanly_leaving_no_task_or_socket() -> None:
    async def scenario() -> None:
        tasks_before = asyncio.all_tasks()
        sockets_before = open_sockets()
        async with (
            CarAPIServer(latency=FAST, error_rate=0.1) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            summary = await pcmodel.run_job_async(fetch_price, range(100), workers=25)
            assert summary.tasks == 100
            assert open_sockets() > sockets_before
            url = server.url
        assert not server.running
        uptime = server.statistics().uptime
        await asyncio.sleep(0.01)
        assert server.statistics().uptime == uptime  # frozen at the stop
        assert asyncio.all_tasks() == tasks_before
        assert open_sockets() == sockets_before
        # Nothing listens on the port any more.
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"{url}/health")

    run(scenario())


@needs_proc
def test_stop_with_calls_in_flight_ends_them_and_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        tasks_before = asyncio.all_tasks()
        sockets_before = open_sockets()
        server = CarAPIServer(latency=(30, 30), shutdown_timeout=0.05)
        await server.start()
        async with CarPriceClient(server.url) as fetch_price:
            calls = [asyncio.create_task(fetch_price(car)) for car in range(3)]
            for _ in range(1000):  # a bound, not a timing assertion
                if server.statistics().in_flight == 3:
                    break
                await asyncio.sleep(0.01)
            assert server.statistics().in_flight == 3
            await server.stop()
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, aiohttp.ClientConnectionError) for o in outcomes), outcomes
        assert server.statistics().in_flight == 0
        await server.stop()  # a second stop is harmless
        assert asyncio.all_tasks() == tasks_before
        assert open_sockets() == sockets_before

    run(scenario())


def test_the_server_can_be_started_and_stopped_by_hand_and_restarted() -> None:
    async def scenario() -> None:
        server = CarAPIServer(latency=FAST)
        assert "stopped" in repr(server)
        with pytest.raises(RuntimeError, match="not running"):
            _ = server.url
        await server.start()
        with pytest.raises(RuntimeError, match="already running"):
            await server.start()
        async with CarPriceClient(server.url) as fetch_price:
            assert await fetch_price(3) == car_info(3)["price"]
        await server.stop()
        async with server, CarPriceClient(server.url) as fetch_price:
            assert await fetch_price(4) == car_info(4)["price"]

    run(scenario())


def test_the_client_must_be_opened_before_use_and_on_the_jobs_loop() -> None:
    client = CarPriceClient("http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match=r"async with CarPriceClient\(url\) as fetch_price"):
        run(client(1))

    async def open_then_virtual() -> JobSummary:
        async with CarPriceClient("http://127.0.0.1:9") as fetch_price:
            return await pcmodel.run_job_async(fetch_price, [1], clock="virtual")

    summary = run(open_then_virtual())
    assert summary.results is not None
    error = summary.results[0].error
    assert isinstance(error, RuntimeError)
    assert "another event loop" in str(error)


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knobs", "error", "message"),
    [
        ({"error_rate": 1.5}, ValueError, r"error_rate must be between 0 and 1, got 1.5"),
        ({"error_rate": "0.1"}, TypeError, r"error_rate must be a number"),
        ({"latency": (0.2, 0.1)}, ValueError, r"latency must be \(low, high\) with 0 <= low <= high"),
        ({"latency": 0.1}, TypeError, r"latency must be a \(low, high\) tuple"),
        ({"rate_limit": 0}, ValueError, r"rate_limit must be > 0 requests per second, got 0"),
        ({"burst": 3}, ValueError, r"burst needs a rate_limit"),
        ({"rate_limit": 10, "burst": 0}, ValueError, r"burst must be >= 1, got 0"),
        ({"host": "0.0.0.0"}, ValueError, r"host must be 'localhost' or a loopback address"),
        ({"host": "example.com"}, ValueError, r"host must be 'localhost' or a loopback address"),
        ({"host": "localhost.example.com"}, ValueError, r"host must be 'localhost' or a loopback address"),
        ({"port": 70000}, ValueError, r"port must be <= 65535"),
        ({"seed": 1.5}, TypeError, r"seed must be an int"),
    ],
)
def test_bad_knobs_are_refused_before_anything_starts(
    knobs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CarAPIServer(**knobs)


def test_a_latency_function_draws_from_the_seeded_generator() -> None:
    async def job() -> JobSummary:
        async with (
            CarAPIServer(latency=lambda rng: rng.expovariate(1000)) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            return await pcmodel.run_job_async(fetch_price, range(20), workers=5)

    assert run(job()).succeeded == 20


@pytest.mark.parametrize("car", ["7", 7.0, True, {"model": "Golf"}])
def test_the_client_refuses_a_car_without_an_int_id(car: Any) -> None:
    async def call() -> int:
        async with CarPriceClient("http://127.0.0.1:9") as fetch_price:
            return await fetch_price(car)

    with pytest.raises(TypeError, match="car must be an int id or a mapping with an 'id' key"):
        run(call())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"url": "127.0.0.1:80"}, ValueError, r"url must start with 'http://'"),
        ({"url": "http://x", "timeout": 0}, ValueError, r"timeout must be > 0 seconds or None"),
        ({"url": "http://x", "connections": -1}, ValueError, r"connections must be >= 0"),
    ],
)
def test_bad_client_arguments_are_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CarPriceClient(**kwargs)


# -- the command line and the import --------------------------------------------------------


def test_serve_main_refuses_a_bad_knob_with_the_option_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--error-rate", "2"])
    assert exit_info.value.code == 2
    assert "--error-rate must be between 0 and 1, got 2.0" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_api_prints_its_url_serves_and_stops_on_ctrl_c(stop_signal: signal.Signals) -> None:
    command = "import sys; from pcmodel.carapi import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    argv = [sys.executable, "-c", command, "--latency", "0", "0.01", "--error-rate", "0", "--seed", "4"]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        stdout = process.stdout
        assert stdout is not None

        # A thread reads the lines, so a silent server fails the test instead of hanging it.
        def read_lines() -> None:
            for line in stdout:
                lines.put(line)

        pump = threading.Thread(target=read_lines, daemon=True)
        pump.start()
        try:
            first = lines.get(timeout=60)
            assert first.startswith("car-price API on http://127.0.0.1:")
            url = first.split(" on ", 1)[1].strip()
            assert "Ctrl-C to stop" in lines.get(timeout=60)
            with urllib.request.urlopen(f"{url}/cars/8/price", timeout=30) as response:
                assert json.load(response) == {"id": 8, "price": car_info(8)["price"], "currency": "EUR"}
            process.send_signal(stop_signal)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            pump.join(timeout=60)
        assert process.stderr is not None
        err = process.stderr.read()
    # Ctrl-C is an interrupt (128 + SIGINT, one line on stderr); SIGTERM is a requested stop.
    if stop_signal == signal.SIGINT:
        assert (process.returncode, err) == (130, "pcmodel serve-api: interrupted\n")
    else:
        assert (process.returncode, err) == (0, "")
    assert lines.get_nowait().startswith("stopped: 1 requests (1 answered")


def test_serve_api_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_main(["--port", str(port)]) == 1
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def test_import_pcmodel_does_not_import_aiohttp() -> None:
    code = "import sys, pcmodel; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
