"""The car-price API's server: `CarAPIServer`, an aiohttp app on loopback, and what it saw.

It answers `GET /cars/{id}/price`, `GET /cars/{id}`, `GET /stats`, `GET /health` and
`GET`/`PUT /capacity` on the caller's event loop, slow, flaky, rate-limited and of limited
capacity on purpose: each car request meets the capacity and the token bucket, then waits the
latency drawn for it and fails or not, by the rules shared with the twin on the virtual clock
(`pcmodel/_carapi_shared.py`). `ServerStatistics` is its snapshot of what it saw. The
connections themselves (idle deadline, malformed requests) are in
`pcmodel/_carapi_connection.py`. Part of `pcmodel.carapi`; needs aiohttp.

About 500 lines, and still one concern: the server class with its endpoints, the checks of
its own knobs (host, port, timeouts) and the statistics record only it fills.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import hdrs, web

from pcmodel._carapi_connection import SERVER_NAME, Server, serving
from pcmodel._carapi_shared import (
    DEFAULT_LATENCY,
    MAX_CAR_ID,
    InFlight,
    Latency,
    TokenBucket,
    car_info,
    check_capacity,
    check_latency,
    check_probability,
    check_rate,
    check_seed,
    is_finite,
    request_fate,
    retry_after_ms,
)
from pcmodel._validate import check_int

__all__ = ["CarAPIServer", "ServerStatistics"]

_RATE_WINDOW: Final = 1.0  # seconds: the window of `ServerStatistics.peak_per_second`
_MAX_CAPACITY_BODY: Final = 1024  # bytes: a `PUT /capacity` body is one small JSON object


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """What the server saw, as a snapshot (see `CarAPIServer.statistics`).

    Times are seconds since the server started (or since its statistics were last reset), on
    the server's loop clock. Only the car endpoints are counted, not `/health` or `/stats`.
    """

    requests: int
    """Requests received on the car endpoints, answered or not yet."""
    answered: int
    """Requests answered 200 with a car or a price."""
    errors_sent: int
    """Requests answered 500 on purpose (the `error_rate` knob)."""
    rate_limited: int
    """Requests answered 429 because the token bucket was empty."""
    over_capacity: int
    """Requests answered 429 because `capacity` requests were already being served."""
    not_found: int
    """Requests for a car id that is not an int from 0 to 10**9 (answered 404)."""
    in_flight: int
    """Requests being served at the time of the snapshot."""
    max_in_flight: int
    """Most requests ever served at once."""
    peak_per_second: int
    """Most requests let through the capacity and the rate limiter (not answered 429) in any
    1-second window; with a rate limit it never exceeds `burst + rate_limit`."""
    first_request_at: float | None
    """When the first counted request arrived; None before any."""
    last_request_at: float | None
    """When the last counted request arrived; None before any."""
    uptime: float
    """Seconds from the start (or the last reset) to the snapshot, or to the stop."""

    @property
    def admitted(self) -> int:
        """Requests let through the capacity and the rate limiter: not answered 429."""
        return self.requests - self.rate_limited - self.over_capacity

    @property
    def requests_per_second(self) -> float:
        """Mean arrival rate between the first and the last request (0.0 for fewer than two)."""
        if self.first_request_at is None or self.last_request_at is None:
            return 0.0
        span = self.last_request_at - self.first_request_at
        return (self.requests - 1) / span if span > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures as a plain JSON-ready dict, derived ones included."""
        return {
            "requests": self.requests,
            "answered": self.answered,
            "errors_sent": self.errors_sent,
            "rate_limited": self.rate_limited,
            "over_capacity": self.over_capacity,
            "not_found": self.not_found,
            "admitted": self.admitted,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "peak_per_second": self.peak_per_second,
            "requests_per_second": self.requests_per_second,
            "first_request_at": self.first_request_at,
            "last_request_at": self.last_request_at,
            "uptime": self.uptime,
        }

    def __str__(self) -> str:
        # Over capacity only when it happened: most servers run without a capacity.
        over = f"{self.over_capacity} over capacity, " if self.over_capacity else ""
        return (
            f"{self.requests} requests ({self.answered} answered, {self.errors_sent} errors sent, "
            f"{self.rate_limited} rate-limited, {over}{self.not_found} not found), "
            f"{self.requests_per_second:.1f} requests/s, peak {self.peak_per_second} admitted in 1 s, "
            f"max {self.max_in_flight} in flight"
        )


def _check_host(host: object) -> str:
    """`host` as the loopback address to bind: 'localhost' is 127.0.0.1, other names are refused."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, got {host!r}")
    # "localhost" is loopback by definition (RFC 6761), whatever a hosts file says: bind the
    # IPv4 loopback address rather than whatever the name resolves to, so one port is bound.
    if host.lower().rstrip(".") == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"host must be 'localhost' or a loopback address such as '127.0.0.1' or '::1', got {host!r}: "
            "this API is a test double, never to be reachable from another machine"
        )
    return host


def _check_seconds(name: str, value: object, *, zero: bool) -> float:
    """`value` as a finite number of seconds, > 0 (or >= 0 when `zero`), else an error naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not is_finite(value) or value < 0 or (value == 0 and not zero):
        rule = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {rule}, got {value!r}")
    return float(value)


def _too_many(message: str, wait: float) -> web.Response:
    """A 429 answer: come back after `wait` seconds."""
    return web.json_response(
        {"error": message, "retry_after": wait}, status=429, headers=_retry_after_headers(wait)
    )


def _retry_after_headers(wait: float) -> dict[str, str]:
    # Retry-After takes whole seconds: round up, never invite a client back too early.
    return {"Retry-After": str(math.ceil(wait)), "Retry-After-Ms": str(retry_after_ms(wait))}


class CarAPIServer:
    """The car-price API: an aiohttp server on 127.0.0.1, slow, flaky, rate-limited and full on demand.

    Use it as an async context manager, which starts the server on entry and stops it on exit
    (`async with CarAPIServer(error_rate=0.1) as server: ... server.url ...`), or call
    `await server.start()` and `await server.stop()` yourself, say in two notebook cells.

    The server runs on the event loop that starts it, so that loop must stay free while a job
    calls it: `await pcmodel.run_job_async(...)`, not the blocking `run_job`, in the same
    thread (a blocked loop answers nothing, and the calls time out).

    Endpoints (JSON):

    - `GET /cars/{id}/price`: `{"id": 7, "price": 14230, "currency": "EUR"}`
    - `GET /cars/{id}`: the car, see `car_info`
    - `GET /stats`: `ServerStatistics.as_dict()`; `GET /health`: `{"status": "ok"}`
    - `GET /capacity`: `{"capacity": 20, "in_flight": 3}` (`null`: no limit);
      `PUT /capacity` with the body `{"capacity": 5}` (or `null`) changes it while the server
      runs, as `server.capacity = 5` does in code, and answers the same; a bad value is
      answered 400 with the reason.

    The knobs apply to the car endpoints only. A request first meets the capacity (429 at
    once if `capacity` requests are being served, with a `Retry-After` that says when the
    first of them will be answered: the server drew their latencies, so it knows), then the
    rate limiter (429 at once if the bucket is empty), then waits its latency, then is
    answered 500 with probability `error_rate`, else 200.

    The capacity is the test bed of adaptive concurrency: a pool larger than it meets 429s,
    one smaller leaves it idle. Lower it mid-job (`server.capacity = 5`, on the server's loop,
    or `PUT /capacity` from anywhere) to see a client follow: the requests in flight finish,
    newcomers are turned away until fewer than 5 remain.

    Args:
        latency: `(low, high)` seconds for a uniform draw, or a function of a seeded
            `random.Random` that returns seconds.
        error_rate: share of the requests answered 500, from 0 to 1.
        rate_limit: requests per second the token bucket lets through, or None for no limit.
        burst: requests the bucket holds (it starts full); default 1, no bursts. Needs
            `rate_limit`.
        capacity: most car requests served at once (1 to 10**9), or None (default) for no
            limit.
        seed: seed of every latency and error draw.
        host: a loopback address to bind (default "127.0.0.1"), or "localhost", which binds
            127.0.0.1; other hosts are refused.
        port: the port to bind; 0 (default) lets the system pick a free one.
        shutdown_timeout: seconds `stop()` lets requests in flight finish before it cancels them.
        idle_timeout: seconds a connection may stay open with no request being served, from
            the moment it opens or its last answer: after that it is closed. This bounds idle
            keep-alive connections and clients that send their request too slowly
            (slowloris), whatever bytes trickle in meanwhile. A request being served is never
            cut short. The default, 30 s, is longer than aiohttp's client keeps an idle
            connection (15 s), so a client never reuses a connection the server is closing.

    Raises:
        TypeError, ValueError: a bad knob, checked when the server is made.
    """

    def __init__(
        self,
        *,
        latency: Latency = DEFAULT_LATENCY,
        error_rate: float = 0.0,
        rate_limit: float | None = None,
        burst: int | None = None,
        capacity: int | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 1.0,
        idle_timeout: float = 30.0,
    ) -> None:
        self._draw_latency = check_latency(latency)
        self.latency = latency
        """The latency knob, as given."""
        self.error_rate = check_probability("error_rate", error_rate)
        """Share of the requests answered 500."""
        self.rate_limit, self.burst = check_rate(rate_limit, burst)
        """Requests per second let through (None: no limit), and the bucket's size."""
        self._capacity = check_capacity(capacity)
        self.seed = check_seed(seed)
        """Seed of every draw."""
        self.host = _check_host(host)
        """The address the server binds."""
        self._port = check_int("port", port, 0)
        if self._port > 65535:
            raise ValueError(f"port must be <= 65535, got {port!r}")
        self._shutdown_timeout = _check_seconds("shutdown_timeout", shutdown_timeout, zero=True)
        self.idle_timeout = _check_seconds("idle_timeout", idle_timeout, zero=False)
        """Seconds a connection may stay open with no request being served."""
        self._runner: web.BaseRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._served: dict[str, int] = {}
        self._stopped_at: float | None = None
        self._first: float | None = None
        self._last: float | None = None
        # Admission times within the last second, for `peak_per_second`.
        self._window: collections.deque[float] = collections.deque()
        # Not statistics: a reset leaves the requests being served in it.
        self._in_flight = InFlight()
        self._reset(0.0)

    @property
    def capacity(self) -> int | None:
        """Most car requests served at once, or None for no limit.

        Set it to change it while the server runs (from the server's own loop: a notebook
        cell, a callback of a job on that loop; from elsewhere, `PUT /capacity`). A bad value
        raises TypeError or ValueError and leaves it as it was.
        """
        return self._capacity

    @capacity.setter
    def capacity(self, capacity: int | None) -> None:
        self._capacity = check_capacity(capacity)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._runner is not None

    @property
    def port(self) -> int:
        """The port the server listens on (the one the system picked, for port 0)."""
        if self._runner is None:
            raise RuntimeError("the server is not running: start it with 'await server.start()' first")
        return int(self._runner.addresses[0][1])

    @property
    def url(self) -> str:
        """The server's base URL, such as "http://127.0.0.1:43117"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> Self:
        """Bind the port and start serving on the running loop; return the server."""
        if self._runner is not None:
            raise RuntimeError(f"the server is already running at {self.url}")
        # aiohttp's low-level server with a router of four routes (`_route`): it lets each
        # connection be one that closes idle and slow clients and answers a malformed request
        # in one log line (`pcmodel/_carapi_connection.py`).
        server = Server(self._dispatch, idle_timeout=self.idle_timeout, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._loop = asyncio.get_running_loop()
        self._runner = runner
        self.reset_statistics()
        return self

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish (up to `shutdown_timeout`), close all.

        Safe to call twice; after it returns no task or socket of the server is left.
        """
        runner, self._runner = self._runner, None
        if runner is not None:
            try:
                await runner.cleanup()
            finally:
                self._stopped_at = self._now()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        limit = "no rate limit" if self.rate_limit is None else f"{self.rate_limit:g}/s burst {self.burst}"
        if self._capacity is not None:
            limit += f", capacity {self._capacity}"
        return f"<CarAPIServer {where}: error_rate={self.error_rate:g}, {limit}, seed={self.seed}>"

    # -- statistics --------------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _reset(self, now: float) -> None:
        self._started_at = now
        self._stopped_at = None
        self._requests = self._answered = self._errors = self._limited = self._full = self._not_found = 0
        self._max_in_flight = len(self._in_flight)
        self._peak = 0
        self._first = self._last = None
        self._window.clear()
        self._bucket = None if self.rate_limit is None else TokenBucket(self.rate_limit, self.burst, now)

    def reset_statistics(self) -> None:
        """Zero the counters and refill the rate limiter, say before the next job of a lesson.

        The per-path draw counts are kept: the next request for a car continues its sequence.
        """
        self._reset(self._now())

    def statistics(self) -> ServerStatistics:
        """A snapshot of what the server saw since it started (or since the last reset)."""
        start = self._started_at
        return ServerStatistics(
            requests=self._requests,
            answered=self._answered,
            errors_sent=self._errors,
            rate_limited=self._limited,
            over_capacity=self._full,
            not_found=self._not_found,
            in_flight=len(self._in_flight),
            max_in_flight=self._max_in_flight,
            peak_per_second=self._peak,
            first_request_at=None if self._first is None else self._first - start,
            last_request_at=None if self._last is None else self._last - start,
            uptime=(self._now() if self._stopped_at is None else self._stopped_at) - start,
        )

    # -- handlers ----------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        with serving(request):
            response = await self._route(request)
        response.headers[hdrs.SERVER] = SERVER_NAME
        return response

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/capacity":
            return await self._capacity_endpoint(request)
        if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
            return web.json_response(
                {"error": f"method {request.method} not allowed: this API answers GET only"},
                status=405,
                headers={hdrs.ALLOW: "GET, HEAD"},
            )
        match request.path.split("/"):
            case ["", "cars", car, "price"] if car:
                return await self._serve(request, car, _price_of)
            case ["", "cars", car] if car:
                return await self._serve(request, car, car_info)
            case ["", "stats"]:
                return web.json_response(self.statistics().as_dict())
            case ["", "health"]:
                return web.json_response({"status": "ok"})
        return web.json_response(
            {
                "error": f"no endpoint {request.path!r:.80}: "
                "try /cars/ID/price, /cars/ID, /stats, /health or /capacity"
            },
            status=404,
        )

    async def _serve(
        self, request: web.BaseRequest, car: str, answer: Callable[[int], dict[str, Any]]
    ) -> web.Response:
        now = self._now()
        self._requests += 1
        if self._first is None:
            self._first = now
        self._last = now
        wait = self._in_flight.wait(self._capacity, now)
        if wait > 0:
            self._full += 1
            return _too_many(f"over capacity: {self._capacity} requests in flight", wait)
        if self._bucket is not None:
            wait = self._bucket.take(now)
            if wait > 0:
                self._limited += 1
                return _too_many("rate limit exceeded", wait)
        window = self._window
        window.append(now)
        while window[0] <= now - _RATE_WINDOW:
            window.popleft()
        self._peak = max(self._peak, len(window))

        car_id = _parse_car_id(car)
        if car_id is None:
            self._not_found += 1
            return web.json_response(
                {"error": f"no car {car!r:.40}: ids are ints from 0 to {MAX_CAR_ID}"}, status=404
            )
        # The n-th request for a path draws from its own stream, so its fate does not depend
        # on the order in which concurrent requests arrive.
        path = request.path
        served = self._served.get(path, 0)
        self._served[path] = served + 1
        fails, latency = request_fate(self.seed, path, served, self.error_rate, self._draw_latency)

        with self._in_flight.serving(now + latency):
            self._max_in_flight = max(self._max_in_flight, len(self._in_flight))
            await asyncio.sleep(latency)
        if fails:
            self._errors += 1
            return web.json_response({"error": "simulated failure"}, status=500)
        self._answered += 1
        return web.json_response(answer(car_id))

    async def _capacity_endpoint(self, request: web.BaseRequest) -> web.Response:
        """`GET /capacity` reads the capacity, `PUT /capacity` with `{"capacity": K}` sets it."""
        if request.method == hdrs.METH_PUT:
            try:
                self.capacity = _read_capacity(await _read_body(request, _MAX_CAPACITY_BODY + 1))
            except (TypeError, ValueError) as error:
                return web.json_response({"error": str(error)}, status=400)
        elif request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
            return web.json_response(
                {"error": f"method {request.method} not allowed: /capacity answers GET and PUT"},
                status=405,
                headers={hdrs.ALLOW: "GET, HEAD, PUT"},
            )
        return web.json_response({"capacity": self._capacity, "in_flight": len(self._in_flight)})


async def _read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The request's body, or its first `limit` bytes if it is longer (the rest is not read)."""
    body = b""
    while len(body) < limit and (chunk := await request.content.read(limit - len(body))):
        body += chunk
    return body


def _read_capacity(body: bytes) -> int | None:
    """The capacity a `PUT /capacity` body asks for, checked; else a TypeError or ValueError."""
    if len(body) > _MAX_CAPACITY_BODY:
        raise ValueError(
            f'the body must be at most {_MAX_CAPACITY_BODY} bytes of JSON such as {{"capacity": 5}}'
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError)
        data = None
    if not isinstance(data, dict) or "capacity" not in data:
        raise ValueError(
            f'the body must be a JSON object such as {{"capacity": 5}} or {{"capacity": null}}, got {body!r:.80}'
        )
    return check_capacity(data["capacity"])


def _parse_car_id(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    car_id = int(text)
    return car_id if car_id <= MAX_CAR_ID else None


def _price_of(car_id: int) -> dict[str, Any]:
    info = car_info(car_id)
    return {"id": car_id, "price": info["price"], "currency": info["currency"]}
