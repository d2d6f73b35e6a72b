"""A real car-price HTTP API on loopback, and a client workload for pcmodel jobs.

Simulated calls (`pcmodel.workloads`) teach the model; this module is the real thing: an
aiohttp web server on 127.0.0.1 that is slow, flaky and rate-limited on purpose, and a client
whose calls go over real sockets. Both run on the caller's event loop, so a test or a notebook
cell can start the server, run a job against it and read what the server saw:

    >>> import asyncio, pcmodel
    >>> from pcmodel.carapi import CarAPIServer, CarPriceClient
    >>> async def demo():
    ...     async with CarAPIServer(latency=(0.01, 0.05), error_rate=0.1, seed=1) as server:
    ...         async with CarPriceClient(server.url) as fetch_price:
    ...             summary = await pcmodel.run_job_async(fetch_price, range(100), workers=20)
    ...         return summary.tasks, server.statistics().errors_sent == summary.failed
    >>> asyncio.run(demo())  # doctest: +SKIP
    (100, True)

The server's knobs:

- `latency`: how long each answer takes, uniform between two bounds or drawn by a function.
- `error_rate`: the share of requests answered `500 Internal Server Error`.
- `rate_limit` and `burst`: a token bucket on the server's loop clock; a request that finds
  the bucket empty is answered `429 Too Many Requests` at once, with a `Retry-After` header
  (whole seconds, as HTTP says) and a `Retry-After-Ms` header (the exact wait).

Every draw is seeded by the server's `seed`, the request's path and how many times that path
was served before, so the n-th request for a car meets the same fate whatever order the
requests arrive in: which cars fail is repeatable, and a retry can succeed.

The client raises `ServerError` for a 5xx answer and `RateLimited` (with `retry_after`, in
seconds) for a 429: what a retry layer needs to decide whether, and when, to try again.

aiohttp is needed (`pip install 'pcmodel[api]'`); `import pcmodel` never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import email.utils
import ipaddress
import logging
import math
import random
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NoReturn, Self

try:
    import aiohttp
    from aiohttp import hdrs, web
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "pcmodel.carapi needs aiohttp, which is not installed: pip install 'pcmodel[api]'"
    ) from error

from pcmodel._validate import check_int
from pcmodel.workloads import TokenBucket, check_latency, check_probability, check_rate, request_fate

__all__ = [
    "RETRYABLE_ERRORS",
    "CarAPIError",
    "CarAPIServer",
    "CarPriceClient",
    "Latency",
    "RateLimited",
    "ServerError",
    "ServerStatistics",
    "car_info",
    "serve_main",
]

Latency = tuple[float, float] | Callable[[random.Random], float]
"""Seconds an answer takes: `(low, high)` for a uniform draw, or a function of a seeded
`random.Random` that returns the seconds (for example `lambda rng: rng.expovariate(20)`)."""

_MAX_CAR_ID: Final = 10**9
_RATE_WINDOW: Final = 1.0  # seconds: the window of `ServerStatistics.peak_per_second`
# A token may take at most a day to come back: a slower rate would ask clients to wait for
# ages (or, below about 1e-308 per second, forever, which no header can say).
_MIN_RATE: Final = 1 / 86_400
_MAX_BURST: Final = 10**9
_SERVER_NAME: Final = "pcmodel-carapi"
"""The `Server` header of every answer: no Python or aiohttp version for a scanner to match."""

_log = logging.getLogger(__name__)

# Model, base price in euros when new.
_MODELS: Final = (
    ("Toyota Corolla", 27_000),
    ("Honda Civic", 29_000),
    ("Volkswagen Golf", 31_000),
    ("Tesla Model 3", 42_000),
    ("Renault Clio", 19_000),
    ("Ford Focus", 24_000),
    ("Skoda Octavia", 28_000),
    ("Mazda 3", 26_000),
    ("BMW 3 Series", 46_000),
    ("Fiat 500", 17_000),
)
_CATALOGUE_YEAR: Final = 2025


def car_info(car_id: int) -> dict[str, Any]:
    """What the API knows about car `car_id`: model, year, mileage and price in euros.

    The catalogue is a pure function of the id, the same on every server and in every run, so
    a test or a notebook can check the prices it was given.

    Args:
        car_id: the car's id, from 0 to 10**9.

    Raises:
        TypeError: `car_id` is not an int.
        ValueError: `car_id` is out of range.
    """
    check_int("car_id", car_id, 0)
    if car_id > _MAX_CAR_ID:
        raise ValueError(f"car_id must be <= {_MAX_CAR_ID}, got {car_id!r}")
    rng = random.Random(car_id)
    model, new_price = rng.choice(_MODELS)
    age = rng.randint(0, 15)
    mileage = round(age * rng.uniform(6_000, 22_000) + rng.uniform(0, 5_000), -2)
    # About 12% of the value lost per year, and 3 cents per km; never below scrap value.
    price = max(500, round(new_price * 0.88**age - 0.03 * mileage, -1))
    return {
        "id": car_id,
        "model": model,
        "year": _CATALOGUE_YEAR - age,
        "mileage_km": int(mileage),
        "price": int(price),
        "currency": "EUR",
    }


# --------------------------------------------------------------------------------------------
# The server


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
    not_found: int
    """Requests for a car id that is not an int from 0 to 10**9 (answered 404)."""
    in_flight: int
    """Requests being served at the time of the snapshot."""
    max_in_flight: int
    """Most requests ever served at once."""
    peak_per_second: int
    """Most requests let through the rate limiter (not answered 429) in any 1-second window;
    with a rate limit it never exceeds `burst + rate_limit`."""
    first_request_at: float | None
    """When the first counted request arrived; None before any."""
    last_request_at: float | None
    """When the last counted request arrived; None before any."""
    uptime: float
    """Seconds from the start (or the last reset) to the snapshot, or to the stop."""

    @property
    def admitted(self) -> int:
        """Requests let through the rate limiter: `requests - rate_limited`."""
        return self.requests - self.rate_limited

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
        return (
            f"{self.requests} requests ({self.answered} answered, {self.errors_sent} errors sent, "
            f"{self.rate_limited} rate-limited, {self.not_found} not found), "
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


def _is_finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check_seconds(name: str, value: object, *, zero: bool) -> float:
    """`value` as a finite number of seconds, > 0 (or >= 0 when `zero`), else an error naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not _is_finite(value) or value < 0 or (value == 0 and not zero):
        rule = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {rule}, got {value!r}")
    return float(value)


def _retry_after_headers(wait: float) -> dict[str, str]:
    # Retry-After takes whole seconds: round up, never invite a client back too early.
    return {"Retry-After": str(math.ceil(wait)), "Retry-After-Ms": str(math.ceil(wait * 1000))}


def _one_line(text: object, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters, for a log line that quotes a client.

    A client's bytes may hold newlines (a forged second log line) or terminal escapes: runs
    of whitespace become one space, other unprintable characters their escape sequence.
    """
    line = " ".join(str(text).split())
    line = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Connection(web.RequestHandler):
    """aiohttp's handler of one client connection, with a deadline for idle and slow clients.

    aiohttp's own keep-alive timer waits an hour by default, and older aiohttp versions
    (the package accepts 3.9 and later) never started it before a first complete request:
    a client that connects and says nothing, or sends its headers a byte at a time
    (slowloris), held a socket for good. Here a connection with no request being served is
    closed once `idle_timeout` seconds have passed since it opened or since its last answer,
    whatever bytes trickle in, on every aiohttp version.

    A malformed request (a bad request line or header, headers too large) is answered 4xx in
    JSON and logged in one line, instead of aiohttp's traceback per request; and no answer
    names the Python or aiohttp version in its `Server` header.
    """

    def __init__(
        self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, idle_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._clock = loop
        self._idle_timeout = idle_timeout
        self._serving = 0
        self._quiet_since = loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._quiet_since = self._clock.time()
        self._idle_timer = self._clock.call_at(self._quiet_since + self._idle_timeout, self._check_idle)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().connection_lost(exc)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Mark a request as being served: the connection is not idle until it is answered."""
        self._serving += 1
        try:
            yield
        finally:
            self._serving -= 1
            self._quiet_since = self._clock.time()

    def _check_idle(self) -> None:
        now = self._clock.time()
        # While a request is served, look again later; a timer may fire a hair early (the
        # loop's clock resolution), hence the millisecond of slack.
        due = (now if self._serving else self._quiet_since) + self._idle_timeout
        if due - now > 1e-3:
            self._idle_timer = self._clock.call_at(due, self._check_idle)
            return
        self._idle_timer = None
        _log.debug("closing a connection idle for %.3g s", now - self._quiet_since)
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request that failed: 4xx for a malformed one (one log line), 500 for a bug."""
        if status >= 500:
            # A bug in a handler: aiohttp logs it with its traceback, which is what it needs.
            response = super().handle_error(request, status, exc, message)
        else:
            reason = _one_line(getattr(exc, "message", None) or message or exc or "")
            _log.warning("malformed request from %s: %d %s", request.remote, status, reason)
            response = web.json_response({"error": f"malformed request: {reason}"}, status=status)
            response.force_close()
        response.headers[hdrs.SERVER] = _SERVER_NAME
        return response


class _Server(web.Server):
    """aiohttp's low-level server, whose connections are `_Connection`s."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        idle_timeout: float,
        **options: Any,
    ) -> None:
        # handler_cancellation: a client that hangs up (a timed-out call) stops its request
        # here too, so `in_flight` counts only requests someone still waits for.
        super().__init__(handler, handler_cancellation=True, **options)
        self._idle_timeout = idle_timeout
        self._options = options

    def __call__(self) -> web.RequestHandler:
        return _Connection(
            self, loop=asyncio.get_running_loop(), idle_timeout=self._idle_timeout, **self._options
        )


class CarAPIServer:
    """The car-price API: an aiohttp server on 127.0.0.1, slow, flaky and rate-limited on demand.

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

    The knobs apply to the car endpoints only. A request first meets the rate limiter (429
    at once if the bucket is empty), then waits its latency, then is answered 500 with
    probability `error_rate`, else 200.

    Args:
        latency: `(low, high)` seconds for a uniform draw, or a function of a seeded
            `random.Random` that returns seconds.
        error_rate: share of the requests answered 500, from 0 to 1.
        rate_limit: requests per second the token bucket lets through, or None for no limit.
        burst: requests the bucket holds (it starts full); default 1, no bursts. Needs
            `rate_limit`.
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
        latency: Latency = (0.05, 0.25),
        error_rate: float = 0.0,
        rate_limit: float | None = None,
        burst: int | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 1.0,
        idle_timeout: float = 30.0,
    ) -> None:
        if isinstance(latency, tuple) and not all(
            isinstance(bound, bool) or not isinstance(bound, int | float) or _is_finite(bound)
            for bound in latency
        ):
            raise ValueError(f"latency bounds must be finite numbers of seconds, got {latency!r}")
        self._draw_latency = check_latency(latency)
        self.latency = latency
        """The latency knob, as given."""
        self.error_rate = check_probability("error_rate", error_rate)
        """Share of the requests answered 500."""
        self.rate_limit, self.burst = check_rate(rate_limit, burst)
        """Requests per second let through (None: no limit), and the bucket's size."""
        if self.rate_limit is not None and self.rate_limit < _MIN_RATE:
            raise ValueError(
                f"rate_limit must be >= 1/86400 requests per second (one a day), got {rate_limit!r}"
            )
        if self.burst > _MAX_BURST:
            raise ValueError(f"burst must be <= {_MAX_BURST}, got {burst!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed
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
        self._reset(0.0)

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
        # connection be a `_Connection`, which closes idle and slow clients and answers a
        # malformed request in one log line.
        server = _Server(self._dispatch, idle_timeout=self.idle_timeout, access_log=None)
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
        return f"<CarAPIServer {where}: error_rate={self.error_rate:g}, {limit}, seed={self.seed}>"

    # -- statistics --------------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _reset(self, now: float) -> None:
        self._started_at = now
        self._stopped_at = None
        self._requests = self._answered = self._errors = self._limited = self._not_found = 0
        self._in_flight = self._max_in_flight = self._peak = 0
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
            not_found=self._not_found,
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            peak_per_second=self._peak,
            first_request_at=None if self._first is None else self._first - start,
            last_request_at=None if self._last is None else self._last - start,
            uptime=(self._now() if self._stopped_at is None else self._stopped_at) - start,
        )

    # -- handlers ----------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        with connection.serving() if isinstance(connection, _Connection) else contextlib.nullcontext():
            response = await self._route(request)
        response.headers[hdrs.SERVER] = _SERVER_NAME
        return response

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
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
            {"error": f"no endpoint {request.path!r:.80}: try /cars/ID/price, /cars/ID, /stats or /health"},
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
        if self._bucket is not None:
            wait = self._bucket.take(now)
            if wait > 0:
                self._limited += 1
                return web.json_response(
                    {"error": "rate limit exceeded", "retry_after": wait},
                    status=429,
                    headers=_retry_after_headers(wait),
                )
        window = self._window
        window.append(now)
        while window[0] <= now - _RATE_WINDOW:
            window.popleft()
        self._peak = max(self._peak, len(window))

        car_id = _parse_car_id(car)
        if car_id is None:
            self._not_found += 1
            return web.json_response(
                {"error": f"no car {car!r:.40}: ids are ints from 0 to {_MAX_CAR_ID}"}, status=404
            )
        # The n-th request for a path draws from its own stream, so its fate does not depend
        # on the order in which concurrent requests arrive.
        path = request.path
        served = self._served.get(path, 0)
        self._served[path] = served + 1
        fails, latency = request_fate(self.seed, path, served, self.error_rate, self._draw_latency)

        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            await asyncio.sleep(latency)
        finally:
            self._in_flight -= 1
        if fails:
            self._errors += 1
            return web.json_response({"error": "simulated failure"}, status=500)
        self._answered += 1
        return web.json_response(answer(car_id))


def _parse_car_id(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    car_id = int(text)
    return car_id if car_id <= _MAX_CAR_ID else None


def _price_of(car_id: int) -> dict[str, Any]:
    info = car_info(car_id)
    return {"id": car_id, "price": info["price"], "currency": info["currency"]}


# --------------------------------------------------------------------------------------------
# The client


class CarAPIError(Exception):
    """The car-price API answered with an error status.

    A retry layer reads `status`, `retryable` and `retry_after` to decide whether, and when,
    to try again.
    """

    def __init__(self, message: str, *, status: int, car_id: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status of the answer."""
        self.car_id = car_id
        """The car that was asked for."""
        self.retry_after = retry_after
        """Seconds the server asked the client to wait before trying again, if it said."""

    @property
    def retryable(self) -> bool:
        """True when trying again may succeed: a 5xx or a 429 answer."""
        return self.status == 429 or self.status >= 500


class ServerError(CarAPIError):
    """The API answered 5xx: a failure on its side, worth retrying."""


class RateLimited(CarAPIError):
    """The API answered 429 Too Many Requests: wait `retry_after` seconds, then retry."""


RETRYABLE_ERRORS: Final[tuple[type[Exception], ...]] = (
    ServerError,
    RateLimited,
    aiohttp.ClientConnectionError,
)
"""The exceptions of a `CarPriceClient` call that are worth retrying: 5xx and 429 answers,
and failed connections (refused, reset, closed mid-answer)."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `Retry-After-Ms` or else `Retry-After` (seconds or an HTTP date)."""
    millis = headers.get("Retry-After-Ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _car_id(car: object) -> int:
    if isinstance(car, Mapping):
        if "id" not in car:
            raise TypeError(f"car must be an int id or a mapping with an 'id' key, got {car!r:.80}")
        car = car["id"]
    if isinstance(car, bool) or not isinstance(car, int):
        raise TypeError(f"car must be an int id or a mapping with an 'id' key, got {car!r:.80}")
    return car


class CarPriceClient:
    """A ready workload for pcmodel jobs: `await client(car)` asks the API for the car's price.

    One `aiohttp.ClientSession`, opened on entry and closed on exit, is shared by every call,
    so a job's workers reuse its pooled keep-alive connections instead of each opening its
    own. The connection pool is unbounded by default: the job's `workers` already bound the
    calls in flight.

        async with CarAPIServer() as server, CarPriceClient(server.url) as fetch_price:
            summary = await pcmodel.run_job_async(fetch_price, range(200), workers=50)

    A call raises `ServerError` for a 5xx answer, `RateLimited` for a 429 (its `retry_after`
    says how long to wait), `CarAPIError` for another error status, and aiohttp's
    `ClientConnectionError` when the connection fails. `RETRYABLE_ERRORS` lists the ones
    worth retrying.

    The session belongs to the loop that opened it: open the client inside the job's loop
    (`run_job_async` with the real clock). Real sockets have no place on a virtual clock.

    Args:
        url: the API's base URL, such as `server.url`.
        timeout: seconds a call may take in all before aiohttp gives up, or None for no limit.
            A safety net: per-task time limits belong to the job.
        connections: most connections open at once; 0 (default) for no limit.
    """

    def __init__(self, url: str, *, timeout: float | None = 60.0, connections: int = 0) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {url!r}")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with 'http://' or 'https://', got {url!r}")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
            if not timeout > 0:
                raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        self.url = url.rstrip("/")
        """The API's base URL."""
        self._timeout = timeout
        self._connections = check_int("connections", connections, 0)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (only between entry and exit)."""
        if self._session is None:
            raise RuntimeError(
                "the client is not open: use 'async with CarPriceClient(url) as fetch_price:' first"
            )
        return self._session

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("the client is already open; make one CarPriceClient per 'async with'")
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        session = self.session
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "the client was opened on another event loop: open it on the loop the job runs on "
                "and use 'await run_job_async(...)' with the real clock (run_job inside a running "
                "loop, and clock='virtual', run the job on a private loop in another thread)"
            )
        return session

    async def _get(self, car: object, suffix: str) -> dict[str, Any]:
        car_id = _car_id(car)
        session = self._open_session()
        async with session.get(f"{self.url}/cars/{car_id}{suffix}") as response:
            if response.status == 200:
                data: dict[str, Any] = await response.json()
                return data
            status, reason = response.status, response.reason or ""
            try:
                detail = (await response.json()).get("error", "")
            except (aiohttp.ContentTypeError, ValueError, AttributeError):
                detail = ""
            retry_after = _retry_after(response.headers)
        text = f"car {car_id}: the price API answered {status} {reason}".rstrip()
        if detail:
            text += f" ({detail})"
        if status == 429:
            wait = "" if retry_after is None else f", retry after {retry_after:.3f} s"
            raise RateLimited(text + wait, status=status, car_id=car_id, retry_after=retry_after)
        if status >= 500:
            raise ServerError(text, status=status, car_id=car_id, retry_after=retry_after)
        raise CarAPIError(text, status=status, car_id=car_id, retry_after=retry_after)

    async def __call__(self, car: int | Mapping[str, Any]) -> int:
        """Ask the API for the price of `car` (an int id, or a mapping with an "id"), in euros.

        Raises:
            ServerError: a 5xx answer.
            RateLimited: a 429 answer; `retry_after` says how long to wait.
            CarAPIError: another error status (404 for an unknown car).
            aiohttp.ClientConnectionError: the connection failed.
            TypeError: `car` is not an int id or a mapping with one.
        """
        data = await self._get(car, "/price")
        return int(data["price"])

    async def car(self, car: int | Mapping[str, Any]) -> dict[str, Any]:
        """Ask the API for everything it knows about `car` (see `car_info`); same errors."""
        return await self._get(car, "")

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "closed"
        return f"<CarPriceClient {self.url} ({state})>"


# --------------------------------------------------------------------------------------------
# The command line


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with a pointer to `--help`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(text: str, rule: str = "a finite number") -> float:
    """An option's value as a finite float (argparse's `float` takes 'nan' and 'inf')."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
    return value


def _seconds(text: str) -> float:
    """An option's value as a finite number of seconds >= 0."""
    rule = "a finite number of seconds >= 0"
    value = _number(text, rule)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pcmodel serve-api",
        description=(
            "Serve the car-price JSON API on loopback until Ctrl-C: GET /cars/ID/price, "
            "GET /cars/ID, GET /stats, GET /health. Slow, flaky and rate-limited on demand."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind, or localhost (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    parser.add_argument(
        "--latency",
        type=_seconds,
        nargs=2,
        default=(0.05, 0.25),
        metavar=("LOW", "HIGH"),
        help="each answer takes a uniform LOW-HIGH seconds (default 0.05 0.25)",
    )
    parser.add_argument(
        "--error-rate",
        type=_number,
        default=0.0,
        metavar="R",
        help="share of requests answered 500 (default 0)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_number,
        default=None,
        metavar="N",
        help="let N requests a second through, answer 429 with Retry-After beyond (default: no limit)",
    )
    parser.add_argument(
        "--burst", type=int, default=None, metavar="B", help="requests the rate limiter holds (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of every draw (default 0)")
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=30.0,
        metavar="T",
        help="close a connection after T seconds with no request being served: idle clients, "
        "and clients too slow to send their request (default 30)",
    )
    return parser


_KNOBS: Final = re.compile(r"\b(error_rate|rate_limit|idle_timeout|latency|burst|seed|host|port)\b")


def _as_option(message: str) -> str:
    """A knob's error message in the command line's words: 'error_rate' becomes '--error-rate'."""
    return _KNOBS.sub(lambda knob: "--" + knob[1].replace("_", "-"), message)


class _CannotServe(Exception):
    """The server could not bind its address (the OSError is the argument)."""


async def _serve_forever(server: CarAPIServer) -> bool:
    """Serve until Ctrl-C or SIGTERM, then stop the server; return True if it was Ctrl-C."""
    received: list[signal.Signals] = []
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        # A second Ctrl-C while the server stops changes nothing: the stop is bounded by
        # shutdown_timeout, and a KeyboardInterrupt raised in the middle of it would leave
        # aiohttp half shut down, spilling a traceback per connection.
        received.append(signum)
        stop.set()

    # The handlers stay until the server has stopped. SIGTERM (a supervisor, or a notebook's
    # process.terminate()) stops as cleanly as Ctrl-C.
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, nor outside the main thread: there asyncio.run's own Ctrl-C applies.
        with contextlib.suppress(NotImplementedError, AttributeError, ValueError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
    try:
        try:
            await server.start()
        except OSError as error:  # the port is taken, the address is not this machine's...
            raise _CannotServe(error) from None
        try:
            limit = (
                "no rate limit"
                if server.rate_limit is None
                else f"rate limit {server.rate_limit:g}/s, burst {server.burst}"
            )
            low, high = server.latency if isinstance(server.latency, tuple) else (0.0, 0.0)
            print(f"car-price API on {server.url}", flush=True)
            print(
                f"latency {low:g}-{high:g} s, error rate {server.error_rate:g}, {limit}, seed {server.seed}; "
                f"try {server.url}/cars/1/price; Ctrl-C to stop",
                flush=True,
            )
            await stop.wait()
        finally:
            await server.stop()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    return received[:1] == [signal.SIGINT]


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Run `pcmodel serve-api` with `argv` (default: `sys.argv[1:]`) until Ctrl-C or SIGTERM.

    Prints the URL first; on Ctrl-C or SIGTERM stops the server cleanly and prints what it
    saw. A malformed request is logged as one line on stderr.

    Returns:
        0 after SIGTERM, 130 after Ctrl-C (with "pcmodel serve-api: interrupted" on stderr),
        1 if the port cannot be bound. A bad option exits with status 2 and a one-line message.
    """
    try:
        return _serve_main(argv)
    except KeyboardInterrupt:  # before the server was up, or a second Ctrl-C while it stops
        print("pcmodel serve-api: interrupted", file=sys.stderr, flush=True)
        return 130


def _serve_main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    low, high = args.latency
    if low > high:
        parser.error(f"--latency LOW must be <= HIGH, got {low:g} {high:g}")
    try:
        server = CarAPIServer(
            latency=(low, high),
            error_rate=args.error_rate,
            rate_limit=args.rate_limit,
            burst=args.burst,
            seed=args.seed,
            host=args.host,
            port=args.port,
            idle_timeout=args.idle_timeout,
        )
    except (TypeError, ValueError) as error:
        parser.error(_as_option(str(error)))
    # The server's log lines (a malformed request) go to stderr, one line each.
    log_handler = logging.StreamHandler(sys.stderr)
    log_handler.setFormatter(logging.Formatter("pcmodel serve-api: %(message)s"))
    _log.addHandler(log_handler)
    try:
        interrupted = asyncio.run(_serve_forever(server))
    except KeyboardInterrupt:  # where asyncio.run's own Ctrl-C applies
        interrupted = True
    except _CannotServe as error:
        print(f"pcmodel serve-api: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    finally:
        _log.removeHandler(log_handler)
    print(f"stopped: {server.statistics()}", flush=True)
    if interrupted:
        print("pcmodel serve-api: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
