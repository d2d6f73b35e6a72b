"""Adaptive concurrency: the AIMD limit alone, then whole jobs on APIs written here (virtual time)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import pcmodel
from pcmodel import Adaptive, Drop, LimitChange, Retry
from pcmodel._carapi_shared import RateLimited, ServerError
from pcmodel.adaptive import AimdLimit, GradientLimit, drop_kind, is_rate_limited, make_limit


class Clock:
    """A hand-moved clock for the limit alone."""

    def __init__(self) -> None:
        self.time = 0.0

    def __call__(self) -> float:
        return self.time


def test_adaptive_checks_its_fields_and_says_the_rule() -> None:
    with pytest.raises(TypeError, match=r"Adaptive min must be an int, got 1.5 \(float\)"):
        Adaptive(min=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Adaptive min must be >= 1, got 0"):
        Adaptive(min=0)
    with pytest.raises(ValueError, match=r"Adaptive max must be >= min \(5\), got 4"):
        Adaptive(min=5, max=4)
    with pytest.raises(ValueError, match=r"Adaptive initial must be between min \(2\) and max \(9\), got 10"):
        Adaptive(min=2, max=9, initial=10)
    with pytest.raises(
        ValueError, match=r"Adaptive backoff must be between 0 and 1 \(both excluded\), got 1"
    ):
        Adaptive(backoff=1)
    with pytest.raises(
        ValueError, match=r"Adaptive max_pause must be a finite number >= 0 \(seconds\), got inf"
    ):
        Adaptive(max_pause=float("inf"))
    with pytest.raises(TypeError, match=r"Adaptive congestion must be a tuple of exception types"):
        Adaptive(congestion=[ValueError])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"workers must be an int or a pcmodel.Adaptive"):
        pcmodel.run_job(lambda n: n, [1], workers="many")  # type: ignore[arg-type]
    assert Adaptive(min=3).start == 3
    assert Adaptive(min=3, initial=7).start == 7


def test_success_grows_the_limit_only_while_at_least_half_of_it_is_in_use() -> None:
    limit = AimdLimit(Adaptive(max=100, initial=10), Clock())
    limit.on_success(0.0, 1.0, in_flight=4)  # 4 of 10 in use: no evidence more would help
    assert limit.limit == 10
    limit.on_success(0.0, 1.0, in_flight=5)
    assert limit.limit == 11  # slow start: one more per success
    limit.on_success(0.0, 1.0)  # a feeder that does not count: busy
    assert limit.limit == 12


def test_after_the_first_drop_the_limit_grows_by_one_per_round_trip() -> None:
    clock = Clock()
    limit = AimdLimit(Adaptive(max=100, initial=10), clock)
    clock.time = 1.0
    assert limit.on_drop(0.5, "rate_limited")
    assert limit.limit == 9  # 10 * 0.9
    for _ in range(8):
        limit.on_success(2.0, 1.0, in_flight=9)
    assert limit.limit == 9  # 8 / 9 of a round trip
    limit.on_success(2.0, 1.0, in_flight=9)
    assert limit.limit == 10


def test_one_cut_per_episode_drops_that_started_before_the_cut_are_ignored() -> None:
    clock = Clock()
    limit = AimdLimit(Adaptive(max=100, initial=20, backoff=0.5), clock)
    clock.time = 2.0
    assert limit.on_drop(1.0, "rate_limited")
    # The same burst: attempts sent under the old limit, ending after the cut.
    clock.time = 2.5
    assert not limit.on_drop(1.5, "timeout")
    assert not limit.on_drop(2.0, "rate_limited")  # started at the very instant of the cut
    assert limit.limit == 10
    # An attempt sent under the new limit and dropped: a new episode.
    clock.time = 3.0
    assert limit.on_drop(2.1, "rate_limited")
    assert [(c.time, c.limit, c.cause) for c in limit.changes] == [
        (0.0, 20, "start"),
        (2.0, 10, "congestion"),
        (3.0, 5, "congestion"),
    ]


def test_the_limit_stays_between_min_and_max() -> None:
    clock = Clock()
    limit = AimdLimit(Adaptive(min=3, max=5), clock)
    for step in range(10):
        clock.time = float(step)
        limit.on_success(clock.time, 0.1, in_flight=5)
    assert limit.limit == 5
    for step in range(10, 20):
        clock.time = float(step)
        limit.on_drop(clock.time - 0.5, "timeout")
    assert limit.limit == 3
    # A cut that rounds back to the same limit still lowers it by one (until min).
    small = AimdLimit(Adaptive(min=1, max=9, initial=3), Clock())
    small.on_drop(1.0, "rate_limited")
    assert small.limit == 2
    with pytest.raises(ValueError, match=r"between its min \(3\) and max \(5\), got 6"):
        limit.set_limit(6)
    limit.set_limit(4)
    assert limit.changes[-1] == LimitChange(19.0, 4, "set_workers")


def test_without_a_record_the_limit_keeps_no_changes() -> None:
    limit = AimdLimit(Adaptive(max=10), Clock(), record=False)
    limit.on_success(0.0, 1.0)
    assert (limit.limit, limit.changes) == (2, [])


class Status(Exception):
    def __init__(self, status: int, attribute: str = "status") -> None:
        super().__init__(status)
        setattr(self, attribute, status)


class Response:
    status_code = 429


class HTTPStatusError(Exception):
    response = Response()


class Throttled(Exception):
    pass


def test_what_counts_as_rate_limited_and_as_a_drop() -> None:
    assert is_rate_limited(Status(429))
    assert is_rate_limited(Status(503, "status_code"))
    assert is_rate_limited(HTTPStatusError())
    assert is_rate_limited(RateLimited("busy", retry_after=1.0))
    assert is_rate_limited(Throttled(), (Throttled,))
    assert not is_rate_limited(Throttled())
    assert not is_rate_limited(Status(500))
    assert not is_rate_limited(ServerError("down"))
    assert not is_rate_limited(None)
    assert drop_kind(TimeoutError()) == "timeout"
    assert drop_kind(Status(429)) == "rate_limited"
    assert drop_kind(ValueError("bad item")) is None
    # Cancellations and odd BaseExceptions say nothing about the API's load.
    assert drop_kind(asyncio.CancelledError()) is None
    assert drop_kind(KeyboardInterrupt()) is None

    class Odd(BaseException):
        status = 429

    assert drop_kind(Odd()) is None


class Busy(Exception):
    """429 Too Many Requests."""

    status = 429

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("busy")
        self.retry_after = retry_after


class CapacityAPI:
    """Answers in `latency` seconds, or 429 at once (after 10 ms) above `capacity` calls in flight."""

    def __init__(self, capacity: int | None, latency: float = 0.1) -> None:
        self.capacity = capacity
        self.latency = latency
        self.in_flight = 0
        self.calls = 0
        """Calls in flight, those it turns away included."""
        self.most = 0
        self.starts: list[float] = []
        self.calls_at_start: list[tuple[float, int]] = []

    async def __call__(self, n: int) -> int:
        now = asyncio.get_running_loop().time()
        self.starts.append(now)
        self.calls += 1
        self.calls_at_start.append((now, self.calls))
        try:
            return await self._answer(n)
        finally:
            self.calls -= 1

    async def _answer(self, n: int) -> int:
        if self.capacity is not None and self.in_flight >= self.capacity:
            await asyncio.sleep(0.01)
            raise Busy()
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        return n


def mean_limit(summary: pcmodel.JobSummary, since: float) -> float:
    """The limit's time-weighted mean from `since` to the end."""
    changes = summary.limit_changes
    assert changes is not None
    total = 0.0
    ends = [change.time for change in changes[1:]] + [summary.elapsed]
    for change, end in zip(changes, ends, strict=True):
        total += change.limit * max(0.0, end - max(change.time, since))
    return total / (summary.elapsed - since)


def limit_at(summary: pcmodel.JobSummary, time: float) -> int:
    assert summary.limit_changes is not None
    return [c.limit for c in summary.limit_changes if c.time <= time][-1]


def test_on_a_capacity_limited_api_the_limit_settles_near_the_capacity() -> None:
    capacity = 10
    flat_retries = Retry(50, backoff=0.05, multiplier=1, seed=1)
    fixed = pcmodel.run_job(CapacityAPI(capacity), range(2000), workers=capacity, clock="virtual")
    api = CapacityAPI(capacity)
    summary = pcmodel.run_job(
        api, range(2000), workers=Adaptive(max=100), retries=flat_retries, clock="virtual"
    )
    assert summary.failed == 0
    assert fixed.drops == ()
    assert summary.drops is not None
    assert 0 < len(summary.drops) < 200
    assert {drop.kind for drop in summary.drops} == {"rate_limited"}
    assert abs(mean_limit(summary, since=summary.elapsed / 2) - capacity) <= 0.2 * capacity
    goodput, best = summary.succeeded / summary.elapsed, fixed.succeeded / fixed.elapsed
    assert goodput >= 0.9 * best
    assert summary.workers <= 20  # lanes start as the limit reaches them, not all 100


def test_with_no_capacity_limit_the_limit_grows_to_max() -> None:
    summary = pcmodel.run_job(CapacityAPI(None), range(500), workers=Adaptive(max=16), clock="virtual")
    assert summary.limit_changes is not None
    assert summary.limit_changes[0] == LimitChange(0.0, 1, "start")
    assert summary.limit_changes[-1].limit == 16
    assert {change.cause for change in summary.limit_changes[1:]} == {"grow"}
    assert summary.drops == ()
    assert summary.workers == 16


def test_the_calls_in_flight_never_exceed_the_limit() -> None:
    api = CapacityAPI(6)
    summary = pcmodel.run_job(
        api,
        range(600),
        workers=Adaptive(max=50, initial=20, backoff=0.5),
        retries=Retry(50, backoff=0.05, multiplier=1, seed=2),
        clock="virtual",
    )
    changes, results = summary.limit_changes, summary.results
    assert changes is not None
    assert results is not None
    assert any(change.cause == "congestion" for change in changes)
    # Every task starts on a lane under the limit (a task may run on past a cut).
    assert all(r.worker < limit_at(summary, r.started_at) for r in results)
    # Every attempt, retries included, starts with no more in flight than the limit allows:
    # an attempt lasts at most 0.1 s, so the ones in flight started under a limit of the
    # last 0.1 s.
    for start, calls in api.calls_at_start:
        recent = [limit_at(summary, start)] + [c.limit for c in changes if start - 0.1 <= c.time <= start]
        assert calls <= max(recent)
    # The retries of tasks on closed lanes waited their turn: no cascade of cuts to min.
    assert min(change.limit for change in changes) >= 3
    assert summary.failed == 0


def test_a_burst_of_drops_from_one_episode_cuts_the_limit_once() -> None:
    async def all_turned_away_at_first(n: int) -> int:
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.5)
        if started < 0.1:  # the first ten calls, sent together, all get 429
            raise Busy()
        return n

    summary = pcmodel.run_job(
        all_turned_away_at_first, range(10), workers=Adaptive(max=10, initial=10), clock="virtual"
    )
    assert summary.drops is not None
    assert [(d.time, d.kind) for d in summary.drops] == [(0.5, "rate_limited")] * 10
    assert summary.limit_changes == (LimitChange(0.0, 10, "start"), LimitChange(0.5, 9, "congestion"))


def test_a_retry_after_holds_back_every_new_attempt_until_then() -> None:
    api_starts: list[float] = []
    calls = itertools.count()

    async def asks_for_a_pause(n: int) -> int:
        api_starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.1)
        if next(calls) == 3:
            raise Busy(retry_after=2.0)  # at 0.1 s: nothing may start before 2.1 s
        return n

    summary = pcmodel.run_job(
        asks_for_a_pause,
        range(12),
        workers=Adaptive(max=4, initial=4),
        retries=Retry(1, backoff=0.0, jitter=0),
        clock="virtual",
    )
    assert summary.failed == 0
    assert summary.drops == (Drop(0.1, 3, 3, "rate_limited"),)
    assert not [start for start in api_starts if 0.1 < start < 2.1]
    assert min(start for start in api_starts if start > 0.1) == 2.1
    assert summary.limit_changes == (
        LimitChange(0.0, 4, "start"),
        LimitChange(0.1, 3, "congestion"),
        LimitChange(2.2, 4, "grow"),  # three successes at 3: one round trip
    )


def test_other_errors_and_cancellations_leave_the_limit_alone() -> None:
    async def odd(n: int) -> int:
        await asyncio.sleep(1)
        if n % 3 == 0:
            raise ValueError("a bad item")
        if n % 3 == 1:
            raise asyncio.CancelledError  # of its own: an outcome, not a stop

        class Odd(BaseException):
            status = 429

        raise Odd

    summary = pcmodel.run_job(odd, range(30), workers=Adaptive(max=8, initial=4), clock="virtual")
    assert (summary.tasks, summary.failed) == (30, 30)
    assert summary.limit_changes == (LimitChange(0.0, 4, "start"),)
    assert summary.drops == ()


def test_a_keyboard_interrupt_in_the_function_still_stops_an_adaptive_job() -> None:
    async def interrupts(n: int) -> int:
        await asyncio.sleep(1)
        if n == 5:
            raise KeyboardInterrupt
        return n

    with pytest.raises(KeyboardInterrupt):
        pcmodel.run_job(interrupts, range(100), workers=Adaptive(max=8), clock="virtual")


def test_a_timeout_is_a_drop_and_fixed_pools_record_drops_too() -> None:
    async def slow_every_fourth(n: int) -> int:
        await asyncio.sleep(5 if n % 4 == 0 else 1)
        return n

    fixed = pcmodel.run_job(slow_every_fourth, range(8), workers=2, timeout=2, clock="virtual")
    assert fixed.limit_changes == (LimitChange(0.0, 2, "start"),)
    assert fixed.drops is not None
    assert [(d.task_id, d.kind) for d in fixed.drops] == [(0, "timeout"), (4, "timeout")]

    # With retries, the drops of the retried attempts are there too.
    flaky = itertools.count()

    async def busy_twice(n: int) -> int:
        await asyncio.sleep(1)
        if next(flaky) < 2:
            raise Busy()
        return n

    retried = pcmodel.run_job(
        busy_twice, range(3), workers=1, retries=Retry(3, backoff=0.0, jitter=0), clock="virtual"
    )
    assert retried.drops == (Drop(1.0, 0, 0, "rate_limited"), Drop(2.0, 0, 0, "rate_limited"))
    assert retried.failed == 0

    untraced = pcmodel.run_job(busy_twice, range(3), workers=Adaptive(), clock="virtual", trace=False)
    assert (untraced.limit_changes, untraced.drops) == (None, None)


def test_an_adaptive_job_with_a_rate_limit_keeps_both() -> None:
    api = CapacityAPI(None, latency=1.0)
    summary = pcmodel.run_job(api, range(40), workers=Adaptive(max=50), max_per_second=10, clock="virtual")
    starts = api.starts
    # Never more than 10 calls started in any second (burst 1), whatever the limit.
    assert all(sum(1 for s in starts if t <= s < t + 1 - 1e-9) <= 10 for t in starts)
    assert summary.tasks == 40


def test_every_item_gets_exactly_one_result_under_a_moving_limit() -> None:
    summary = pcmodel.run_job(
        CapacityAPI(5),
        range(300),
        workers=Adaptive(max=30, backoff=0.5),
        queue_size=3,
        clock="virtual",
    )
    assert summary.results is not None
    assert sorted(r.task_id for r in summary.results) == list(range(300))
    assert summary.failed == len(summary.drops or ())  # no retries: each 429 is a failed task


@pytest.mark.parametrize(
    ("retry_after", "resumes_at"),
    [(86_400.0, 5.1), (float("inf"), None), (-3.0, None), (True, None), ("soon", None)],
    ids=["a day: cut to max_pause", "infinite", "negative", "a bool", "a string"],
)
def test_a_hostile_retry_after_cannot_stall_the_job(retry_after: object, resumes_at: float | None) -> None:
    calls = itertools.count()
    starts: list[float] = []

    async def hostile(n: int) -> int:
        starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.1)
        if next(calls) == 0:
            error = Busy()
            error.retry_after = retry_after  # type: ignore[assignment]
            raise error
        return n

    summary = pcmodel.run_job(
        hostile, range(6), workers=Adaptive(max=2, initial=2, max_pause=5.0), clock="virtual"
    )
    assert summary.tasks == 6
    # The first calls start at 0; the drop comes at 0.1 s.
    first_after_the_drop = min(start for start in starts if start > 0.05)
    if resumes_at is None:  # not a sane number of seconds: no pause at all
        assert first_after_the_drop == pytest.approx(0.1)
        assert summary.elapsed < 1.0
    else:
        assert first_after_the_drop == pytest.approx(resumes_at)


class QueueingAPI:
    """Serves `capacity` calls at once in `base` seconds; the rest wait in line: no 429 ever,
    only latency that grows with the calls sent."""

    def __init__(self, capacity: int, base: float = 0.1) -> None:
        self.capacity = capacity
        self.base = base
        self.line: asyncio.Semaphore | None = None
        self.latencies: list[float] = []

    async def __call__(self, n: int) -> int:
        loop = asyncio.get_running_loop()
        if self.line is None:
            self.line = asyncio.Semaphore(self.capacity)
        sent = loop.time()
        async with self.line:
            await asyncio.sleep(self.base)
        self.latencies.append(loop.time() - sent)
        return n


def test_gradient_mode_checks_its_fields() -> None:
    with pytest.raises(ValueError, match=r"Adaptive mode must be 'aimd' or 'gradient', got 'vegas'"):
        Adaptive(mode="vegas")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Adaptive tolerance must be a finite number > 1, got 1"):
        Adaptive(mode="gradient", tolerance=1)
    assert isinstance(make_limit(Adaptive(mode="gradient"), Clock()), GradientLimit)
    assert type(make_limit(Adaptive(), Clock())) is AimdLimit


def test_gradient_slow_start_ends_at_the_first_rise_of_latency_falling_back_to_half() -> None:
    limit = GradientLimit(Adaptive(max=100, initial=4, mode="gradient"), Clock())
    for _ in range(4):
        limit.on_success(0.0, 1.0, in_flight=4)
    assert limit.limit == 8
    limit.on_success(0.0, 1.6, in_flight=8)  # past 1.5 times the fastest call: queueing
    assert limit.limit == 4
    assert limit.changes[-1].cause == "gradient"


def gradient_after_slow_start(initial: int) -> GradientLimit:
    """A gradient limit whose slow start ended at once: a call of 1 s, then one of 2 s."""
    limit = GradientLimit(Adaptive(max=100, initial=initial, mode="gradient"), Clock())
    limit.on_success(0.0, 1.0, in_flight=initial)  # grows by one, unless at max
    limit.on_success(0.0, 2.0, in_flight=initial)  # twice the fastest: back to half
    return limit


def test_each_round_trip_moves_the_gradient_limit_by_its_median_latency() -> None:
    limit = gradient_after_slow_start(100)
    assert limit.limit == 50
    for _ in range(49):
        limit.on_success(0.0, 3.0, in_flight=50)
    assert limit.limit == 50  # a round trip is `limit` successes
    limit.on_success(0.0, 3.0, in_flight=50)
    # Three times the floor: gradient 0.5, target 50 * 0.5 + sqrt(50) = 32.07, smoothed:
    # 0.8 * 50 + 0.2 * 32.07 = 46.4.
    assert limit.changes[-1] == LimitChange(0.0, 46, "gradient")
    for _ in range(46):
        limit.on_success(0.0, 1.2, in_flight=46)  # within 1.5 times the floor: room to grow
    assert limit.limit == 47  # 0.8 * 46.41 + 0.2 * (46.41 + 6.81) = 47.77


def test_a_round_trip_with_the_pool_half_idle_moves_no_gradient() -> None:
    limit = gradient_after_slow_start(20)
    assert limit.limit == 10  # 21 // 2
    for _ in range(10):
        limit.on_success(0.0, 3.0, in_flight=4)  # slow, but the pool is mostly idle
    assert limit.limit == 10


@pytest.mark.parametrize("capacity", [5, 10, 20])
def test_on_an_api_that_queues_instead_of_refusing_the_gradient_stops_where_latency_rises(
    capacity: int,
) -> None:
    """No 429 ever: AIMD has nothing to cut on and grows to max; the gradient settles."""
    aimd_api, gradient_api = QueueingAPI(capacity), QueueingAPI(capacity)
    aimd = pcmodel.run_job(aimd_api, range(3000), workers=Adaptive(max=200), clock="virtual")
    gradient = pcmodel.run_job(
        gradient_api, range(3000), workers=Adaptive(max=200, mode="gradient"), clock="virtual"
    )
    assert aimd.limit_changes is not None
    assert aimd.limit_changes[-1].limit == 200
    settled = mean_limit(gradient, since=gradient.elapsed / 2)
    assert capacity <= settled <= 2.5 * capacity  # the square-root headroom: more for small limits
    later = gradient_api.latencies[1500:]
    assert sorted(later)[len(later) // 2] <= 2.5 * gradient_api.base  # the median call waits little
    assert sorted(aimd_api.latencies[1500:])[750] >= 5 * aimd_api.base
    best = capacity / gradient_api.base
    assert gradient.tasks / gradient.elapsed >= 0.95 * best  # and loses almost no throughput


def test_gradient_mode_grows_to_max_without_a_limit_and_cuts_on_429s() -> None:
    free = pcmodel.run_job(
        CapacityAPI(None), range(3000), workers=Adaptive(max=50, mode="gradient"), clock="virtual"
    )
    assert free.limit_changes is not None
    assert free.limit_changes[-1].limit == 50
    refusing = pcmodel.run_job(
        CapacityAPI(10),
        range(3000),
        workers=Adaptive(max=100, mode="gradient"),
        retries=Retry(50, backoff=0.05, multiplier=1, seed=1),
        clock="virtual",
    )
    assert refusing.failed == 0
    assert abs(mean_limit(refusing, since=refusing.elapsed / 2) - 10) <= 2


def test_an_interrupt_while_the_limit_grows_stops_the_job_and_starts_no_worker_after(
    recwarn: pytest.WarningsRecorder,
) -> None:
    async def interrupts_at_once(n: int) -> int:
        await asyncio.sleep(1)
        if n == 0:
            raise KeyboardInterrupt
        return n  # the others succeed at the same instant: the limit grows as the job unwinds

    with pytest.raises(KeyboardInterrupt):
        pcmodel.run_job(
            interrupts_at_once, range(100), workers=Adaptive(max=50, initial=8), retries=1, clock="virtual"
        )
    assert [str(w.message) for w in recwarn] == []  # no coroutine left unawaited
