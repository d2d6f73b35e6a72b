"""The car-price server against hostile clients: idle and slow connections, malformed requests.

Every wait here is bounded (`asyncio.timeout`, a bounded loop), so a regression fails instead
of hanging; no assertion is about how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from pcmodel.carapi import CarAPIServer, CarPriceClient, car_info

T = TypeVar("T")

BOUND = 30.0  # seconds: a bound that only a regression reaches, never a timing assertion
IDLE = 0.2  # seconds: the idle_timeout of the servers here


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    async with asyncio.timeout(BOUND):
        return await reader.read()


async def exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes on a new connection, return all the server answers before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await read_to_eof(reader)
    finally:
        writer.close()


def head_of(answer: bytes) -> tuple[int, dict[str, str]]:
    """The status and headers (lower-case names) of a raw HTTP answer."""
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {name.lower(): value for name, value in headers.items()}


# -- idle and slow connections --------------------------------------------------------------


def test_a_connection_that_never_sends_a_request_is_closed() -> None:
    async def scenario() -> bytes:
        async with CarAPIServer(idle_timeout=IDLE) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                return await read_to_eof(reader)
            finally:
                writer.close()

    assert run(scenario()) == b""


def test_a_keep_alive_connection_idle_after_its_answer_is_closed() -> None:
    async def scenario() -> bytes:
        async with CarAPIServer(latency=(0, 0), idle_timeout=IDLE) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                writer.write(b"GET /cars/5/price HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive
                return await read_to_eof(reader)
            finally:
                writer.close()

    answer = run(scenario())
    status, headers = head_of(answer)
    assert status == 200
    assert answer.endswith(b'"price": %d, "currency": "EUR"}' % car_info(5)["price"])
    assert headers.get("connection", "").lower() != "close"  # closed for idleness, not per request


def test_a_slowloris_client_trickling_its_headers_is_cut_off() -> None:
    header = b"X-Slow: 1\r\n"

    async def scenario() -> bool:
        async with CarAPIServer(idle_timeout=IDLE) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /cars/1/price HTTP/1.1\r\n")
            try:
                # A header byte every 10 ms, never the blank line that ends the request: the
                # server must hang up although bytes keep coming. The loop bounds the test.
                for sent in range(int(BOUND / 0.01)):
                    writer.write(header[sent % len(header) :][:1])
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.01):
                            if await reader.read(1024) == b"":
                                return True
            except ConnectionError:
                return True
            finally:
                writer.close()
            return False

    assert run(scenario()), "the server kept a slowloris connection open"


def test_a_request_served_longer_than_idle_timeout_is_not_cut_short() -> None:
    async def scenario() -> list[int]:
        async with (
            CarAPIServer(latency=(3 * IDLE, 3 * IDLE), idle_timeout=IDLE) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            async with asyncio.timeout(BOUND):
                return list(await asyncio.gather(*(fetch_price(car) for car in range(3))))

    assert run(scenario()) == [car_info(car)["price"] for car in range(3)]


def test_a_keep_alive_connection_serves_request_after_request() -> None:
    async def read_answer(reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(BOUND):
            head = await reader.readuntil(b"\r\n\r\n")
            return await reader.readexactly(int(head_of(head)[1]["content-length"]))

    async def scenario() -> list[bytes]:
        async with CarAPIServer(latency=(0, 0), idle_timeout=BOUND) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                bodies = []
                for car in range(3):
                    writer.write(b"GET /cars/%d/price HTTP/1.1\r\nHost: x\r\n\r\n" % car)
                    bodies.append(await read_answer(reader))
                return bodies
            finally:
                writer.close()

    bodies = run(scenario())
    assert [b'"price": %d,' % car_info(car)["price"] in body for car, body in enumerate(bodies)] == [True] * 3


# -- malformed requests and the Server header -----------------------------------------------

MALFORMED = {
    "tls-handshake": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",
    "bad-request-line": b"GET\r\n\r\n",
    "bad-header": b"GET /health HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    "bad-version": b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    "header-too-large": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "newlines-in-path": b"GET /a\nb\r\nc HTTP/1.1\r\n\r\n",
    "terminal-escape": b"G\x1b[2J\x1b[31mET / HTTP/1.1\r\n\r\n",
    "random-bytes": random.Random(3).randbytes(300) + b"\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_is_answered_4xx_and_logged_in_one_line(
    request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> bytes:
        async with CarAPIServer() as server:
            return await exchange(server.port, request_bytes)

    with caplog.at_level(logging.DEBUG):
        answer = run(scenario())
    status, headers = head_of(answer)
    assert 400 <= status < 500
    assert headers["server"] == "pcmodel-carapi"
    assert answer.split(b"\r\n\r\n", 1)[1].startswith(b'{"error": "malformed request: ')
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    line = warnings[0].getMessage()
    assert line.startswith(f"malformed request from 127.0.0.1: {status} ")
    assert line.isprintable()  # no newline to forge a second line, no terminal escape
    assert len(line) < 300
    assert not any(record.exc_info for record in caplog.records)  # no traceback at any level


def test_each_malformed_request_logs_its_own_line(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with CarAPIServer() as server:
            for request_bytes in MALFORMED.values():
                await exchange(server.port, request_bytes)

    with caplog.at_level(logging.WARNING):
        run(scenario())
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == len(MALFORMED)
    assert all(line.startswith("malformed request from 127.0.0.1: 4") for line in lines)


REQUESTS = {
    "health": b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "price": b"GET /cars/3/price HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "head": b"HEAD /cars/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "unknown-car": b"GET /cars/x/price HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "unknown-path": b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "post": b"POST /cars/3/price HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "malformed": b"GET\r\n\r\n",
}


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    list(zip(REQUESTS.values(), [200, 200, 200, 404, 404, 405, 400], strict=True)),
    ids=REQUESTS.keys(),
)
def test_no_answer_names_the_python_or_aiohttp_version(request_bytes: bytes, status: int) -> None:
    async def scenario() -> bytes:
        async with CarAPIServer(latency=(0, 0)) as server:
            return await exchange(server.port, request_bytes)

    answer = run(scenario())
    assert head_of(answer)[0] == status
    assert head_of(answer)[1]["server"] == "pcmodel-carapi"
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"python" not in head
    assert b"aiohttp" not in head


def test_a_bug_in_a_handler_is_a_500_that_still_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def broken_latency(rng: random.Random) -> float:
        raise ZeroDivisionError("a bug in the latency function")

    async def scenario() -> bytes:
        async with CarAPIServer(latency=broken_latency) as server:
            return await exchange(server.port, REQUESTS["price"])

    with caplog.at_level(logging.ERROR):
        answer = run(scenario())
    assert head_of(answer)[0] == 500
    assert head_of(answer)[1]["server"] == "pcmodel-carapi"
    # A bug is not a hostile client: its traceback is what the person fixing it needs.
    errors = [record for record in caplog.records if record.exc_info]
    assert len(errors) == 1
    exc_info = errors[0].exc_info
    assert exc_info is not None
    assert isinstance(exc_info[1], ZeroDivisionError)


# -- the knobs ------------------------------------------------------------------------------


def test_localhost_is_accepted_and_binds_the_ipv4_loopback_address() -> None:
    async def scenario() -> tuple[str, int]:
        async with (
            CarAPIServer(host="localhost", latency=(0, 0)) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            return server.url, await fetch_price(9)

    url, price = run(scenario())
    assert url.startswith("http://127.0.0.1:")
    assert price == car_info(9)["price"]


@pytest.mark.parametrize("host", ["LOCALHOST", "localhost.", "::1", "127.0.0.2"])
def test_other_spellings_of_loopback_are_accepted(host: str) -> None:
    assert CarAPIServer(host=host).host in {"127.0.0.1", "::1", "127.0.0.2"}


@pytest.mark.parametrize(
    ("knobs", "error", "message"),
    [
        ({"latency": (math.inf, math.inf)}, ValueError, r"latency bounds must be finite numbers of seconds"),
        ({"latency": (0, math.nan)}, ValueError, r"latency bounds must be finite numbers of seconds"),
        ({"latency": (0, 10**400)}, ValueError, r"latency bounds must be finite numbers of seconds"),
        ({"latency": (-1, 1)}, ValueError, r"latency must be \(low, high\) with 0 <= low <= high"),
        ({"latency": (2, 1)}, ValueError, r"latency must be \(low, high\) with 0 <= low <= high"),
        ({"idle_timeout": 0}, ValueError, r"idle_timeout must be a finite number of seconds > 0, got 0"),
        ({"idle_timeout": -1}, ValueError, r"idle_timeout must be a finite number of seconds > 0"),
        ({"idle_timeout": math.inf}, ValueError, r"idle_timeout must be a finite number of seconds > 0"),
        ({"idle_timeout": math.nan}, ValueError, r"idle_timeout must be a finite number of seconds > 0"),
        ({"idle_timeout": "5"}, TypeError, r"idle_timeout must be a number of seconds, got '5'"),
        ({"idle_timeout": True}, TypeError, r"idle_timeout must be a number of seconds"),
        ({"shutdown_timeout": math.inf}, ValueError, r"shutdown_timeout must be a finite number"),
        ({"shutdown_timeout": -0.5}, ValueError, r"shutdown_timeout must be a finite number"),
        ({"rate_limit": 1e-320}, ValueError, r"rate_limit must be >= 1/86400 requests per second"),
        ({"rate_limit": 1, "burst": 10**30}, ValueError, r"burst must be <= 1000000000"),
    ],
)
def test_knobs_no_server_can_honour_are_refused(
    knobs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CarAPIServer(**knobs)
