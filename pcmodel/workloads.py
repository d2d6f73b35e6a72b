"""Seeded simulated workloads, for the lessons, the tests and the demo; and where to import them.

Every workload is made of `asyncio.sleep` calls, so it runs the same in real time and,
instantly and exactly, in virtual time. The random draws come from `random.Random(seed)`:
the same seed gives the same job, everywhere.

This module holds the ready-made jobs (`seed_job`, `uniform`, `car_prices` and its
`fetch_price`) and is the one place to import every simulated piece from; each of the others
lives in a module of its own subject:

- items that arrive over time, `paced`, `bursts`, `steady`, `bursty`, `Traffic`
  (`pcmodel/_traffic.py`);
- a slow `on_task_complete`, `SlowCallback` (`pcmodel/_slow_callback.py`);
- the car-price API's twin on the virtual clock, `SimulatedCarAPI` (`pcmodel/_car_twin.py`),
  with the API's errors, shared with the real HTTP client (`pcmodel/_carapi_shared.py`):
  `except workloads.RateLimited` catches what `pcmodel.carapi`'s client raises too;
- a log of every call of a job, `CallLog` (`pcmodel/_call_log.py`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from pcmodel._call_log import Call, CallLog
from pcmodel._car_twin import SimulatedCarAPI
from pcmodel._carapi_shared import (
    CAR_MODELS,
    RETRYABLE_ERRORS,
    Latency,
    PriceAPIError,
    RateLimited,
    ServerError,
    check_seed,
    request_fate,
)
from pcmodel._slow_callback import SlowCallback, slow_callback
from pcmodel._traffic import Request, Traffic, bursts, bursty, handle_request, paced, steady
from pcmodel._validate import check_int

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
    rng = random.Random(check_seed(seed))
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
    rng = random.Random(check_seed(seed))
    calls = tuple(SimulatedCall(number, rng.uniform(low, high)) for number in range(tasks))
    return Workload(
        f"{tasks} calls of {low:g}-{high:g} s (seed {seed})",
        simulated_call,
        calls,
        tuple(call.seconds for call in calls),
    )


# The short names of the catalogue's first eight models: the toy API's list since the first
# lessons (another list would change every seeded car).
_MODELS = tuple(short for _, short, _ in CAR_MODELS[:8])


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
    rng = random.Random(check_seed(seed))
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
