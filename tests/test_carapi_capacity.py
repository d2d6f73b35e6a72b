"""The car-price server's capacity: 429 above K requests in flight, and K changed while it serves."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pytest

import pcmodel
from pcmodel.carapi import CarAPIServer, CarPriceClient, RateLimited, ServerStatistics, serve_main
from pcmodel.records import JobSummary
from tests._command import BOUND, Command


async def until_in_flight(server: CarAPIServer, count: int) -> None:
    """Wait (bounded) until the server serves `count` requests."""
    async with asyncio.timeout(BOUND):
        while server.statistics().in_flight != count:  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.001)


async def two_in_flight(server: CarAPIServer, session: aiohttp.ClientSession) -> list[asyncio.Task[int]]:
    """Send two car requests and wait until the server serves both; the futures give their statuses."""

    async def get(car: int) -> int:
        async with session.get(f"{server.url}/cars/{car}/price") as response:
            return response.status

    served = [asyncio.ensure_future(get(car)) for car in (1, 2)]
    await until_in_flight(server, 2)
    return served


def test_a_request_over_capacity_is_answered_429_at_once_with_the_wait_until_a_slot_frees() -> None:
    async def three_requests() -> tuple[int, dict[str, str], Any, ServerStatistics]:
        async with CarAPIServer(latency=(0.5, 0.5), capacity=2) as server, aiohttp.ClientSession() as session:
            served = await two_in_flight(server, session)
            async with session.get(f"{server.url}/cars/3/price") as response:
                status, headers, body = response.status, dict(response.headers), await response.json()
            assert await asyncio.gather(*served) == [200, 200]
            return status, headers, body, server.statistics()

    status, headers, body, stats = asyncio.run(three_requests())
    assert status == 429
    # Both requests end within 0.5 s of the refusal: a whole second for HTTP, the rest exact.
    assert headers["Retry-After"] == "1"
    assert 0 < int(headers["Retry-After-Ms"]) <= 500
    assert body["error"] == "over capacity: 2 requests in flight"
    assert 0 < body["retry_after"] <= 0.5
    assert (stats.requests, stats.answered, stats.over_capacity, stats.rate_limited) == (3, 2, 1, 0)
    assert stats.admitted == 2
    assert stats.max_in_flight == 2
    assert "1 over capacity" in str(stats)
    assert stats.as_dict()["over_capacity"] == 1


@pytest.mark.parametrize(("workers", "capacity"), [(12, 3), (4, 4)])
def test_a_job_meets_429s_only_above_the_capacity(workers: int, capacity: int) -> None:
    async def job() -> tuple[JobSummary, ServerStatistics]:
        async with (
            CarAPIServer(latency=(0.0, 0.01), capacity=capacity) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            summary = await pcmodel.run_job_async(fetch_price, range(80), workers=workers)
            return summary, server.statistics()

    summary, stats = asyncio.run(job())
    assert stats.max_in_flight <= capacity
    assert summary.failed == stats.over_capacity
    assert summary.succeeded == stats.answered
    if workers <= capacity:
        assert summary.failed == 0
    for result in summary.results or ():
        if not result.ok:
            error = result.error
            assert isinstance(error, RateLimited)
            assert error.status == 429
            assert error.retry_after is not None
            assert 0 < error.retry_after <= 0.01 + 0.001  # one latency at most, 1 ms at least
            assert f"over capacity: {capacity} requests in flight" in str(error)


def test_a_job_whose_capacity_drops_mid_job_keeps_to_the_new_one_once_the_calls_in_flight_end() -> None:
    async def job() -> tuple[JobSummary, ServerStatistics, list[int]]:
        retry = pcmodel.Retry(10_000, on=(RateLimited,), backoff=0.0, jitter=0.0)
        peaks: list[int] = []
        async with (
            CarAPIServer(latency=(0.0, 0.01), capacity=8) as server,
            CarPriceClient(server.url) as fetch_price,
        ):

            def on_result(result: pcmodel.TaskResult) -> None:
                if result.task_id == 40:
                    server.capacity = 2
                elif server.capacity == 2 and not peaks and server.statistics().in_flight <= 2:
                    # The calls admitted under the old capacity have ended: count afresh.
                    peaks.append(server.statistics().max_in_flight)
                    server.reset_statistics()

            summary = await pcmodel.run_job_async(
                fetch_price, range(200), workers=8, retries=retry, on_task_complete=on_result
            )
            return summary, server.statistics(), peaks

    summary, stats, peaks = asyncio.run(job())
    assert summary.succeeded == 200
    assert peaks
    assert stats.max_in_flight <= 2
    assert stats.over_capacity > 0


def put(url: str, body: bytes, method: str = "PUT") -> tuple[int, dict[str, Any], dict[str, str]]:
    """Send `body` to `url` (blocking, bounded); return the status, the JSON answer, the headers."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=BOUND) as response:
            return response.status, json.load(response), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error), dict(error.headers)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"capacity": 0}', "capacity must be >= 1 request in flight (None: no limit), got 0"),
        (b'{"capacity": -3}', "capacity must be >= 1 request in flight"),
        (b'{"capacity": 2.5}', "capacity must be an int number of requests in flight or None, got 2.5"),
        (b'{"capacity": true}', "capacity must be an int number of requests in flight or None, got True"),
        (b'{"capacity": "5"}', "capacity must be an int number of requests in flight or None, got '5'"),
        (b'{"capacity": 1e999}', "capacity must be an int number of requests in flight or None, got inf"),
        (b'{"capacity": NaN}', "capacity must be an int number of requests in flight or None, got nan"),
        (b'{"capacity": 1' + b"0" * 400 + b"}", "capacity must be <= 1000000000"),
        (b'{"limit": 5}', 'the body must be a JSON object such as {"capacity": 5}'),
        (b"5", 'the body must be a JSON object such as {"capacity": 5}'),
        (b"", 'the body must be a JSON object such as {"capacity": 5}'),
        (b"\xff\xfe{", 'the body must be a JSON object such as {"capacity": 5}'),
        (b"[" * 600 + b"]" * 600, "the body must be at most 1024 bytes"),
        (b'{"capacity": 5}' + b" " * 5_000_000, "the body must be at most 1024 bytes"),
    ],
)
def test_put_capacity_refuses_a_bad_body_with_the_reason_and_keeps_the_capacity(
    body: bytes, message: str
) -> None:
    async def refused() -> tuple[int, dict[str, Any], int | None]:
        async with CarAPIServer(capacity=7) as server:
            answer = await asyncio.to_thread(put, f"{server.url}/capacity", body)
            return answer[0], answer[1], server.capacity

    status, answer, capacity = asyncio.run(refused())
    assert status == 400
    assert message in answer["error"]
    assert capacity == 7


def test_the_capacity_is_read_and_changed_over_http_and_in_code() -> None:
    async def change() -> list[Any]:
        async with CarAPIServer(latency=(0, 0)) as server:
            url = f"{server.url}/capacity"
            seen: list[Any] = [await asyncio.to_thread(put, url, b"", "GET")]
            seen.append(await asyncio.to_thread(put, url, b'{"capacity": 3}'))
            seen.append(server.capacity)
            server.capacity = 9
            seen.append(await asyncio.to_thread(put, url, b"", "GET"))
            seen.append(await asyncio.to_thread(put, url, b'{"capacity": null}'))
            seen.append(await asyncio.to_thread(put, url, b"{}", "POST"))
            seen.append(server.statistics().requests)
            with pytest.raises(ValueError, match=r"capacity must be >= 1"):
                server.capacity = 0
            seen.append(repr(server).endswith("no rate limit, seed=0>"))
            return seen

    got, put3, in_code, got9, unlimited, post, requests, no_capacity_repr = asyncio.run(change())
    assert got[:2] == (200, {"capacity": None, "in_flight": 0})
    assert put3[:2] == (200, {"capacity": 3, "in_flight": 0})
    assert in_code == 3
    assert got9[:2] == (200, {"capacity": 9, "in_flight": 0})
    assert unlimited[:2] == (200, {"capacity": None, "in_flight": 0})
    assert post[0] == 405
    assert post[2]["Allow"] == "GET, HEAD, PUT"
    assert requests == 0  # /capacity is not a car request
    assert no_capacity_repr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--capacity", "0"], "--capacity must be >= 1 request in flight"),
        (["--capacity", "-1"], "--capacity must be >= 1 request in flight"),
        (["--capacity", "1" + "0" * 12], "--capacity must be <= 1000000000"),
        (["--capacity", "2.5"], "argument --capacity: invalid int value: '2.5'"),
        (["--capacity"], "argument --capacity: expected one argument"),
    ],
)
def test_serve_api_refuses_a_bad_capacity_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")
def test_serve_api_with_a_capacity_says_so_and_takes_a_new_one_over_http() -> None:
    served = Command("serve-api", "--capacity", "4", "--latency", "0", "0")
    try:
        url = served.line().split(" on ", 1)[1].strip()
        assert f"capacity 4 (PUT {url}/capacity to change it)" in served.line()
        assert put(f"{url}/capacity", b'{"capacity": 2}')[:2] == (200, {"capacity": 2, "in_flight": 0})
        assert put(f"{url}/capacity", b"", "GET")[1]["capacity"] == 2
    finally:
        code, err = served.finish(signal.SIGTERM)
    assert (code, err) == (0, "")
    assert served.line().startswith("stopped: 0 requests")


def test_resetting_the_statistics_with_requests_in_flight_keeps_counting_them() -> None:
    async def reset_mid_flight() -> tuple[ServerStatistics, ServerStatistics]:
        async with CarAPIServer(latency=(0.3, 0.3), capacity=5) as server, aiohttp.ClientSession() as session:
            served = await two_in_flight(server, session)
            server.reset_statistics()
            during = server.statistics()
            assert await asyncio.gather(*served) == [200, 200]
            return during, server.statistics()

    during, after = asyncio.run(reset_mid_flight())
    # The two requests are still served, and counted as such, after the counters went to 0.
    assert (during.requests, during.in_flight, during.max_in_flight) == (0, 2, 2)
    assert (after.in_flight, after.answered) == (0, 2)
