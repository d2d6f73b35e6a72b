"""Adaptive concurrency: a pool that finds by itself how many calls an API can take at once.

A fixed pool must be guessed: too few workers and the job crawls, too many and the API
answers 429 (Too Many Requests) or times out. `workers=Adaptive(min=1, max=200)` asks the
job to measure instead, the way Netflix's concurrency-limits library and TCP do (AIMD:
additive increase, multiplicative decrease). A limit between `min` and `max` says how many
calls may be in flight; every attempt's outcome feeds it (`AimdLimit`):

- a **success** grows the limit, but only while the pool uses at least half of it (a pool
  that is not busy has no evidence that more would be welcome). Until the first congestion
  each success adds one, so the limit doubles every round trip (TCP's slow start); after it,
  one per round trip (one more after `limit` successes);
- a **drop** (the attempt was rate limited, see `is_rate_limited`, or timed out) cuts the
  limit to `backoff` times itself, at most once per congestion episode: a drop from an
  attempt that started before the latest cut says nothing new (it was sent under the old
  limit), so one burst of 429s cannot collapse the limit to `min`;
- **other errors and cancellations** are ignored: a bad item is not congestion.

An error's `retry_after` (seconds, as an HTTP Retry-After header gives) pauses the start of
new attempts until then (at most `max_pause`), separately from the limit. Everything reads the
job's clock: a virtual-clock run is exact and repeatable.

`Adaptive(mode="gradient")` moves the limit by latency too (`GradientLimit`), in the manner of
Netflix's Gradient2 limit and Envoy's adaptive concurrency filter, for APIs that queue the
calls they cannot serve instead of refusing them (AIMD, which hears no 429, would grow to
`max` while every call waits in line). Slow start doubles the limit until a call takes more
than `tolerance` times the fastest one seen (the calls began to queue), then falls back to
half; from there, each round trip of successes gives a median latency, compared with the
fastest median seen: within `tolerance` times it, the limit grows by about its square root
per round trip; past it, the limit shrinks in proportion. Drops cut it as AIMD's do.

`AimdLimit` and `GradientLimit` know nothing of workers or queues, so any transport can feed
them (`make_limit` makes the one a spec asks for): the in-process one does (`pcmodel._pool`),
attempt by attempt, retries included.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from pcmodel._validate import MAX_WORKERS
from pcmodel.records import Drop, LimitChange, TaskResult

__all__ = [
    "Adaptive",
    "AimdLimit",
    "DropKind",
    "GradientLimit",
    "Limit",
    "drop_kind",
    "drops_of_results",
    "is_rate_limited",
    "make_limit",
]

DropKind = Literal["rate_limited", "timeout"]

_CONGESTED_STATUSES = frozenset({429, 503})
"""HTTP statuses that mean "too much at once": Too Many Requests, Service Unavailable."""


@dataclass(frozen=True, slots=True)
class Adaptive:
    """Ask a job to find its own concurrency: `run_job(fetch, cars, workers=Adaptive(max=100))`.

    The job runs at most `max` worker tasks, and lets at most `limit` calls be in flight, a
    limit that starts at `initial` and moves between `min` and `max` with each attempt's
    outcome (see `pcmodel.adaptive`). `JobSummary.limit_changes` records every step and
    `JobSummary.drops` every 429 and timeout; `plot_timeline` draws both.

    Raises:
        TypeError, ValueError: a field of the wrong type or out of range, when it is made.
    """

    min: int = 1
    """The lowest the limit goes (>= 1)."""
    max: int = 200
    """The highest the limit goes, and the most worker tasks the job runs (>= min, at most
    `pcmodel._validate.MAX_WORKERS`, 10 000)."""
    initial: int | None = None
    """Where the limit starts (between min and max); None for `min`."""
    backoff: float = 0.9
    """What a congestion episode multiplies the limit by (0 < backoff < 1); Netflix's AIMD
    default. 0.5 halves it, as TCP does: faster off an overload, a deeper sawtooth after."""
    congestion: tuple[type[BaseException], ...] = ()
    """More exception types that mean "rate limited" for this API (beside HTTP 429 and 503
    and the car API's `RateLimited`, see `is_rate_limited`)."""
    max_pause: float = 60.0
    """The longest a Retry-After may hold every new attempt, in seconds: a longer one (from a
    broken or hostile server: "Retry-After: 86400") is cut to this."""
    mode: Literal["aimd", "gradient"] = "aimd"
    """"aimd": the limit moves on drops alone; "gradient": on latency too (see the module)."""
    tolerance: float = 1.5
    """In "gradient" mode: how many times the fastest latency seen a round trip's median
    may reach before the limit shrinks (> 1)."""

    def __post_init__(self) -> None:
        for name in ("min", "max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Adaptive {name} must be an int, got {value!r} ({type(value).__name__})")
        if self.min < 1:
            raise ValueError(f"Adaptive min must be >= 1, got {self.min!r}")
        if self.max < self.min:
            raise ValueError(f"Adaptive max must be >= min ({self.min}), got {self.max!r}")
        if self.max > MAX_WORKERS:
            raise ValueError(
                f"Adaptive max must be <= {MAX_WORKERS}, got {self.max!r}: the pool may grow to "
                "max workers, each a task"
            )
        initial = self.initial
        if initial is not None:
            if isinstance(initial, bool) or not isinstance(initial, int):
                raise TypeError(
                    f"Adaptive initial must be an int or None, got {initial!r} ({type(initial).__name__})"
                )
            if not self.min <= initial <= self.max:
                raise ValueError(
                    f"Adaptive initial must be between min ({self.min}) and max ({self.max}), got {initial!r}"
                )
        backoff = self.backoff
        if isinstance(backoff, bool) or not isinstance(backoff, int | float):
            raise TypeError(f"Adaptive backoff must be a number, got {backoff!r} ({type(backoff).__name__})")
        if not 0 < backoff < 1:
            raise ValueError(f"Adaptive backoff must be between 0 and 1 (both excluded), got {backoff!r}")
        pause = self.max_pause
        if isinstance(pause, bool) or not isinstance(pause, int | float):
            raise TypeError(f"Adaptive max_pause must be a number, got {pause!r} ({type(pause).__name__})")
        if not 0 <= pause < math.inf:
            raise ValueError(f"Adaptive max_pause must be a finite number >= 0 (seconds), got {pause!r}")
        if self.mode not in ("aimd", "gradient"):
            raise ValueError(f"Adaptive mode must be 'aimd' or 'gradient', got {self.mode!r}")
        tolerance = self.tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float):
            raise TypeError(
                f"Adaptive tolerance must be a number, got {tolerance!r} ({type(tolerance).__name__})"
            )
        if not 1 < tolerance < math.inf:
            raise ValueError(f"Adaptive tolerance must be a finite number > 1, got {tolerance!r}")
        if not isinstance(self.congestion, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in self.congestion
        ):
            raise TypeError(
                f"Adaptive congestion must be a tuple of exception types, like (MyRateLimitError,), "
                f"got {self.congestion!r}"
            )

    @property
    def start(self) -> int:
        """The limit the job starts with."""
        return self.min if self.initial is None else self.initial


def is_rate_limited(error: BaseException | None, congestion: tuple[type[BaseException], ...] = ()) -> bool:
    """True if `error` says the API is overloaded: the job should send fewer calls at once.

    That is an exception with a `status` or `status_code` of 429 (Too Many Requests) or 503
    (Service Unavailable), as httpx's, aiohttp's and the car API's errors carry; the car API's
    `RateLimited`; or an instance of one of the `congestion` types.
    """
    if error is None:
        return False
    if congestion and isinstance(error, congestion):
        return True
    for name in ("status", "status_code"):
        status = getattr(error, name, None)
        if isinstance(status, int) and status in _CONGESTED_STATUSES:
            return True
    # httpx.HTTPStatusError keeps the status on its response.
    status = getattr(getattr(error, "response", None), "status_code", None)
    return isinstance(status, int) and status in _CONGESTED_STATUSES


def drop_kind(
    error: BaseException | None, congestion: tuple[type[BaseException], ...] = ()
) -> DropKind | None:
    """ "rate_limited" or "timeout" if `error` makes its attempt a drop; None otherwise.

    Only ordinary exceptions count: a cancellation, a KeyboardInterrupt or another odd
    BaseException says nothing about the API's load.
    """
    if not isinstance(error, Exception):
        return None
    if isinstance(error, TimeoutError):
        return "timeout"
    if is_rate_limited(error, congestion):
        return "rate_limited"
    return None


def drops_of_results(results: Iterable[TaskResult]) -> tuple[Drop, ...]:
    """The drops of tasks that made one attempt each, read from their results, in time order."""
    drops = []
    for result in results:
        kind = drop_kind(result.error)
        if kind is not None:
            drops.append(Drop(result.finished_at, result.task_id, result.worker, kind))
    drops.sort()
    return tuple(drops)


def retry_after(error: BaseException | None) -> float | None:
    """The seconds `error` asks to wait (its `retry_after` attribute), if it gives a sane number."""
    seconds = getattr(error, "retry_after", None)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 < seconds < math.inf:
        return float(seconds)
    return None


class AimdLimit:
    """The adaptive limit: additive increase, multiplicative decrease (see `pcmodel.adaptive`).

    Feed it every attempt's outcome: `on_success` or `on_drop` (ignore the rest). Read `limit`
    for how many calls may be in flight now; `changes` holds every change, from a "start" one.
    Times are the job's (seconds since it started), from `now`, and `started_at` is when the
    attempt started on that clock.

    Example:
        >>> clock = iter([0.0, 1.0, 2.0, 3.0]).__next__
        >>> limit = AimdLimit(Adaptive(min=1, max=10, initial=4), now=clock)
        >>> limit.on_drop(0.5, "rate_limited")  # at 1.0: cut to 4 * 0.9, rounded down
        True
        >>> limit.on_drop(0.8, "rate_limited")  # started before that cut: the same episode
        False
        >>> limit.limit, [(c.time, c.limit, c.cause) for c in limit.changes]
        (3, [(0.0, 4, 'start'), (1.0, 3, 'congestion')])
    """

    __slots__ = ("_last_cut", "_now", "_record", "_slow_start", "_successes", "changes", "limit", "spec")

    def __init__(self, spec: Adaptive, now: Callable[[], float], *, record: bool = True) -> None:
        self.spec = spec
        self._now = now
        self.limit = spec.start
        """How many calls may be in flight now."""
        self._successes = 0  # since the latest change: after slow start, `limit` of them add one
        self._slow_start = True
        self._last_cut = -math.inf
        self._record = record
        self.changes: list[LimitChange] = [LimitChange(now(), self.limit, "start")] if record else []
        """Every change of `limit`, in time order (none kept with `record=False`: a long job
        without a trace keeps its memory flat)."""

    def on_success(self, started_at: float, latency: float, *, in_flight: int | None = None) -> None:
        """An attempt that started at `started_at` succeeded after `latency` seconds.

        Args:
            started_at: when the attempt started (job time).
            latency: how long it took.
            in_flight: attempts in flight when it ended, itself included; the limit grows only
                if that is at least half of it. None: the pool counts as busy.
        """
        if self.limit >= self.spec.max or (in_flight is not None and in_flight * 2 < self.limit):
            return
        self._successes += 1
        # Slow start: one more per success. After it: one more per `limit` successes, a round trip.
        if self._slow_start or self._successes >= self.limit:
            self._change(self.limit + 1, "grow")

    def on_drop(self, started_at: float, kind: DropKind) -> bool:
        """An attempt that started at `started_at` was dropped (`kind`); True if that cut the limit.

        A drop from an attempt that started before the latest cut (or at its very instant) is
        part of the episode that cut already answered: it changes nothing.
        """
        if started_at <= self._last_cut:
            return False
        self._slow_start = False
        self._last_cut = self._now()
        # At least one lower (a limit of 3 times 0.9 must not round back to 3), never below min.
        cut = max(self.spec.min, min(self.limit - 1, math.floor(self.limit * self.spec.backoff)))
        self._successes = 0
        if cut != self.limit:
            self._change(cut, "congestion")
        return True

    def set_limit(self, limit: int, cause: str = "set_workers") -> None:
        """Set the limit by hand (between `min` and `max`); growth goes on from there."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"the limit must be an int, got {limit!r} ({type(limit).__name__})")
        if not self.spec.min <= limit <= self.spec.max:
            raise ValueError(
                f"the limit of this adaptive job must be between its min ({self.spec.min}) and max "
                f"({self.spec.max}), got {limit!r}"
            )
        if limit != self.limit:
            self._change(limit, cause)

    def _change(self, limit: int, cause: str) -> None:
        self.limit = limit
        self._successes = 0
        if self._record:
            self.changes.append(LimitChange(self._now(), limit, cause))

    def __repr__(self) -> str:
        return f"AimdLimit(limit={self.limit}, min={self.spec.min}, max={self.spec.max})"


class Limit(Protocol):
    """What a transport feeds and reads: `AimdLimit` or `GradientLimit`."""

    spec: Adaptive
    limit: int
    changes: list[LimitChange]

    def on_success(self, started_at: float, latency: float, *, in_flight: int | None = None) -> None:
        """An attempt succeeded."""

    def on_drop(self, started_at: float, kind: DropKind) -> bool:
        """An attempt was dropped; True if that cut the limit."""

    def set_limit(self, limit: int, cause: str = "set_workers") -> None:
        """Set the limit by hand."""


def make_limit(spec: Adaptive, now: Callable[[], float], *, record: bool = True) -> Limit:
    """The limit `spec` asks for: an `AimdLimit`, or a `GradientLimit` for mode="gradient"."""
    if spec.mode == "gradient":
        return GradientLimit(spec, now, record=record)
    return AimdLimit(spec, now, record=record)


class GradientLimit(AimdLimit):
    """The adaptive limit of `Adaptive(mode="gradient")`: latency moves it (see the module).

    In the job's time: slow start as `AimdLimit`'s, until a success takes more than
    `tolerance` times the fastest call seen; the limit then falls back to half (TCP's slow
    start threshold). From there every round trip (`limit` successes, at least `_MIN_WINDOW`)
    gives the median latency `short`, and `floor` is the lowest latency seen (the fastest
    median since); then

        gradient = clamp(tolerance * floor / short, 0.5, 1)
        target = limit * gradient + sqrt(limit)     # the square root: room to probe upwards
        limit = 0.8 * limit + 0.2 * target          # smoothed, between min and max

    A round trip in which less than half of the limit was in use changes nothing (no
    evidence either way). Drops cut it as `AimdLimit` does.

    The floor is a minimum, never an average: Gradient2's long-term average of the medians
    follows a lasting rise of latency, so on an API that queues it grew without end here
    (to 200 for a capacity of 5); the floor does not. The price: if the API gets slower for
    good, the limit settles where the square-root headroom balances the gradient (about 16
    when every call takes twice the floor, 4 when three times), however many calls the API
    could take (Envoy re-measures its minimum now and then by dropping to `min` for a
    moment; that is not done here).
    """

    __slots__ = ("_estimate", "_floor", "_used", "_window")

    _MIN_WINDOW = 10
    _SMOOTHING = 0.2

    def __init__(self, spec: Adaptive, now: Callable[[], float], *, record: bool = True) -> None:
        super().__init__(spec, now, record=record)
        self._estimate = float(self.limit)
        self._window: list[float] = []
        self._used = True
        self._floor: float | None = None

    def on_success(self, started_at: float, latency: float, *, in_flight: int | None = None) -> None:
        if self._slow_start:
            self._slow_start_step(latency, in_flight)
            return
        if in_flight is not None and in_flight * 2 < self.limit:
            self._used = False
        self._window.append(latency)
        if len(self._window) < max(self.limit, self._MIN_WINDOW):
            return
        short = statistics.median(self._window)
        used, self._window, self._used = self._used, [], True
        floor = short if self._floor is None else min(self._floor, short)
        self._floor = floor
        if not used or short <= 0:
            return
        gradient = max(0.5, min(1.0, self.spec.tolerance * floor / short))
        target = self._estimate * gradient + math.sqrt(self._estimate)
        estimate = (1 - self._SMOOTHING) * self._estimate + self._SMOOTHING * target
        self._estimate = max(float(self.spec.min), min(float(self.spec.max), estimate))
        moved = math.floor(self._estimate)
        if moved != self.limit:
            self._change(moved, "gradient")

    def _slow_start_step(self, latency: float, in_flight: int | None) -> None:
        """Until latency first rises, double per round trip; then fall back to half, the last
        limit at which the calls did not queue (TCP's slow start threshold)."""
        floor = latency if self._floor is None else min(self._floor, latency)
        self._floor = floor
        if latency > self.spec.tolerance * floor:
            self._slow_start = False
            self._estimate = float(max(self.spec.min, self.limit // 2))
            if math.floor(self._estimate) != self.limit:
                self._change(math.floor(self._estimate), "gradient")
            return
        if self.limit < self.spec.max and (in_flight is None or in_flight * 2 >= self.limit):
            self._change(self.limit + 1, "grow")
            self._estimate = float(self.limit)

    def on_drop(self, started_at: float, kind: DropKind) -> bool:
        cut = super().on_drop(started_at, kind)
        if cut:
            self._estimate = float(self.limit)
            self._window = []
        return cut

    def set_limit(self, limit: int, cause: str = "set_workers") -> None:
        super().set_limit(limit, cause)
        self._estimate = float(self.limit)

    def __repr__(self) -> str:
        return f"GradientLimit(limit={self.limit}, min={self.spec.min}, max={self.spec.max})"
