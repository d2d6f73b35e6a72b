"""Items that arrive over time: pacers for any params, and request streams for backpressure.

A `Workload`'s items are all there at the start; here they are not. `paced` and `bursts`
yield any items at a steady pace or in bursts, to feed a job as a slow producer would.
`steady` and `bursty` make a `Traffic` stream of `Request`s that arrive at set times and
carry a payload, for the lessons on `queue_size`, backpressure and memory. Every wait is an
`asyncio.sleep`, so they run the same on the real and the virtual clock. Import them from
`pcmodel.workloads`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from pcmodel._carapi_shared import check_seed
from pcmodel._validate import check_int

__all__ = ["Request", "Traffic", "bursts", "bursty", "handle_request", "paced", "steady"]

_T = TypeVar("_T")


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
    return check_seed(seed)


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
