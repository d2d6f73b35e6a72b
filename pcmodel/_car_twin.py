"""The car-price API's twin on the virtual clock: `SimulatedCarAPI`.

`pcmodel.carapi` serves the car-price API over real HTTP; this is the same API as an async
function made of `asyncio.sleep` calls, so a lesson can replay a real job exactly, at once, and
turn its knobs with a slider. It draws each request's fate and runs its rate limiter with the
server's own code (`pcmodel._carapi_shared`), turns calls away above its capacity as the
server does, and raises the same error classes. Import it from `pcmodel.workloads`.
"""

from __future__ import annotations

import asyncio
import random

from pcmodel._carapi_shared import (
    DEFAULT_LATENCY,
    InFlight,
    Latency,
    RateLimited,
    ServerError,
    TokenBucket,
    check_capacity,
    check_latency,
    check_probability,
    check_rate,
    check_seed,
    request_fate,
    retry_after_ms,
)

__all__ = ["SimulatedCarAPI"]


class SimulatedCarAPI:
    """The local car-price API (`pcmodel.carapi.CarAPIServer`) as an async function, for virtual time.

    `await api(car_id)` behaves as a `CarPriceClient` call to a `CarAPIServer` with the same
    knobs would. With a `capacity` of K, a call that finds K calls being served is turned away
    at once with `RateLimited`, its `retry_after` the exact wait until a slot frees. Then a
    token bucket (`rate_limit`, `burst`, full at the start) answers `RateLimited` at once when
    it is empty, with the exact wait in `retry_after`; otherwise the call waits its latency,
    then raises `ServerError` with probability `error_rate`, or returns a price. Each draw
    comes from the seed, the car and how many times the car was asked for before, drawn in
    the server's order, so with the same seed and knobs a car meets the same fate here as on
    the real server: which calls fail and how long each one takes. Only the prices differ
    (the twin makes up its own). Its errors are the client's own classes, so one
    `except RateLimited` or `retries=Retry(on=RETRYABLE_ERRORS)` serves both; it refuses the
    knobs the server refuses, with the same messages.

    Made of `asyncio.sleep` calls, it runs on the virtual clock: a lesson can replay a real
    job exactly, and turn its knobs with a slider. Make a new one for each job: like the
    server, it remembers how often each car was asked for.

    The capacity can change while a job runs, as a server's would under load: set
    `api.capacity = 5` from an `on_task_complete` callback, or from a timer such as
    `asyncio.get_running_loop().call_later(10, setattr, api, "capacity", 5)`. The calls in
    flight finish; newcomers are turned away until fewer than 5 remain.

        api = workloads.SimulatedCarAPI(capacity=20, seed=1)
        summary = pcmodel.run_job(api, range(500), workers=40, clock="virtual")
        api.over_capacity  # calls turned away because 20 were already being served

        def slow_down(result):  # the API slows down once car 200 is priced
            if result.task_id == 200:
                api.capacity = 5

    Args:
        latency: `(low, high)` seconds for a uniform draw, or a function of a seeded
            `random.Random` that returns seconds.
        error_rate: share of the calls that fail with `ServerError`, from 0 to 1.
        rate_limit: calls per second the token bucket lets through (at least one a day), or
            None for no limit.
        burst: calls the bucket holds (default 1, at most 10**9). Needs `rate_limit`.
        capacity: most calls served at once (1 to 10**9), or None (default) for no limit.
        seed: seed of every draw.
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
    ) -> None:
        self._draw_latency = check_latency(latency)
        error_rate = check_probability("error_rate", error_rate)
        checked_rate, checked_burst = check_rate(rate_limit, burst)
        self._capacity = check_capacity(capacity)
        self.error_rate = float(error_rate)
        """Share of the calls that fail."""
        self.rate_limit = checked_rate
        """Calls per second let through; None for no limit."""
        self.burst = checked_burst
        """Calls the token bucket holds."""
        self.seed = check_seed(seed)
        """Seed of every draw."""
        self.requests = 0
        """Calls made, turned-away ones included."""
        self.answered = 0
        """Calls that returned a price."""
        self.errors_sent = 0
        """Calls that failed with `ServerError`."""
        self.rate_limited = 0
        """Calls turned away with `RateLimited` because the token bucket was empty."""
        self.over_capacity = 0
        """Calls turned away with `RateLimited` because `capacity` calls were being served."""
        self.max_in_flight = 0
        """Most calls served at once."""
        self.admitted_at: list[float] = []
        """When each call let through the rate limiter arrived, on the loop's clock."""
        self._served: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bucket: TokenBucket | None = None
        self._in_flight = InFlight()

    @property
    def capacity(self) -> int | None:
        """Most calls served at once, or None for no limit; set it to change it, even mid-job."""
        return self._capacity

    @capacity.setter
    def capacity(self, capacity: int | None) -> None:
        self._capacity = check_capacity(capacity)

    @property
    def in_flight(self) -> int:
        """Calls being served now."""
        return len(self._in_flight)

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
            RateLimited: `capacity` calls were being served, or the bucket was empty;
                `retry_after` says for how long.
            ServerError: the call failed on the API's side.
            TypeError: `car` is not an int.
        """
        if isinstance(car, bool) or not isinstance(car, int):
            raise TypeError(f"car must be an int id, got {car!r:.80}")
        loop = asyncio.get_running_loop()
        self.requests += 1
        wait = self._in_flight.wait(self._capacity, loop.time())
        if wait > 0:
            self.over_capacity += 1
            retry_after = retry_after_ms(wait) / 1000  # as the server's Retry-After-Ms header
            raise RateLimited(
                f"car {car}: over capacity ({self._capacity} calls in flight), retry after {retry_after:.3f} s",
                car_id=car,
                retry_after=retry_after,
            )
        wait = self._take_token(loop)
        if wait > 0:
            self.rate_limited += 1
            # As the server's Retry-After-Ms header: whole milliseconds, rounded up.
            retry_after = retry_after_ms(wait) / 1000
            raise RateLimited(
                f"car {car}: too many requests, retry after {retry_after:.3f} s",
                car_id=car,
                retry_after=retry_after,
            )
        self.admitted_at.append(loop.time())
        served = self._served.get(car, 0)
        self._served[car] = served + 1
        # The same draw as the server's for GET /cars/{car}/price.
        fails, latency = request_fate(
            self.seed, f"/cars/{car}/price", served, self.error_rate, self._draw_latency
        )
        with self._in_flight.serving(loop.time() + latency):
            self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
            await asyncio.sleep(latency)
        if fails:
            self.errors_sent += 1
            raise ServerError(f"car {car}: the price API answered 500 (simulated failure)", car_id=car)
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
        if self._capacity is not None:
            limit += f", capacity {self._capacity}"
        return f"<SimulatedCarAPI error_rate={self.error_rate:g}, {limit}, seed={self.seed}>"
