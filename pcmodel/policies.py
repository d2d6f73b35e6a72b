"""Policies for calls that can fail, hang or be throttled: timeouts, retries, rate limits.

Real APIs are slow, flaky and rate-limited. A job can bound each call's time (`timeout=`),
try a failed call again with exponential backoff and jitter (`retries=`), and keep all its
workers together under a request rate (`max_per_second=`, with a `burst`). All of it reads
the event loop's clock, so it works, exactly, in virtual time too.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["MIN_RATE", "AttemptGate", "RateLimiter", "Retry", "call_with_policies"]

MIN_RATE = 1e-6
"""The slowest rate limit accepted, in calls per second (one call every 11.6 days): a slower one
would leave a job waiting for longer than any job runs (1e-300 would be 3e292 years)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """When and how to try a failed call again.

    The wait before retry `n` (1-based) is `backoff * multiplier ** (n - 1)` seconds, capped at
    `max_backoff`, then spread by +/- `jitter` (a fraction) so that workers that failed together
    do not retry together. An exception with a `retry_after` attribute (seconds, as an HTTP 429
    answer's Retry-After header gives) makes the wait at least that long (spread upwards by the
    jitter).

    Example:
        `run_job(fetch, cars, retries=Retry(3, on=(TimeoutError, ConnectionError)), timeout=2)`
    """

    times: int = 3
    """How many retries at most (so up to `times + 1` attempts)."""
    on: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (Exception,)
    """The exception types worth retrying, or a function that says whether an error is."""
    backoff: float = 0.1
    """Wait before the first retry, in seconds."""
    multiplier: float = 2.0
    """Growth of the wait from one retry to the next."""
    max_backoff: float = 30.0
    """Longest wait between two attempts, in seconds."""
    jitter: float = 0.5
    """Random spread of each wait, as a fraction of it (0 for none, at most 1)."""
    seed: int | None = None
    """Seed of the jitter's random numbers, for repeatable runs; None for a random one."""
    _random: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.times, bool) or not isinstance(self.times, int):
            raise TypeError(f"Retry times must be an int, got {self.times!r}")
        if self.times < 0:
            raise ValueError(f"Retry times must be >= 0, got {self.times!r}")
        if not callable(self.on) and not (
            isinstance(self.on, tuple)
            and all(isinstance(kind, type) and issubclass(kind, BaseException) for kind in self.on)
        ):
            raise TypeError(
                f"Retry on must be a tuple of exception types or a function of the exception, got {self.on!r}"
            )
        for name in ("backoff", "multiplier", "max_backoff", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Retry {name} must be a number, got {value!r} ({type(value).__name__})")
            if name != "jitter" and (not math.isfinite(value) or value < 0):
                raise ValueError(f"Retry {name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Retry jitter must be between 0 and 1, got {self.jitter!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise TypeError(
                f"Retry seed must be an int or None, got {self.seed!r} ({type(self.seed).__name__})"
            )
        object.__setattr__(self, "_random", random.Random(self.seed))

    def wanted(self, error: BaseException) -> bool:
        """True if `error` is worth another attempt."""
        if isinstance(self.on, tuple):
            return isinstance(error, self.on)
        return bool(self.on(error))

    def _backoff(self, retry: int) -> float:
        """`backoff * multiplier ** (retry - 1)`, capped at `max_backoff` before it can overflow."""
        if self.backoff == 0 or self.multiplier <= 1:
            return min(self.max_backoff, self.backoff * self.multiplier ** (retry - 1))
        # The wait reaches the cap after `n` steps, where backoff * multiplier ** n = max_backoff:
        # from then on it is the cap, and the power (which overflows a float for a large
        # retry count or multiplier) is never computed.
        steps_to_cap = (
            math.log(self.max_backoff / self.backoff, self.multiplier) if self.max_backoff > 0 else 0
        )
        if retry - 1 >= steps_to_cap:
            return self.max_backoff
        return min(self.max_backoff, self.backoff * self.multiplier ** (retry - 1))

    def delay(self, retry: int, error: BaseException | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based) after `error`."""
        wait = self._backoff(retry)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and not isinstance(retry_after, bool) and retry_after > wait:
            # The server said when: never earlier, and spread upwards, or every worker told
            # the same time would come back at the same moment and be turned away again.
            return float(retry_after) * (1 + self.jitter * self._random.random())
        if self.jitter:
            wait *= 1 + self.jitter * (2 * self._random.random() - 1)
        return wait


class RateLimiter:
    """At most `rate` calls per second across all workers, with bursts of up to `burst`.

    A generic cell rate algorithm: calls are booked on a schedule of one every `1 / rate`
    seconds, and a call may start up to `burst - 1` intervals ahead of its booking. Over any window of `t`
    seconds at most `burst + rate * t` calls start. Booking is synchronous, so concurrent
    workers never race for a slot.
    """

    __slots__ = ("_interval", "_next", "_time", "_tolerance", "burst", "rate")

    def __init__(self, rate: float, burst: int = 1, *, time: Callable[[], float]) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise TypeError(f"max_per_second must be a number, got {rate!r} ({type(rate).__name__})")
        if not math.isfinite(rate) or rate < MIN_RATE:
            raise ValueError(
                f"max_per_second must be a finite number >= {MIN_RATE:g} (one call every "
                f"{1 / MIN_RATE / 86400:.1f} days), got {rate!r}"
            )
        if isinstance(burst, bool) or not isinstance(burst, int):
            raise TypeError(f"burst must be an int, got {burst!r} ({type(burst).__name__})")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._time = time
        self._next = -math.inf

    def reserve(self) -> float:
        """Book the next call's slot; return the seconds to wait for it (0 or less: none)."""
        now = self._time()
        # `_next` is the theoretical arrival time: when the next call would be due if calls
        # came exactly at the rate. A call may start up to `_tolerance` before it.
        due = max(self._next, now)
        self._next = due + self._interval
        return due - self._tolerance - now

    async def acquire(self) -> None:
        """Wait for this call's slot."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


class AttemptGate(Protocol):
    """Sees every attempt of a call: may hold it back before it starts, hears how it ended.

    How an adaptive pool (`pcmodel._pool`) learns each attempt's outcome, retries included,
    and how a paused job holds back a retry.
    """

    async def enter(self) -> float:
        """Wait until the attempt may start; return its start on the job's clock."""

    def leave(self, started_at: float, error: BaseException | None) -> None:
        """The attempt that `enter` let start ended: returned (`error` None) or raised `error`."""


async def call_with_policies(
    function: Callable[[Any], Awaitable[Any]],
    params: Any,
    attempts: list[int],
    time_limit: float | None,
    retry: Retry | None,
    limiter: RateLimiter | None,
    gate: AttemptGate | None = None,
) -> Any:
    """Call `function(params)` under a time limit, a retry policy and a rate limit.

    `attempts[0]` is set to the number of attempts made, whatever the outcome. A `gate`, if
    given, is entered before each attempt and told how each one ended.

    Raises:
        The last attempt's exception, when no retry is left or wanted. A call that ran out of
        time raises `TimeoutError` saying so.
    """
    attempt = 0
    while True:
        attempt += 1
        attempts[0] = attempt
        if limiter is not None:
            await limiter.acquire()
        started_at = 0.0 if gate is None else await gate.enter()
        outcome: BaseException | None = None
        try:
            if time_limit is None:
                return await function(params)
            scope = asyncio.timeout(time_limit)
            try:
                async with scope:
                    return await function(params)
            except TimeoutError as error:
                if scope.expired():
                    raise TimeoutError(
                        f"the call took longer than the timeout of {time_limit:g} s"
                    ) from error
                raise
        except Exception as error:
            outcome = error
            if retry is None or attempt > retry.times or not retry.wanted(error):
                raise
            wait = retry.delay(attempt, error)
        except BaseException as error:
            outcome = error
            raise
        finally:
            if gate is not None:
                gate.leave(started_at, outcome)
        await asyncio.sleep(wait)
