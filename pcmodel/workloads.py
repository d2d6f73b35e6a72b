"""Seeded simulated workloads, for the lessons, the tests and the demo.

Every workload is made of `asyncio.sleep` calls, so it runs the same in real time and,
instantly and exactly, in virtual time. The random draws come from `random.Random(seed)`:
the same seed gives the same job, everywhere.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from pcmodel._validate import check_int

if TYPE_CHECKING:
    from pcmodel.records import JobSummary, TaskResult

__all__ = [
    "RETRYABLE_ERRORS",
    "Call",
    "CallLog",
    "Latency",
    "PriceAPIError",
    "RateLimited",
    "Request",
    "ServerError",
    "SimulatedCall",
    "SimulatedCarAPI",
    "SlowCallback",
    "Traffic",
    "Workload",
    "bursts",
    "bursty",
    "car_prices",
    "fetch_price",
    "handle_request",
    "paced",
    "request_fate",
    "seed_job",
    "simulated_call",
    "slow_callback",
    "steady",
    "uniform",
]

_T = TypeVar("_T")


class SimulatedCall(NamedTuple):
    """One simulated I/O call: task `number` waits `seconds`, then answers `number ** 2`."""

    number: int
    """The task's number, 0-based."""
    seconds: float
    """How long the call waits."""


async def simulated_call(call: SimulatedCall) -> int:
    """Wait `call.seconds` (as an API call would), then return `call.number ** 2`."""
    await asyncio.sleep(call.seconds)
    return call.number**2


@dataclass(frozen=True, slots=True)
class Workload:
    """A ready-made job: a function and the params to call it with."""

    name: str
    """A short description, for titles and logs."""
    function: Callable[[Any], Awaitable[Any]]
    """The async function the workers call."""
    params: tuple[Any, ...]
    """The items, in production order."""
    durations: tuple[float, ...]
    """How long each call waits, in the same order."""

    @property
    def sequential_time(self) -> float:
        """Seconds the job takes one call after another: the sum of the durations."""
        return sum(self.durations)

    def __len__(self) -> int:
        return len(self.params)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return seed


def seed_job(tasks: int = 10, *, seed: int = 0) -> Workload:
    """The write-up's job: task `i` waits `random.Random(seed).random() * 2` seconds.

    The waits are drawn in task order and each task returns the square of its number. With
    the defaults (10 tasks, seed 0) the calls add up to 10.690 s; on 5 workers the ideal
    schedule finishes in 2.683 s, about 4x faster.

    Args:
        tasks: number of tasks (>= 0).
        seed: seed of the random waits.
    """
    check_int("tasks", tasks, 0)
    rng = random.Random(_check_seed(seed))
    calls = tuple(SimulatedCall(number, rng.random() * 2) for number in range(tasks))
    return Workload(
        f"seed job: {tasks} calls of 0-2 s (seed {seed})",
        simulated_call,
        calls,
        tuple(call.seconds for call in calls),
    )


def uniform(tasks: int, *, low: float = 0.5, high: float = 1.5, seed: int = 0) -> Workload:
    """`tasks` simulated calls whose waits are uniform between `low` and `high` seconds."""
    check_int("tasks", tasks, 0)
    if not 0 <= low <= high:
        raise ValueError(f"low and high must satisfy 0 <= low <= high, got low={low!r}, high={high!r}")
    rng = random.Random(_check_seed(seed))
    calls = tuple(SimulatedCall(number, rng.uniform(low, high)) for number in range(tasks))
    return Workload(
        f"{tasks} calls of {low:g}-{high:g} s (seed {seed})",
        simulated_call,
        calls,
        tuple(call.seconds for call in calls),
    )


class PriceAPIError(Exception):
    """The simulated car-price API answered with an error."""


_MODELS = ("Corolla", "Civic", "Golf", "Model 3", "Clio", "Focus", "Octavia", "Mazda3")


async def fetch_price(car: dict[str, Any]) -> int:
    """Ask the simulated car-price API for `car`'s price, in whole euros.

    Waits `car["latency"]` seconds like a network call; raises `PriceAPIError` when
    `car["fails"]` is true.
    """
    await asyncio.sleep(car["latency"])
    if car.get("fails"):
        raise PriceAPIError(f"price API error for car {car['id']} ({car['model']})")
    return int(car["base_price"] * (1 - 0.06 * car["age"]))


def car_prices(
    cars: int = 20,
    *,
    seed: int = 0,
    latency: tuple[float, float] = (0.2, 1.5),
    failure_rate: float = 0.0,
) -> Workload:
    """`cars` price look-ups against a simulated API, some of which may fail.

    Each item is a dict with the car's `id`, `model`, `age`, `base_price`, the call's
    `latency` in seconds and whether it `fails`.

    Args:
        cars: number of cars (>= 0).
        seed: seed of every random draw.
        latency: (low, high) bounds of the uniform call latency, in seconds.
        failure_rate: chance that a call fails, from 0 to 1.
    """
    check_int("cars", cars, 0)
    low, high = latency
    if not 0 <= low <= high:
        raise ValueError(f"latency must be (low, high) with 0 <= low <= high, got {latency!r}")
    if not 0 <= failure_rate <= 1:
        raise ValueError(f"failure_rate must be between 0 and 1, got {failure_rate!r}")
    rng = random.Random(_check_seed(seed))
    items: tuple[dict[str, Any], ...] = tuple(
        {
            "id": car_id,
            "model": rng.choice(_MODELS),
            "age": rng.randint(0, 12),
            "base_price": rng.randrange(18_000, 45_000, 500),
            "latency": rng.uniform(low, high),
            "fails": rng.random() < failure_rate,
        }
        for car_id in range(cars)
    )
    return Workload(
        f"{cars} car-price calls of {low:g}-{high:g} s (seed {seed})",
        fetch_price,
        items,
        tuple(item["latency"] for item in items),
    )


async def paced(items: Iterable[_T], interval: float) -> AsyncIterator[_T]:
    """Yield `items` one every `interval` seconds: a steady producer."""
    if interval < 0:
        raise ValueError(f"interval must be >= 0, got {interval!r}")
    for index, item in enumerate(items):
        if index:
            await asyncio.sleep(interval)
        yield item


async def bursts(items: Iterable[_T], size: int, pause: float) -> AsyncIterator[_T]:
    """Yield `items` in bursts of `size` at once, with `pause` seconds between bursts."""
    check_int("size", size, 1)
    if pause < 0:
        raise ValueError(f"pause must be >= 0, got {pause!r}")
    for index, item in enumerate(items):
        if index and index % size == 0:
            await asyncio.sleep(pause)
        yield item


class Request(NamedTuple):
    """One request of a `Traffic` stream: when it arrives, how long it takes, what it carries."""

    number: int
    """0-based position in the stream."""
    arrives_at: float
    """When the request arrives, in seconds since the stream started."""
    seconds: float
    """How long handling it waits (a simulated call)."""
    payload: bytes
    """The data the request carries: what it costs in memory while it waits."""


async def handle_request(request: Request) -> int:
    """Wait `request.seconds`, as a call to a slow service would, then return the payload size."""
    await asyncio.sleep(request.seconds)
    return len(request.payload)


@dataclass(frozen=True, slots=True)
class Traffic:
    """A stream of requests that arrive over time, for `queue_size` and backpressure lessons.

    Unlike a `Workload`, whose items are all there at the start, a `Traffic` stream's requests
    arrive at set times. `source()` yields each one at its arrival time, measured from the moment
    the stream starts; if the consumer is late (a producer blocked on a full queue), the
    requests that arrived meanwhile are yielded at once, as a backlog would be. Each request's
    payload is allocated when it arrives, so memory is held only from its arrival on.
    """

    name: str
    """A short description, for titles and logs."""
    arrivals: tuple[float, ...]
    """When each request arrives, in seconds since the stream started, in order."""
    durations: tuple[float, ...]
    """How long each request takes to handle, in the same order."""
    payload_bytes: int
    """Size of each request's payload."""
    function: Callable[[Request], Awaitable[int]] = field(default=handle_request)
    """The async function that handles one request."""

    def __len__(self) -> int:
        return len(self.arrivals)

    @property
    def sequential_time(self) -> float:
        """Seconds the requests take one after another: the sum of the durations."""
        return sum(self.durations)

    @property
    def span(self) -> float:
        """When the last request arrives."""
        return self.arrivals[-1] if self.arrivals else 0.0

    async def source(self) -> AsyncIterator[Request]:
        """Yield every request at its arrival time (a fresh stream on each call)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for number, (arrives_at, seconds) in enumerate(zip(self.arrivals, self.durations, strict=True)):
            delay = start + arrives_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield Request(number, arrives_at, seconds, bytes(self.payload_bytes))


def _check_traffic(tasks: object, seconds: tuple[float, float], payload_bytes: object, seed: object) -> int:
    check_int("tasks", tasks, 0)
    check_int("payload_bytes", payload_bytes, 0)
    low, high = seconds
    if not 0 <= low <= high:
        raise ValueError(f"seconds must be (low, high) with 0 <= low <= high, got {seconds!r}")
    return _check_seed(seed)


def steady(
    tasks: int = 200,
    *,
    interval: float = 0.1,
    seconds: tuple[float, float] = (0.2, 0.5),
    payload_bytes: int = 100_000,
    seed: int = 0,
) -> Traffic:
    """Requests that arrive one every `interval` seconds: a steady producer.

    Args:
        tasks: number of requests (>= 0).
        interval: seconds between two arrivals (> 0).
        seconds: (low, high) bounds of the uniform handling time of a request.
        payload_bytes: size of each request's payload.
        seed: seed of the handling times.
    """
    rng = random.Random(_check_traffic(tasks, seconds, payload_bytes, seed))
    if not interval > 0:
        raise ValueError(f"interval must be > 0, got {interval!r}")
    return Traffic(
        f"steady: {tasks} requests, one every {interval:g} s",
        tuple(number * interval for number in range(tasks)),
        tuple(rng.uniform(*seconds) for _ in range(tasks)),
        payload_bytes,
    )


def bursty(
    tasks: int = 200,
    *,
    size: int = 20,
    pause: float = 2.0,
    seconds: tuple[float, float] = (0.2, 0.5),
    payload_bytes: int = 100_000,
    seed: int = 0,
) -> Traffic:
    """Requests that arrive `size` at once, one burst every `pause` seconds: a bursty producer.

    With the defaults the average rate is the same as `steady()`'s (10 requests a second), so
    the two differ only in how the requests are bunched.

    Args:
        tasks: number of requests (>= 0).
        size: requests per burst (>= 1).
        pause: seconds between two bursts (> 0).
        seconds: (low, high) bounds of the uniform handling time of a request.
        payload_bytes: size of each request's payload.
        seed: seed of the handling times.
    """
    rng = random.Random(_check_traffic(tasks, seconds, payload_bytes, seed))
    check_int("size", size, 1)
    if not pause > 0:
        raise ValueError(f"pause must be > 0, got {pause!r}")
    return Traffic(
        f"bursty: {tasks} requests, {size} every {pause:g} s",
        tuple((number // size) * pause for number in range(tasks)),
        tuple(rng.uniform(*seconds) for _ in range(tasks)),
        payload_bytes,
    )


CallbackKind = Literal["async", "blocking", "thread"]


@dataclass(slots=True)
class SlowCallback:
    """An `on_task_complete` callback that takes `seconds` per call, and records when it ran.

    It stands for real work done with each result (saving it to a database, writing a file).
    How it waits is the lesson:

    - `"async"`: `await asyncio.sleep(seconds)`, other tasks run meanwhile;
    - `"blocking"`: `time.sleep(seconds)` on the event loop, which freezes every task;
    - `"thread"`: `time.sleep(seconds)` in a thread via `asyncio.to_thread`, the loop stays free.

    On the virtual clock only `"async"` takes virtual time (work outside the loop's timers
    takes none), so compare the three kinds on the real clock.
    """

    seconds: float
    """How long each call takes."""
    kind: CallbackKind = "async"
    """How the call waits: "async", "blocking" or "thread"."""
    calls: list[tuple[int, float, float, float]] = field(default_factory=list)
    """(task_id, task finished_at, call start, call end) per call; call times on the loop's clock."""

    def __call__(self, result: TaskResult) -> Awaitable[None] | None:
        if self.kind == "blocking":
            loop = asyncio.get_running_loop()
            started = loop.time()
            time.sleep(self.seconds)
            self.calls.append((result.task_id, result.finished_at, started, loop.time()))
            return None
        return self._wait(result)

    async def _wait(self, result: TaskResult) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.kind == "thread":
            await asyncio.to_thread(time.sleep, self.seconds)
        else:
            await asyncio.sleep(self.seconds)
        self.calls.append((result.task_id, result.finished_at, started, loop.time()))

    def windows(self) -> list[tuple[float, float]]:
        """(start, end) of each call, in seconds since the job started, in call order.

        The loop's clock is turned into job time by the earliest gap between a task finishing
        and its callback starting: exact on the virtual clock, off by the handler's reaction
        time (microseconds) on the real clock.
        """
        if not self.calls:
            return []
        origin = min(started - finished_at for _, finished_at, started, _ in self.calls)
        return [(started - origin, ended - origin) for _, _, started, ended in self.calls]


def slow_callback(seconds: float, kind: CallbackKind = "async") -> SlowCallback:
    """A fresh `SlowCallback` that takes `seconds` per call and waits the `kind` way.

    Raises:
        ValueError: `seconds` is negative or `kind` is not "async", "blocking" or "thread".
    """
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    if kind not in ("async", "blocking", "thread"):
        raise ValueError(f"kind must be 'async', 'blocking' or 'thread', got {kind!r}")
    return SlowCallback(seconds, kind)


# --------------------------------------------------------------------------------------------
# A flaky, rate-limited API on the virtual clock, and a log of every call a job makes


class ServerError(PriceAPIError):
    """The simulated API answered 500: a failure on its side, worth retrying."""


class RateLimited(PriceAPIError):
    """The simulated API answered 429 Too Many Requests: wait `retry_after` seconds, then retry."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the API asked the caller to wait before trying again."""


RETRYABLE_ERRORS: tuple[type[Exception], ...] = (ServerError, RateLimited)
"""The simulated API's errors worth retrying (as `pcmodel.carapi.RETRYABLE_ERRORS` for the real one)."""

Latency = tuple[float, float] | Callable[[random.Random], float]
"""Seconds an answer takes: `(low, high)` for a uniform draw, or a function of a seeded
`random.Random` that returns the seconds."""


def request_fate(
    seed: int, path: str, served: int, error_rate: float, draw_latency: Callable[[random.Random], float]
) -> tuple[bool, float]:
    """Whether the car-price API fails a request, and how long it takes to answer.

    The `served`-th request for `path` draws from its own seeded stream, so its fate does not
    depend on the order in which concurrent requests arrive. The real server
    (`pcmodel.carapi.CarAPIServer`) and its twin on the virtual clock (`SimulatedCarAPI`)
    both draw here, so they agree request by request.
    """
    rng = random.Random(f"{seed}:{path}:{served}")
    fails = rng.random() < error_rate
    return fails, max(0.0, float(draw_latency(rng)))


class TokenBucket:
    """A token bucket: `rate` tokens a second, holding at most `burst`; it starts full."""

    __slots__ = ("_burst", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = now

    def take(self, now: float) -> float:
        """Take a token and return 0.0, or return the seconds until one will be there."""
        tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self._rate


def check_latency(latency: object) -> Callable[[random.Random], float]:
    """`latency` as a draw: a (low, high) uniform range of seconds, or a function of a random.Random."""
    if callable(latency):
        function: Callable[[random.Random], float] = latency
        return function
    if not isinstance(latency, tuple) or len(latency) != 2:
        raise TypeError(
            f"latency must be a (low, high) tuple of seconds or a function of a random.Random, "
            f"got {latency!r}"
        )
    low, high = latency
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise TypeError(f"latency bounds must be numbers of seconds, got {latency!r}")
    if not 0 <= low <= high:
        raise ValueError(f"latency must be (low, high) with 0 <= low <= high, got {latency!r}")
    low_s, high_s = float(low), float(high)
    return lambda rng: rng.uniform(low_s, high_s)


def check_probability(name: str, value: object) -> float:
    """`value` as a share from 0 to 1, else a TypeError / ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number from 0 to 1, got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


def check_rate(rate_limit: object, burst: object) -> tuple[float | None, int]:
    """`(rate_limit, burst)` checked: a rate > 0 (or None, then no burst) and a burst >= 1."""
    if rate_limit is None:
        if burst is not None:
            raise ValueError(f"burst needs a rate_limit, got burst={burst!r} and rate_limit=None")
        return None, 1
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, int | float):
        raise TypeError(f"rate_limit must be a number of requests per second or None, got {rate_limit!r}")
    if not (rate_limit > 0 and math.isfinite(rate_limit)):
        raise ValueError(f"rate_limit must be > 0 requests per second, got {rate_limit!r}")
    return float(rate_limit), 1 if burst is None else check_int("burst", burst, 1)


class SimulatedCarAPI:
    """The local car-price API (`pcmodel.carapi.CarAPIServer`) as an async function, for virtual time.

    `await api(car_id)` behaves as a `CarPriceClient` call to a `CarAPIServer` with the same
    knobs would: a token bucket (`rate_limit`, `burst`, full at the start) answers
    `RateLimited` at once when it is empty, with the exact wait in `retry_after`; otherwise
    the call waits its latency, then raises `ServerError` with probability `error_rate`, or
    returns a price. Each draw comes from the seed, the car and how many times the car was
    asked for before, drawn in the server's order, so with the same seed and knobs a car
    meets the same fate here as on the real server: which calls fail and how long each one
    takes. Only the prices differ (the twin makes up its own).

    Made of `asyncio.sleep` calls, it runs on the virtual clock: a lesson can replay a real
    job exactly, and turn its knobs with a slider. Make a new one for each job: like the
    server, it remembers how often each car was asked for.

    Args:
        latency: `(low, high)` seconds for a uniform draw, or a function of a seeded
            `random.Random` that returns seconds.
        error_rate: share of the calls that fail with `ServerError`, from 0 to 1.
        rate_limit: calls per second the token bucket lets through, or None for no limit.
        burst: calls the bucket holds (default 1). Needs `rate_limit`.
        seed: seed of every draw.
    """

    def __init__(
        self,
        *,
        latency: Latency = (0.05, 0.25),
        error_rate: float = 0.0,
        rate_limit: float | None = None,
        burst: int | None = None,
        seed: int = 0,
    ) -> None:
        self._draw_latency = check_latency(latency)
        error_rate = check_probability("error_rate", error_rate)
        checked_rate, checked_burst = check_rate(rate_limit, burst)
        self.error_rate = float(error_rate)
        """Share of the calls that fail."""
        self.rate_limit = checked_rate
        """Calls per second let through; None for no limit."""
        self.burst = checked_burst
        """Calls the token bucket holds."""
        self.seed = _check_seed(seed)
        """Seed of every draw."""
        self.requests = 0
        """Calls made, rate-limited ones included."""
        self.answered = 0
        """Calls that returned a price."""
        self.errors_sent = 0
        """Calls that failed with `ServerError`."""
        self.rate_limited = 0
        """Calls turned away with `RateLimited`."""
        self.in_flight = 0
        """Calls being served now."""
        self.max_in_flight = 0
        """Most calls served at once."""
        self.admitted_at: list[float] = []
        """When each call let through the rate limiter arrived, on the loop's clock."""
        self._served: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bucket: TokenBucket | None = None

    def _take_token(self, loop: asyncio.AbstractEventLoop) -> float:
        """Take a token and return 0.0, or return the seconds until one will be there."""
        now = loop.time()
        if loop is not self._loop:  # a new job's loop, a new clock: start with a full bucket
            self._loop = loop
            self._bucket = None if self.rate_limit is None else TokenBucket(self.rate_limit, self.burst, now)
        return 0.0 if self._bucket is None else self._bucket.take(now)

    async def __call__(self, car: int) -> int:
        """Ask for the price of car `car` (an int id), in euros.

        Raises:
            RateLimited: the bucket was empty; `retry_after` says for how long.
            ServerError: the call failed on the API's side.
            TypeError: `car` is not an int.
        """
        if isinstance(car, bool) or not isinstance(car, int):
            raise TypeError(f"car must be an int id, got {car!r:.80}")
        loop = asyncio.get_running_loop()
        self.requests += 1
        wait = self._take_token(loop)
        if wait > 0:
            self.rate_limited += 1
            # As the server's Retry-After-Ms header: whole milliseconds, rounded up.
            retry_after = math.ceil(wait * 1000) / 1000
            raise RateLimited(
                f"car {car}: too many requests, retry after {retry_after:.3f} s", retry_after=retry_after
            )
        self.admitted_at.append(loop.time())
        served = self._served.get(car, 0)
        self._served[car] = served + 1
        # The same draw as the server's for GET /cars/{car}/price.
        fails, latency = request_fate(
            self.seed, f"/cars/{car}/price", served, self.error_rate, self._draw_latency
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(latency)
        finally:
            self.in_flight -= 1
        if fails:
            self.errors_sent += 1
            raise ServerError(f"car {car}: the price API answered 500 (simulated failure)")
        self.answered += 1
        return random.Random(f"price:{car}").randrange(2_000, 40_000, 10)

    def peak_per_second(self, window: float = 1.0) -> int:
        """Most calls let through the rate limiter within any `window` seconds."""
        times = self.admitted_at
        peak = first = 0
        for last, time_ in enumerate(times):
            while times[first] <= time_ - window:
                first += 1
            peak = max(peak, last - first + 1)
        return peak

    def __repr__(self) -> str:
        limit = "no rate limit" if self.rate_limit is None else f"{self.rate_limit:g}/s burst {self.burst}"
        return f"<SimulatedCarAPI error_rate={self.error_rate:g}, {limit}, seed={self.seed}>"


class Call(NamedTuple):
    """One call (one attempt) of a task, as recorded by a `CallLog`."""

    task_id: int
    """The task it belongs to."""
    worker: int
    """The worker that made it."""
    attempt: int
    """1 for the task's first call, 2 for its first retry, and so on."""
    started_at: float
    """When the call started, in seconds since the job started."""
    finished_at: float
    """When it returned or raised."""
    error: BaseException | None
    """What it raised (`asyncio.CancelledError` if it was cut off by a timeout or a cancel)."""

    @property
    def outcome(self) -> Literal["ok", "failed", "rate-limited", "cut off"]:
        """How the call ended: "ok", "failed", "rate-limited" (an error with a `retry_after`), "cut off"."""
        if self.error is None:
            return "ok"
        if isinstance(self.error, asyncio.CancelledError):
            return "cut off"
        if getattr(self.error, "retry_after", None) is not None:
            return "rate-limited"
        return "failed"


@dataclass(slots=True)
class CallLog:
    """Wraps an async function and records every call of it: each attempt of each task.

    A `TaskResult` has a task's window and how many attempts it took; between its attempts it
    waited (for a retry's backoff, or for the rate limit). Pass a `CallLog` as the job's
    function to see each attempt: `log.calls(summary)` places them in the job's time, ready
    for `plot_timeline(summary, calls=...)`.

        log = workloads.CallLog(fetch_price)
        summary = pcmodel.run_job(log, cars, retries=3, clock="virtual")
        pcmodel.plot_timeline(summary, calls=log.calls(summary))

    Use a fresh log for each job.
    """

    function: Callable[[Any], Awaitable[Any]]
    """The async function whose calls are recorded."""
    records: list[tuple[Any, float, float, BaseException | None]] = field(default_factory=list)
    """(params, start, end, error) per call, times on the loop's clock, in the order they ended."""

    async def __call__(self, params: Any) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            value = await self.function(params)
        except BaseException as error:
            self.records.append((params, started, loop.time(), error))
            raise
        self.records.append((params, started, loop.time(), None))
        return value

    def calls(self, summary: JobSummary) -> list[Call]:
        """Every recorded call, matched to its task in `summary` and placed in the job's time.

        The loop's clock is turned into job time by the earliest gap between a task starting
        and its first call: exact on the virtual clock (the first task's first call starts
        the moment its worker takes it), within microseconds on the real clock. Calls are
        matched to tasks by their params (the same object), and by time when several tasks
        share one.

        Args:
            summary: the job's summary, from a run with `trace=True`.

        Returns:
            The calls, ordered by start time.

        Raises:
            ValueError: the job ran with `trace=False`.
        """
        if summary.results is None:
            raise ValueError("CallLog.calls needs the job's trace: run it with trace=True")
        tasks: dict[int, list[TaskResult]] = {}
        for result in summary.results:
            tasks.setdefault(id(result.params), []).append(result)
        records = sorted((r for r in self.records if id(r[0]) in tasks), key=lambda r: r[1])
        if not records:
            return []
        first_call: dict[int, float] = {}
        for params, started, _, _ in records:
            first_call.setdefault(id(params), started)
        origin = min(started - min(r.started_at for r in tasks[key]) for key, started in first_call.items())
        calls: list[Call] = []
        attempts: dict[int, int] = {}
        for params, started, finished, error in records:
            at = started - origin
            # The task of these params whose window holds the call (the latest to start, if any doubt).
            candidates = [r for r in tasks[id(params)] if r.started_at <= at + 1e-9] or tasks[id(params)][:1]
            task = max(candidates, key=lambda r: r.started_at)
            attempts[task.task_id] = attempts.get(task.task_id, 0) + 1
            calls.append(
                Call(task.task_id, task.worker, attempts[task.task_id], at, finished - origin, error)
            )
        return calls
