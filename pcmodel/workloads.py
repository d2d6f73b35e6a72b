"""Seeded simulated workloads, for the lessons, the tests and the demo.

Every workload is made of `asyncio.sleep` calls, so it runs the same in real time and,
instantly and exactly, in virtual time. The random draws come from `random.Random(seed)`:
the same seed gives the same job, everywhere.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from pcmodel._validate import check_int

if TYPE_CHECKING:
    from pcmodel.records import TaskResult

__all__ = [
    "PriceAPIError",
    "Request",
    "SimulatedCall",
    "SlowCallback",
    "Traffic",
    "Workload",
    "bursts",
    "bursty",
    "car_prices",
    "fetch_price",
    "handle_request",
    "paced",
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
