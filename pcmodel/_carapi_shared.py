"""The car-price API's own parts, shared by the HTTP server and client and by the virtual twin.

The API exists twice: for real, as an aiohttp server and client (`pcmodel.carapi`), and as
a twin made of `asyncio.sleep` calls for the virtual clock (`pcmodel.workloads.SimulatedCarAPI`).
What makes them the same API lives here, once:

- its errors (`PriceAPIError`, `ServerError`, `RateLimited`, `RETRYABLE_ERRORS`), the very
  same classes on both sides, so `except workloads.RateLimited` catches what the real client
  raises, and `except carapi.RateLimited` what the twin raises;
- its catalogue of cars (`car_info`);
- how a request's fate is drawn (`request_fate`), its rate limiter (`TokenBucket`) and its
  capacity (`InFlight`: the requests being served, and when a slot frees), so that with the
  same knobs the twin turns away and fails the same calls as the server;
- the checks of its knobs (`check_latency`, `check_probability`, `check_rate`,
  `check_capacity`, `check_seed`), so both refuse the same values with the same words.

Nothing here touches the network or imports aiohttp: the twin must work without the `api`
extra. Import the names from `pcmodel.workloads` or `pcmodel.carapi`, not from here.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import math
import random
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final

from pcmodel._validate import check_int

__all__ = [
    "CAR_MODELS",
    "DEFAULT_LATENCY",
    "RETRYABLE_ERRORS",
    "InFlight",
    "Latency",
    "PriceAPIError",
    "RateLimited",
    "ServerError",
    "TokenBucket",
    "car_info",
    "check_capacity",
    "check_latency",
    "check_probability",
    "check_rate",
    "check_seed",
    "is_finite",
    "request_fate",
    "retry_after_ms",
]

# --------------------------------------------------------------------------------------------
# Errors


class PriceAPIError(Exception):
    """The car-price API answered with an error.

    The simulated calls (`workloads.fetch_price`), the twin (`workloads.SimulatedCarAPI`) and
    the HTTP client (`carapi.CarPriceClient`, which also calls it `CarAPIError`) all raise
    this class or one of its subclasses. A retry layer reads `status`, `retryable` and
    `retry_after` to decide whether, and when, to try again.

    Args:
        message: what went wrong, for a person.
        status: the HTTP status of the answer; default: the class's own (500 for a
            `ServerError`, 429 for a `RateLimited`, None for this class).
        car_id: the car that was asked for, if known.
        retry_after: seconds the API asked the caller to wait before trying again, if it said.
    """

    _default_status: ClassVar[int | None] = None

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        car_id: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = self._default_status if status is None else status
        """The HTTP status of the answer (None for a simulated call that has none)."""
        self.car_id = car_id
        """The car that was asked for, if known."""
        self.retry_after = retry_after
        """Seconds the API asked the caller to wait before trying again, if it said."""

    @property
    def retryable(self) -> bool:
        """True when trying again may succeed: a 5xx or a 429 answer."""
        return self.status is not None and (self.status == 429 or self.status >= 500)

    def __reduce__(self) -> tuple[Any, ...]:
        # An exception pickles (and copies) only its `args`: keep the keyword fields too.
        rebuild = functools.partial(
            type(self), status=self.status, car_id=self.car_id, retry_after=self.retry_after
        )
        return rebuild, self.args


class ServerError(PriceAPIError):
    """The API answered 5xx: a failure on its side, worth retrying."""

    _default_status = 500


class RateLimited(PriceAPIError):
    """The API answered 429 Too Many Requests: wait `retry_after` seconds, then retry."""

    _default_status = 429


# One class, one name: errors and retry rules are named `module.QualName` (the broker sends
# them so, and lessons print them), and `pcmodel.workloads` is where every install has them.
for _error in (PriceAPIError, ServerError, RateLimited):
    _error.__module__ = "pcmodel.workloads"
del _error

RETRYABLE_ERRORS: tuple[type[Exception], ...] = (ServerError, RateLimited)
"""The API's answers worth retrying, from the twin and the HTTP client alike.

`pcmodel.carapi.RETRYABLE_ERRORS` adds aiohttp's `ClientConnectionError`: only real sockets
fail to connect."""

# --------------------------------------------------------------------------------------------
# The catalogue

Latency = tuple[float, float] | Callable[[random.Random], float]
"""Seconds an answer takes: `(low, high)` for a uniform draw, or a function of a seeded
`random.Random` that returns the seconds (for example `lambda rng: rng.expovariate(20)`)."""

DEFAULT_LATENCY: Final = (0.05, 0.25)
"""How long an answer takes unless told otherwise: uniform between these seconds (server,
twin and `pcmodel serve-api` alike)."""

MAX_CAR_ID: Final = 10**9
"""The largest car id the API knows."""

CAR_MODELS: Final = (
    ("Toyota Corolla", "Corolla", 27_000),
    ("Honda Civic", "Civic", 29_000),
    ("Volkswagen Golf", "Golf", 31_000),
    ("Tesla Model 3", "Model 3", 42_000),
    ("Renault Clio", "Clio", 19_000),
    ("Ford Focus", "Focus", 24_000),
    ("Skoda Octavia", "Octavia", 28_000),
    ("Mazda 3", "Mazda3", 26_000),
    ("BMW 3 Series", "3 Series", 46_000),
    ("Fiat 500", "500", 17_000),
)
"""The car models: full name, short name, base price in euros when new."""

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
    if car_id > MAX_CAR_ID:
        raise ValueError(f"car_id must be <= {MAX_CAR_ID}, got {car_id!r}")
    rng = random.Random(car_id)
    model, _, new_price = rng.choice(CAR_MODELS)
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
# A request's fate and the rate limiter


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


def retry_after_ms(wait: float) -> int:
    """`wait` seconds as the whole milliseconds of a `Retry-After-Ms` header, rounded up.

    Rounded up so that a client is never invited back too early, but not for float noise: a
    wait of 0.05 s computed as 0.05000000000000004 is 50 ms, not 51.
    """
    return math.ceil(round(wait * 1000, 6))


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


_MIN_CAPACITY_WAIT: Final = 0.001  # seconds: the shortest Retry-After of a request over capacity


class InFlight:
    """The requests an API is serving, and when each will be answered: its capacity check.

    An API with a capacity of K serves at most K requests at once: one that arrives while K
    are being served is turned away at once (429), told to come back when a slot frees. The
    API draws each request's latency as it admits it, so it knows when each one will be
    answered and its `Retry-After` is exact: the moment enough of them end that one fewer
    than K remain. A capacity lowered below the requests in flight lets them finish and turns
    every newcomer away until they have.
    """

    __slots__ = ("_ends",)

    def __init__(self) -> None:
        self._ends: list[float] = []

    def __len__(self) -> int:
        """Requests being served now."""
        return len(self._ends)

    def wait(self, capacity: int | None, now: float) -> float:
        """0.0 if a request arriving `now` may be served, else the seconds until a slot frees.

        The wait is at least a millisecond: an answer due now but not yet sent (its timer has
        not run, or the loop is late) still holds its slot, and "retry after 0 s" would invite
        the same refusal again.
        """
        if capacity is None or len(self._ends) < capacity:
            return 0.0
        # Below the capacity once len - capacity + 1 of the requests have been answered.
        frees_at = heapq.nsmallest(len(self._ends) - capacity + 1, self._ends)[-1]
        return max(frees_at - now, _MIN_CAPACITY_WAIT)

    @contextlib.contextmanager
    def serving(self, ends_at: float) -> Iterator[None]:
        """Count a request as being served until the block ends (answered or cancelled)."""
        self._ends.append(ends_at)
        try:
            yield
        finally:
            self._ends.remove(ends_at)


# --------------------------------------------------------------------------------------------
# The knobs' checks

# A token may take at most a day to come back: a slower rate would ask clients to wait for
# ages (or, below about 1e-308 per second, forever, which no header can say).
_MIN_RATE: Final = 1 / 86_400
_MAX_BURST: Final = 10**9
_MAX_CAPACITY: Final = 10**9


def is_finite(value: float) -> bool:
    """True for a finite number; False for inf, nan and an int too large for a float."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_seed(seed: object) -> int:
    """`seed` as an int, else a TypeError."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return seed


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
    if not (is_finite(low) and is_finite(high)):
        raise ValueError(f"latency bounds must be finite numbers of seconds, got {latency!r}")
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
    """`(rate_limit, burst)` checked: a rate from one a day up (or None, then no burst), a burst >= 1."""
    if rate_limit is None:
        if burst is not None:
            raise ValueError(f"burst needs a rate_limit, got burst={burst!r} and rate_limit=None")
        return None, 1
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, int | float):
        raise TypeError(f"rate_limit must be a number of requests per second or None, got {rate_limit!r}")
    if not (rate_limit > 0 and is_finite(rate_limit)):
        raise ValueError(f"rate_limit must be > 0 requests per second, got {rate_limit!r}")
    if rate_limit < _MIN_RATE:
        raise ValueError(f"rate_limit must be >= 1/86400 requests per second (one a day), got {rate_limit!r}")
    checked_burst = 1 if burst is None else check_int("burst", burst, 1)
    if checked_burst > _MAX_BURST:
        raise ValueError(f"burst must be <= {_MAX_BURST}, got {burst!r}")
    return float(rate_limit), checked_burst


def check_capacity(capacity: object) -> int | None:
    """`capacity` checked: None for no limit, or an int from 1 to 10**9 requests served at once."""
    if capacity is None:
        return None
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"capacity must be an int number of requests in flight or None, got {capacity!r}")
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1 request in flight (None: no limit), got {capacity!r}")
    if capacity > _MAX_CAPACITY:
        raise ValueError(f"capacity must be <= {_MAX_CAPACITY}, got {capacity!r}")
    return capacity
