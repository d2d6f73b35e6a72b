"""A pool whose size changes while the job runs: worker lanes, and a gate on every attempt.

A fixed pool run by `run_job` needs none of this: its workers read the work queue directly.
A pool whose concurrency can change while it runs (an adaptive one, `workers=Adaptive(...)`,
or any job started with `start_job`, whose handle resizes it, pauses it and changes its
rate) gives each worker a `Lane`, its view of the work queue:

- lane `i` is open while `i < limit` and the job is not held (paused by hand, or waiting out
  a Retry-After); a worker takes items only through an open lane. When the limit falls from
  20 to 12, the workers of lanes 12-19 finish the calls they are making and take no more:
  the calls in flight never exceed the new limit once those end, no item is lost, and a
  timeline shows the lanes above the limit go quiet. A lane's worker task starts the first
  time the limit reaches it, so an adaptive pool never holds more tasks than it used.
- an open lane costs the worker nothing: its `get_nowait` is the queue's own bound method,
  swapped for one that finds nothing when the lane closes. Only a worker that waits for an
  item goes through the lane's `get`.
- the job ends with one `STOP` that every worker puts back on its way out (`worker_done`):
  the number of workers is not known in advance, and a closed lane's worker, parked, is
  released to take it once a worker has met it (no real item is left then).
- a stop that takes the queued items back (a `StopSignal`, `fail_fast`, `JobHandle.stop`, a
  ledger that cannot record) releases the pool (`Pool.stop`): it ends a pause, and the lanes
  below the limit open even during a Retry-After hold, so that they take `STOP` at once
  instead of waiting for a `resume()` that may never come, or for the end of the hold with
  nothing to do. The hold still holds the retries of the calls in flight, as the server
  asked. A lane waiting for a rate slot gives its item back, unprocessed. A source's error
  is not such a stop: it keeps what is queued, to be processed, and a pause holds that until
  `resume()`.
- a closed lane takes `STOP` when nothing else is left on the queue (`only_stop_left`): it
  starts no call, so a job paused or held when its sources end, or raise, with every item
  handled ends at once instead of waiting for a `resume()` with nothing to do.

A pool whose tasks may make several attempts (an adaptive one, or one with retries) is
*gated*: each worker's calls pass a `LaneGate` (a `pcmodel.policies.AttemptGate`) before
every attempt, retries included. An attempt starts only while the job is not held and fewer
than `limit` attempts are in flight, first come, first served (so the retries of a task whose
lane just closed wait their turn instead of hammering an API that said "too many"); then it
waits for the rate limit (which the handle can change). When the attempt ends, the gate
records a drop (a 429 or a timeout, `records.Drop`) and feeds the adaptive limit
(`pcmodel.adaptive.AimdLimit`, or `GradientLimit`).

A pool of one attempt per task (a fixed pool started with `start_job`, without retries)
needs no gate: its lanes alone bound the calls, and wait for the rate limit, if any, before
they hand an item over, so such a job runs as fast as one `run_job` starts (measured side by
side). Its drops are read from the results at the end, as a fixed pool's.

Over 400 lines, and one concern: the lanes, the pool and the gate read and change the same
state (the limit, the hold, the attempts in flight, the rate limit); split apart, each part
would reach into the others.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from pcmodel._queues import STOP, JobQueue
from pcmodel._turns import Turns
from pcmodel.adaptive import Limit, drop_kind, retry_after
from pcmodel.policies import RateLimiter
from pcmodel.records import Drop, LimitChange
from pcmodel.stopping import JobControl
from pcmodel.worker import WorkerReport

__all__ = ["DropRecorder", "Lane", "LaneGate", "Pool"]


def _nothing_now() -> Any:
    """A closed lane's `get_nowait`: there is never an item to take at once."""
    raise asyncio.QueueEmpty


def _settle(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


class Lane:
    """One worker's view of the work queue: it gives items only while the lane is open."""

    __slots__ = ("_opened", "_pool", "_queue", "get_nowait", "index", "is_open")

    def __init__(self, index: int, queue: JobQueue[Any], pool: Pool) -> None:
        self.index = index
        self._queue = queue
        self._pool = pool
        self._opened: asyncio.Future[None] | None = None
        self.is_open = False
        self.get_nowait: Callable[[], Any] = _nothing_now

    def open(self) -> None:
        self.is_open = True
        self.refresh()
        self.wake()

    def close(self) -> None:
        self.is_open = False
        self.get_nowait = _nothing_now

    def refresh(self) -> None:
        """Take at once only if the lane is open and no rate limit is waited for here."""
        if self.is_open and not self._pool.rate_at_take:
            self.get_nowait = self._queue.get_nowait  # the queue's own: the lane adds nothing
        else:
            self.get_nowait = _nothing_now

    def wake(self) -> None:
        """Wake the worker parked on this lane, to look again (open, or the job is ending)."""
        opened = self._opened
        if opened is not None and not opened.done():
            opened.set_result(None)

    async def get(self) -> Any:
        """The next item, once the lane is open; `STOP` at the end of the job, open or not.

        Written as `JobQueue.get` is (one coroutine, a future per wait) so that a worker of
        an open lane that waits for items pays no more than on the queue itself.
        """
        pool, queue = self._pool, self._queue
        while True:
            if not (self.is_open or pool.draining or pool.only_stop_left()):
                await self._parked()
                continue
            if queue.empty():
                waiter = queue.join_readers()
                try:
                    await waiter
                except BaseException:
                    queue.leave_readers(waiter)
                    raise
                if not (self.is_open or pool.draining) and not queue.empty():
                    queue.wake_a_reader()  # the lane closed meanwhile: the item is another's
                continue
            item = queue.get_nowait()
            if item is STOP or pool.draining or not pool.rate_at_take:
                return item
            try:
                await pool.wait_for_rate()
            except BaseException:
                pool.hand_back(item)  # cancelled holding it: the item is not lost
                raise
            if pool.stopping:
                pool.hand_back(item)  # the job stopped during the wait: reported unprocessed, never called
                continue
            if self.is_open:
                return item
            queue.put_back_nowait(item)  # the lane closed during the wait: the item keeps its place

    async def _parked(self) -> None:
        """Wait until the lane opens, or the job ends."""
        self._opened = opened = self._pool.loop.create_future()
        try:
            await opened
        finally:
            self._opened = None


class Pool(Turns):
    """The lanes of a resizable pool, their limit, and what holds every attempt back.

    Args:
        queue: the job's work queue.
        start_worker: starts the worker task of a new lane (the transport's); False if it
            cannot (the job's task group is shutting down).
        limit: the limit to start with (a fixed pool's size).
        adaptive: the adaptive limit (AIMD or gradient), or None for a pool sized by hand.
        most: the most lanes (an adaptive pool's `max`); None for no bound.
        since_start: the job's clock (seconds since it started).
        limiter: the rate limit to start with, if any.
        congestion: more exception types that mean "rate limited".
        gated: every attempt passes a `LaneGate` (see the module); else the lanes alone
            bound the calls and apply the rate limit.
        trace: keep every limit change and drop.
        control: the job's stop state.
    """

    def __init__(
        self,
        queue: JobQueue[Any],
        start_worker: Callable[[Lane], bool],
        *,
        limit: int,
        adaptive: Limit | None,
        most: int | None,
        since_start: Callable[[], float],
        limiter: RateLimiter | None,
        congestion: tuple[type[BaseException], ...] = (),
        gated: bool,
        trace: bool,
        control: JobControl,
    ) -> None:
        super().__init__(asyncio.get_running_loop(), adaptive.limit if adaptive is not None else limit)
        self.queue = queue
        self.control = control
        self._start_worker = start_worker
        self.adaptive = adaptive
        self.most = most
        self.since_start = since_start
        self.limiter = limiter
        """The rate limit every attempt waits for; `set_rate` replaces it."""
        self.gated = gated
        self.rate_at_take = not gated and limiter is not None
        """The lanes wait for the rate limit before they hand an item over (no gate)."""
        self._rate_waits: dict[asyncio.Future[bool], None] = {}
        """Attempts waiting for their slot under the rate limit, in order."""
        self.congestion = congestion
        self.lanes: list[Lane] = []
        self.open_lanes = 0
        self.paused = False
        """Held by hand (`JobHandle.pause`) until `resume`."""
        self.resume_at = -math.inf
        """Held until then (job time) by a Retry-After."""
        self._resume_timer: asyncio.TimerHandle | None = None
        self.draining = False
        """A worker met the final `STOP`: no item is left to take."""
        self.stopping = False
        """A stop took the queued items back: the lanes open to take `STOP`, held or not."""
        self.drops: list[Drop] | None = [] if trace and gated else None
        self._trace = trace
        self._changes: list[LimitChange] | None = None
        if adaptive is None and trace:
            self._changes = [LimitChange(since_start(), limit, "start")]

    @property
    def changes(self) -> list[LimitChange] | None:
        """Every change of the limit so far; None without a trace."""
        if self.adaptive is not None:
            return self.adaptive.changes if self._trace else None
        return self._changes

    @property
    def held(self) -> bool:
        """True while no attempt may start: paused by hand, or waiting out a Retry-After."""
        return self.paused or self.since_start() < self.resume_at

    def apply(self) -> None:
        """Open the lanes below the limit (none while held, unless stopping), close the rest,
        start new ones."""
        wanted = 0 if self.held and not self.stopping else self.limit
        if not self.draining:
            while len(self.lanes) < self.limit and (self.most is None or len(self.lanes) < self.most):
                lane = Lane(len(self.lanes), self.queue, self)
                if not self._start_worker(lane):
                    break  # the job is ending: no new worker
                self.lanes.append(lane)
        wanted = min(wanted, len(self.lanes))
        for lane in self.lanes[self.open_lanes : wanted]:
            lane.open()
        for lane in self.lanes[wanted : self.open_lanes]:
            lane.close()
        self.open_lanes = wanted
        self.pass_turns()

    def set_limit(self, limit: int, cause: str) -> None:
        """Change the limit (a fixed pool's size, or the adaptive limit, by hand)."""
        if self.adaptive is not None:
            self.adaptive.set_limit(limit, cause)
            limit = self.adaptive.limit
        elif limit != self.limit and self._changes is not None:
            self._changes.append(LimitChange(self.since_start(), limit, cause))
        self.limit = limit
        self.apply()

    def set_rate(self, limiter: RateLimiter | None) -> None:
        """A new rate limit (None: none); the attempts waiting for a slot book again under it."""
        self.limiter = limiter
        self.rate_at_take = not self.gated and limiter is not None
        for lane in self.lanes:
            lane.refresh()
        waits, self._rate_waits = self._rate_waits, {}
        for waiter in waits:
            if not waiter.done():
                waiter.set_result(False)

    async def wait_for_rate(self) -> None:
        """Wait for this attempt's slot under the rate limit, booking again if it changes."""
        while (limiter := self.limiter) is not None:
            wait = limiter.reserve()
            if wait <= 0:
                return
            waiter = self.loop.create_future()
            self._rate_waits[waiter] = None
            timer = self.loop.call_later(wait, _settle, waiter, True)
            try:
                if await waiter:  # True: the slot's time came, or the job stops; False: the rate changed
                    return
            finally:
                timer.cancel()
                self._rate_waits.pop(waiter, None)

    def pause(self) -> None:
        """Start no attempt until `resume`; nothing once the job is stopping (the stop wins)."""
        if self.stopping:
            return
        self.paused = True
        self.apply()

    def resume(self) -> None:
        """End a pause (not a Retry-After hold, which ends when its time comes)."""
        self.paused = False
        self.apply()

    def stop(self) -> None:
        """The job stops and its queued items were taken back: release the pool (see the module).

        Without this, a paused pool, or one waiting out a Retry-After, would leave the final
        `STOP` on the queue with no open lane to take it: the job would wait for `resume()`,
        or for the hold's end, with nothing left to do.
        """
        self.stopping = True
        self.paused = False
        self.apply()
        if self.rate_at_take:
            # The lanes waiting for a rate slot hold items no call has started: they give them
            # back (unprocessed) at once, rather than call them when the slot comes. A gated
            # pool's waits are attempts of calls already taken: those go on.
            for waiter in self._rate_waits:
                _settle(waiter, True)

    def hold_until(self, until: float) -> None:
        """Start no attempt before `until` (job time): a Retry-After."""
        if until <= self.resume_at:
            return
        self.resume_at = until
        if self._resume_timer is not None:
            self._resume_timer.cancel()
        self._resume_timer = self.loop.call_later(until - self.since_start(), self._hold_over)
        self.apply()

    def _hold_over(self) -> None:
        # Not a comparison of clocks: the timer firing is the end of the hold.
        self._resume_timer = None
        self.resume_at = -math.inf
        self.apply()

    def only_stop_left(self) -> bool:
        """True if the queue holds nothing but the final `STOP`, which a closed lane may take:
        it starts no call, so no pause or hold has a reason to keep it."""
        queue = self.queue
        return not queue.empty() and queue.count(STOP) == queue.qsize()

    def stop_queued(self) -> None:
        """The final `STOP` is on the queue: the parked lanes look (they take it if it is all)."""
        for lane in self.lanes:
            lane.wake()

    def hand_back(self, item: Any) -> None:
        """An item a lane took but will not hand over: back to the queue's head, or, if the job
        is stopping, reported unprocessed as the stop's take-back would have."""
        if self.control.reason is not None:
            self.control.took_back(item[1], item[2])
        else:
            self.queue.put_back_nowait(item)

    def worker_done(self, task: asyncio.Task[Any]) -> None:
        """A worker task ended; one that met `STOP` puts it back for the next, and the end
        of the job releases the parked lanes (their workers take `STOP` too)."""
        if task.cancelled() or task.exception() is not None:
            return
        self.queue.put_back_nowait(STOP)
        if not self.draining:
            self.draining = True
            for lane in self.lanes:
                lane.wake()

    def attempt_ended(self, started_at: float, error: BaseException | None, report: WorkerReport) -> None:
        """Feed one attempt's outcome to the limit, and keep it if it was a drop."""
        in_flight = self.in_flight  # this attempt included
        self.give_turn_back()
        adaptive = self.adaptive
        kind = drop_kind(error, self.congestion)
        if kind is None:
            if error is None and adaptive is not None:
                adaptive.on_success(started_at, self.since_start() - started_at, in_flight=in_flight)
                if adaptive.limit != self.limit:
                    self.limit = adaptive.limit
                    self.apply()
            return
        now = self.since_start()
        if self.drops is not None:
            running = report.running
            self.drops.append(Drop(now, running[0] if running is not None else -1, report.index, kind))
        if adaptive is not None:
            pause = retry_after(error)
            if pause is not None and adaptive.spec.max_pause > 0:
                self.hold_until(now + min(pause, adaptive.spec.max_pause))
            if adaptive.on_drop(started_at, kind) and adaptive.limit != self.limit:
                self.limit = adaptive.limit
                self.apply()

    def close(self) -> None:
        """The job is over: no timer may fire after it."""
        if self._resume_timer is not None:
            self._resume_timer.cancel()


class LaneGate:
    """A worker's gate before every attempt in a resizable pool (see the module)."""

    __slots__ = ("pool", "report")

    def __init__(self, pool: Pool, report: WorkerReport) -> None:
        self.pool = pool
        self.report = report

    async def enter(self) -> float:
        pool = self.pool
        await pool.take_turn()
        if pool.limiter is not None:
            try:
                await pool.wait_for_rate()
            except BaseException:
                pool.give_turn_back()  # cancelled before it started: its turn goes to the next
                raise
        return pool.since_start()

    def leave(self, started_at: float, error: BaseException | None) -> None:
        self.pool.attempt_ended(started_at, error, self.report)


class DropRecorder:
    """The gate of a fixed pool with retries and a trace: it only records each attempt's drop.

    Without retries a task makes one attempt and its result says everything, so the drops are
    read from the results instead (`pcmodel.adaptive.drops_of_results`), at no cost to the calls.
    """

    __slots__ = ("drops", "report", "since_start")

    def __init__(self, drops: list[Drop], report: WorkerReport, since_start: Callable[[], float]) -> None:
        self.drops = drops
        self.report = report
        self.since_start = since_start

    async def enter(self) -> float:
        return self.since_start()

    def leave(self, started_at: float, error: BaseException | None) -> None:
        if error is None:
            return
        kind = drop_kind(error)
        if kind is not None:
            running = self.report.running
            task_id = running[0] if running is not None else -1
            self.drops.append(Drop(self.since_start(), task_id, self.report.index, kind))
