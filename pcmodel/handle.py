"""The handle on a job started with `start_job`: await it, and turn its knobs while it runs.

`start_job` returned a bare `asyncio.Task` before; a `JobHandle` is an `asyncio.Future` of the
summary that settles with that task, so code written for the task keeps working (`await
handle`, `cancel()`, `done()`, `result()`, `exception()`, `cancelled()`,
`add_done_callback()`, `asyncio.wait([handle])`), and it adds knobs on the running job:

- `set_workers(n)`: at most `n` calls in flight from now on. A smaller pool loses nothing:
  the calls in flight finish, then the workers above `n` take no more items; a larger one
  starts workers as needed. On an adaptive job it sets the limit by hand (between its `min`
  and `max`), and the limit goes on adapting from there: it may grow back above `n`.
- `set_rate(max_per_second, burst=None)`: the rate limit of every attempt from now on; None
  removes it.
- `pause()` / `resume()`: no call starts (no item, no retry) until `resume()`; the calls in
  flight finish. `resume()` ends the pause, not a Retry-After hold (which ends at its time).
  A paused job whose every item is handled ends all the same: there is nothing to hold.
- `stop(graceful=True)`: as `StopSignal`: no new calls, the calls in flight finish, the items
  still queued are reported unprocessed; `graceful=False` cancels the calls in flight too,
  like a fail-fast stop. Either way the summary comes back (`stop_reason="stop"`), unlike
  `cancel()`, the hard stop. Any stop (this, a `StopSignal`, `fail_fast`, a failing ledger)
  ends a pause for good and does not wait out a Retry-After hold, though a retry of a call
  in flight still waits for the time the server gave.
- `stats()`: the live figures, a `LiveStats`.

Every knob is safe from any thread (a widget's callback, say) and at any time: turned before
the job's first step, it is applied as the job starts; turned after the job ended, it does
nothing and returns False. A job run in a helper thread (`clock="virtual"` from a real loop)
gets its knobs through that thread's loop; paused, it waits for them in real time (its clock
stands still), instead of being taken for a stuck job. Both transports have every knob: in one process
they act on the pool at once; on a broker job (`broker=`) they travel to every worker process,
which applies them between two items (`set_workers(n)` is then each process's slots). A
transport without knobs (one written outside pcmodel) raises `NotImplementedError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from pcmodel import _validate
from pcmodel._knobs import Knobs
from pcmodel.records import JobSummary, LiveStats
from pcmodel.spec import JobSpec
from pcmodel.stopping import JobControl
from pcmodel.transport import Tunable

__all__ = ["JobHandle"]

logger = logging.getLogger("pcmodel")


class JobHandle(asyncio.Future[JobSummary]):
    """A job started in the background (see the module): a future of its summary, and its knobs.

    It is an `asyncio.Future` that settles as the job's task does, so `await handle`,
    `asyncio.wait`, `asyncio.gather` and `add_done_callback` work as they did on the task;
    `cancel()` cancels the job's task (a hard stop: every piece unwinds, no summary).

    Example:
        handle = pcmodel.start_job(fetch_price, cars, workers=10)
        handle.set_workers(30)          # more calls at once, from now on
        handle.pause(); handle.resume()
        print(handle.stats())           # LiveStats(in_flight=30, queued=100, done=412, ...)
        summary = await handle
    """

    def __init__(self, task: asyncio.Task[JobSummary], spec: JobSpec, knobs: Knobs) -> None:
        super().__init__(loop=task.get_loop())
        self._task = task
        self._spec = spec
        self._knobs = knobs
        self._lock = threading.Lock()
        self._last = (0.0, 0)  # (elapsed, done) at the previous stats()
        task.add_done_callback(self._settle)

    @property
    def task(self) -> asyncio.Task[JobSummary]:
        """The job's task on the caller's loop."""
        return self._task

    def get_name(self) -> str:
        """The job's task's name."""
        return self._task.get_name()

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel the job at once (a hard stop); the handle is cancelled once it has unwound."""
        if self.done():
            return False
        return self._task.cancel(msg)

    def _settle(self, task: asyncio.Task[JobSummary]) -> None:
        """The job's task ended: this future takes its outcome."""
        if self.done():
            return
        if task.cancelled():
            super().cancel()
        elif (error := task.exception()) is not None:
            self.set_exception(error)
        else:
            self.set_result(task.result())

    # --- knobs ----------------------------------------------------------------------------

    def set_workers(self, workers: int) -> bool:
        """At most `workers` calls in flight from now on (see the module); False if the job ended.

        Raises:
            TypeError, ValueError: `workers` is not an int between 1 and
                `pcmodel._validate.MAX_WORKERS` (10 000; on an adaptive job: between its `min`
                and `max`).
            NotImplementedError: the job's transport cannot change its pool while it runs.
        """
        _validate.check_worker_count("workers", workers)
        adaptive = self._spec.adaptive
        if adaptive is not None and not adaptive.min <= workers <= adaptive.max:
            raise ValueError(
                f"workers must be between the adaptive job's min ({adaptive.min}) and max "
                f"({adaptive.max}), got {workers!r}"
            )
        return self._turn("set_workers", lambda pool: pool.set_workers(workers))

    def set_rate(self, max_per_second: float | None, burst: int | None = None) -> bool:
        """The most calls started per second from now on (None: no limit); False if the job ended.

        Args:
            max_per_second: calls per second across all workers, retries included; None
                removes the limit.
            burst: calls that may start at once; None keeps the current one.

        Raises:
            TypeError, ValueError: a bad rate or burst.
            NotImplementedError: the job's transport cannot change its rate while it runs.
        """
        rate = _validate.check_rate("max_per_second", max_per_second)
        if burst is not None:
            _validate.check_int("burst", burst, 1)
        return self._turn("set_rate", lambda pool: pool.set_rate(rate, burst))

    def pause(self) -> bool:
        """Start no call until `resume()`; the calls in flight finish. False if the job ended.

        Once the job is stopping, a pause changes nothing: the stop wins.
        """
        return self._turn("pause", lambda pool: pool.pause())

    def resume(self) -> bool:
        """Start calls again after `pause()`. False if the job ended."""
        return self._turn("resume", lambda pool: pool.resume())

    def stop(self, graceful: bool = True) -> bool:
        """Stop the job; its summary still comes back. False if the job had ended.

        Args:
            graceful: True: no new calls, the calls in flight finish, the queued items are
                reported unprocessed (like `StopSignal`). False: the calls in flight are
                cancelled too (each gets a `CancelledError` result, like a fail-fast stop).
        """
        _validate.check_bool("graceful", graceful)

        def stop(tunable: Tunable | None, control: JobControl) -> None:
            control.stop("stop", drain=True, cancel_in_flight=not graceful)
            if tunable is not None:
                # The in-process pool is released by the stop itself; a broker job's worker
                # processes hear of it through the pause knob.
                tunable.resume()

        return not self.done() and self._knobs.turn(stop)

    def stats(self) -> LiveStats:
        """The job's live figures (see `LiveStats`); safe from any thread, approximate there.

        Before the job starts, every count is 0; after it ended, the final figures.
        """
        knobs, spec = self._knobs, self._spec
        tunable, control = knobs.tunable, knobs.control
        limit = spec.workers if spec.adaptive is None else spec.adaptive.start
        if tunable is None or control is None:
            return LiveStats(0, 0, 0, 0, limit, 0, 0.0, False, 0.0)
        counts = tunable.counts()
        elapsed = knobs.ended_at if knobs.ended_at is not None else control.since_start()
        with self._lock:
            then, done_then = self._last
            self._last = (elapsed, counts.done)
        rate = (counts.done - done_then) / (elapsed - then) if elapsed > then else 0.0
        return dataclasses.replace(counts, recent_rate=rate, elapsed=elapsed)

    def _turn(self, knob: str, change: Callable[[Tunable], None]) -> bool:
        if self.done():
            return False
        transport = self._knobs.transport
        if transport is not None and self._knobs.tunable is None:
            raise NotImplementedError(
                f"{knob}() cannot change a job carried by {type(transport).__name__} while it runs: "
                "that transport does not implement the knobs of pcmodel.transport.Tunable"
            )

        def apply(tunable: Tunable | None, _control: JobControl) -> None:
            if tunable is None:  # turned before the job started, on a transport without knobs
                logger.warning("%s() was ignored: this job's transport cannot change it while it runs", knob)
                return
            change(tunable)

        return self._knobs.turn(apply)

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<JobHandle {self._task.get_name()} {state}>"
