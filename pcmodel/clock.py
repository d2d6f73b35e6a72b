"""Real and virtual time.

A job reads time from its event loop (`loop.time()`), so the clock is chosen by choosing the
loop. `clock="real"` is an ordinary asyncio loop. `clock="virtual"` is a `VirtualTimeLoop`:
whenever no callback is ready to run, it moves its clock straight to the next timer instead
of sleeping until it. Jobs made of `asyncio.sleep` calls then finish at once, with exact and
repeatable times, which is what the lessons and the tests show.

Two rules keep virtual time honest:

- Work in threads (`run_in_executor`, `asyncio.to_thread`, plain functions run by a job)
  takes no virtual time: while a thread is busy the loop really waits for it, without
  moving the clock.
- If every task waits and nothing can ever wake one (no timer, no thread, no socket), the
  loop calls its `on_idle` hook once; the job runner uses it to end a stuck job with a clear
  error instead of hanging. Unless another thread is expected to wake one
  (`waits_for_another_thread`: a job paused by its handle on the caller's loop, while the
  job runs on this one in a helper thread): then the loop waits for it, in real time, as it
  waits for a busy thread.

And the clock never spins: it jumps straight to the next timer however far ahead it is
(`asyncio.sleep(1e300)` is one jump, not 10^295 jumps of a day). A timer due at infinity
(`asyncio.sleep(math.inf)`, or a time too large for a float) can never fire, so it counts as
no timer: a job whose tasks wait only on such timers is stuck. A NaN delay is refused with a
`ValueError`, as no clock can reach it.

At about 500 lines this is one concern, the two clocks: most of it is `VirtualTimeLoop`, whose
turn of the loop and timer heap are asyncio's own, rewritten in one place so that time can
jump; the real clock's loop and the factory that builds either loop whole (Ctrl-C held back
meanwhile) are the short rest. What a stuck job's tasks await is described in
`pcmodel._task_waits`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import itertools
import select
import selectors
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, TypeVarTuple, Unpack, cast

from pcmodel._task_waits import describe_blocked_tasks

__all__ = [
    "CLOCKS",
    "Clock",
    "DeadlockError",
    "VirtualTimeLoop",
    "fail_if_stuck",
    "loop_factory",
    "real_time_loop",
]

Clock = Literal["real", "virtual"]
CLOCKS: tuple[Clock, ...] = ("real", "virtual")

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


_MAX_SELECT = 24 * 3600.0
"""The longest real wait in one `select()` call, in seconds (asyncio's own cap): the clock's
jumps have no cap, but the operating system refuses very long timeouts."""

_NEVER = float("inf")
"""When a timer at infinity is due: never."""


class _JumpingSelector:
    """Wraps the loop's real selector and jumps the virtual clock instead of sleeping."""

    def __init__(self, loop: VirtualTimeLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real
        self.registered = len(real.get_map())
        """File objects registered with the real selector; the loop's own self-pipe is one."""

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._real.register(fileobj, events, data)
        self.registered = len(self._real.get_map())
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        self.registered = len(self._real.get_map())
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        # The loop's own self-pipe is always registered; anything more is real I/O.
        real_io = self.registered > 1
        if loop._threads_busy or (real_io and timeout is None):
            if loop._follows_real_time and timeout:
                # The loop is closing and waits for threads with a limit in real seconds
                # (see `shutdown_default_executor`): the clock moves as much as real time.
                started = time.monotonic()
                ready = self._real.select(timeout)
                loop._now += time.monotonic() - started
                return ready
            # A thread's result (or a socket) wakes the selector; until then time stands
            # still: work outside the loop takes no virtual time.
            return self._real.select(0 if timeout == 0 else None)
        if real_io:
            ready = self._real.select(0)
            if ready or timeout == 0:
                return ready
        if timeout is None:
            hook = loop.on_idle
            waits = loop.waits_for_another_thread
            if hook is not None and not (waits is not None and waits()):
                # Nothing is ready, no timer is set, no thread is busy: only another thread
                # could wake a task now. Tell the runner once, then wait for real.
                loop.on_idle = None
                loop.call_soon(hook)
                return []
            # Only another thread can wake a task now: its call_soon_threadsafe writes to the
            # self-pipe, which ends this wait (no spinning, and the clock stands still).
            return self._real.select(None)
        if timeout > 0:
            # Straight to the next timer, which `timeout` (capped for a real select) may not reach.
            loop._now = loop._timers[0][0]
        # Callbacks queued by other threads are already on the ready list; the byte they
        # wrote to the self-pipe is read the next time the loop really selects. Skipping the
        # system call here is what makes a jump cheap.
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _init_handle(
    handle: Any,
    callback: Callable[..., object],
    args: tuple[Any, ...],
    loop: asyncio.AbstractEventLoop,
    context: contextvars.Context | None,
) -> None:
    """What asyncio's `Handle.__init__` does outside debug mode, without asking the loop."""
    handle._callback = callback
    handle._args = args
    handle._cancelled = False
    handle._loop = loop
    handle._repr = None
    handle._source_traceback = None
    handle._context = context if context is not None else contextvars.copy_context()


class _Handle(asyncio.Handle):
    """asyncio's `Handle`, made without asking the loop whether it is in debug mode."""

    __slots__ = ()
    __init__ = _init_handle


class _TimerHandle(asyncio.TimerHandle):
    """asyncio's `TimerHandle`, made and cancelled without asking the loop about debug mode."""

    __slots__ = ()

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None,
    ) -> None:
        _init_handle(self, callback, args, loop, context)
        self._when = when
        self._scheduled = False

    def cancel(self) -> None:
        this: Any = self
        if not this._cancelled:
            if this._scheduled:
                this._loop._timer_cancelled_count += 1
            this._cancelled = True
            this._callback = None
            this._args = None


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing is ready to run.

    `time()` starts at 0.0. Use it as a loop factory, for example
    `asyncio.Runner(loop_factory=VirtualTimeLoop)`, or through `run_job(..., clock="virtual")`.

    Timers due at the same virtual time fire in the order they were set.

    Attributes:
        on_idle: called once (then reset to None) when every task waits and nothing can wake
            one: no ready callback, no timer, no busy thread.
        waits_for_another_thread: asked when every task waits and nothing on this loop can
            wake one; True means another thread is expected to (the handle of a paused job
            run here from another loop's thread): the loop waits for it in real time, and
            does not call `on_idle`.
    """

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        super().__init__(selector)
        self._now = 0.0
        self._threads_busy = 0
        self._follows_real_time = False
        self.on_idle: Callable[[], object] | None = None
        self.waits_for_another_thread: Callable[[], bool] | None = None
        # The timers, as a heap of (when, order, handle): tuples compare in C, where asyncio's
        # heap of handles calls a Python `__lt__` several times per timer, and `order` makes
        # timers due at the same time fire first set, first fired.
        self._timers: list[tuple[float, int, Any]] = []  # Any: the handles' private fields are read
        self._timer_order = itertools.count()
        # The selector is private to SelectorEventLoop; wrapping it is how the clock jumps.
        this: Any = self
        self._jumping = _JumpingSelector(self, this._selector)
        this._selector = self._jumping

    def time(self) -> float:
        """The virtual time in seconds since the loop was made."""
        return self._now

    def call_soon(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        this: Any = self
        if this._closed or this._debug:
            return super().call_soon(callback, *args, context=context)  # asyncio's checks and errors
        handle: asyncio.Handle = _Handle(callback, args, self, context)
        this._ready.append(handle)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        this: Any = self
        when = self._now + delay
        if when != when:  # noqa: PLR0124 - NaN, the one float not equal to itself (cheaper than isnan)
            raise ValueError(f"a timer's delay must be a number of seconds, got {delay!r}")
        if this._closed or this._debug:
            return self.call_at(when, callback, *args, context=context)
        # call_at's own path, written out: every asyncio.sleep comes through here.
        timer: Any = _TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._timer_order), timer))
        timer._scheduled = True
        return cast(asyncio.TimerHandle, timer)

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if when != when:  # noqa: PLR0124 - NaN, the one float not equal to itself (cheaper than isnan)
            raise ValueError(f"a timer's time must be a number of seconds, got {when!r}")
        this: Any = self
        timer: Any
        if this._closed or this._debug:
            this._check_closed()
            this._check_thread()
            this._check_callback(callback, "call_at")
            timer = asyncio.TimerHandle(when, callback, args, self, context)
        else:
            timer = _TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._timer_order), timer))
        timer._scheduled = True
        return cast(asyncio.TimerHandle, timer)

    def _run_once(self) -> None:
        """Run ready callbacks and due timers, jumping the clock, until the loop must stop.

        One turn does what a turn of asyncio's own loop does, in the same order: drop
        cancelled timers, poll for I/O (here: jump the clock), move the timers now due to the
        ready list, run the callbacks that were ready. While no thread is busy and no real
        I/O is registered, a turn needs no system call, so this goes on turning until the loop
        is asked to stop or has nothing left to run; otherwise it does one turn through the
        real selector, as asyncio does.
        """
        this: Any = self
        ready = this._ready
        jumping = self._jumping
        heappop = heapq.heappop
        while True:
            timers = self._timers
            if this._timer_cancelled_count:
                count = len(timers)
                if count > 100 and this._timer_cancelled_count * 2 > count:
                    # Many cancelled timers (finished timeouts, say): rebuild the heap without them.
                    kept = []
                    for entry in timers:
                        timer: Any = entry[2]
                        if timer._cancelled:
                            timer._scheduled = False
                        else:
                            kept.append(entry)
                    heapq.heapify(kept)
                    self._timers = timers = kept
                    this._timer_cancelled_count = 0
                else:
                    while timers and timers[0][2]._cancelled:
                        this._timer_cancelled_count -= 1
                        timer = heappop(timers)[2]
                        timer._scheduled = False
            timeout: float | None = None
            if ready or this._stopping:
                timeout = 0
            elif timers and timers[0][0] < _NEVER:  # a timer at infinity is no timer
                timeout = timers[0][0] - self._now
                if timeout < 0:  # noqa: PLR1730 - no call to max() on the loop's hottest path
                    timeout = 0
            jump = timeout is not None and not self._threads_busy and jumping.registered <= 1
            if jump:
                if timeout:
                    # Straight to the timer, however far: one jump, and no rounding can leave
                    # the clock a hair short of it.
                    self._now = timers[0][0]
            else:
                if timeout is not None and timeout > _MAX_SELECT:
                    timeout = _MAX_SELECT
                this._process_events(jumping.select(timeout))
            # `<=`, where asyncio has `<`: far out, `now + resolution` rounds to `now`, and a
            # timer due exactly now would never be taken.
            end = self._now + this._clock_resolution
            while timers and timers[0][0] <= end:
                timer = heappop(timers)[2]
                timer._scheduled = False
                ready.append(timer)
            if this._debug:
                for _ in range(len(ready)):
                    handle: Any = ready.popleft()
                    if not handle._cancelled:
                        handle._run()
            else:
                for _ in range(len(ready)):
                    handle = ready.popleft()
                    if handle._cancelled:
                        continue
                    # `handle._run()`, written out: one Python call less per callback.
                    try:
                        handle._context.run(handle._callback, *handle._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:  # noqa: BLE001 - reported as asyncio reports it
                        self.call_exception_handler(
                            {
                                "message": f"Exception in callback {handle!r}",
                                "exception": exc,
                                "handle": handle,
                            }
                        )
            handle = None  # no reference kept to the last callback
            if not jump or this._stopping:
                return

    def close(self) -> None:
        super().close()
        self._timers.clear()

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - asyncio's signature
        """asyncio's own, but the wait for the default executor's threads is a real wait.

        `asyncio.Runner.close()` (so `asyncio.run` and `run_job`) calls this with a limit of
        300 s. Python 3.13 measures that limit with a timer on the loop's clock, and virtual
        time would jump straight to it: the threads (of `asyncio.to_thread`, say) would get
        no time to finish, and asyncio would warn "The executor did not finishing joining its
        threads within 300 seconds". So the wait counts as a busy thread, and while it lasts
        the clock follows real time: the limit means 300 real seconds, as on a real-time
        loop. (Python 3.11 and 3.12 wait as long as the threads take, on any loop.)
        """
        self._threads_busy += 1
        self._follows_real_time = True
        try:
            if sys.version_info >= (3, 12):
                await super().shutdown_default_executor(timeout)
            else:
                await super().shutdown_default_executor()
        finally:
            self._follows_real_time = False
            self._threads_busy -= 1

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        future = super().run_in_executor(executor, func, *args)
        self._threads_busy += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future[Any]) -> None:
        self._threads_busy -= 1


if sys.platform == "linux":

    class _PreciseEpollSelector(selectors.EpollSelector):
        """An epoll selector whose timed waits end on time, not up to a millisecond late.

        epoll takes its timeout in whole milliseconds, and Python rounds it up, so every timer on
        asyncio's stock Linux loop fires up to 1 ms late (2% of a 50 ms task). Here a timed wait
        first waits on the epoll file descriptor itself with `select()`, whose timeout has
        microsecond resolution (the descriptor becomes readable when any registered one is
        ready), then collects the events without waiting. A descriptor number too large for
        `select()` (1024 and up) falls back to epoll's own wait.
        """

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is not None and timeout > 0:
                try:
                    readable, _, _ = select.select([self.fileno()], [], [], timeout)
                except ValueError:  # a descriptor number select() cannot take
                    return super().select(timeout)
                if not readable:
                    return []
                timeout = 0
            return super().select(timeout)


def real_time_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for real time: asyncio's default one, with on-time timers on Linux.

    Where asyncio's default loop would wait with epoll (Linux, no event loop policy of the
    user's), the loop waits with `_PreciseEpollSelector`; anywhere else (another platform,
    uvloop or another policy installed) it is exactly the loop `asyncio.new_event_loop()`
    makes.
    """
    policy = asyncio.get_event_loop_policy()
    if (
        sys.platform == "linux"
        and type(policy) is asyncio.DefaultEventLoopPolicy
        and issubclass(selectors.DefaultSelector, selectors.EpollSelector)
    ):
        return asyncio.SelectorEventLoop(_PreciseEpollSelector())
    return asyncio.new_event_loop()


def loop_factory(clock: Clock) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop factory for `clock`: a `VirtualTimeLoop`, or `real_time_loop`, built whole."""
    factory: Callable[[], asyncio.AbstractEventLoop] = (
        VirtualTimeLoop if clock == "virtual" else real_time_loop
    )
    return functools.partial(_built_whole, factory)


def _built_whole(factory: Callable[[], asyncio.AbstractEventLoop]) -> asyncio.AbstractEventLoop:
    """`factory()`, with Ctrl-C held back until the loop is whole.

    A KeyboardInterrupt raised in the middle of building a loop leaves a half-made one, whose
    finalizer then fails noisily ("no attribute '_ssock'") on top of the interrupt's own
    traceback. In the main thread of a POSIX process, SIGINT is blocked while the loop is
    built, and delivered as soon as it is.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        return factory()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return factory()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class DeadlockError(RuntimeError):
    """A virtual-time job stopped making progress: every task waits and nothing can wake one."""


async def fail_if_stuck(awaitable: Awaitable[_T], hint: str) -> _T:
    """Await `awaitable`; on a `VirtualTimeLoop` that gets stuck, raise `DeadlockError`.

    The loop's `on_idle` hook cancels the awaiting task when every task waits and nothing can
    wake one; that cancel (and no other) becomes a `DeadlockError` that lists the blocked
    tasks and what each awaits (read before the cancel unwinds them), then `hint`, a sentence
    on what to look for. On any other loop this is a plain `await`.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if not isinstance(loop, VirtualTimeLoop) or task is None:
        return await awaitable
    stuck: list[tuple[float, str]] = []

    def on_idle() -> None:
        stuck.append((loop.time(), describe_blocked_tasks(loop, skip=task)))
        task.cancel()

    loop.on_idle = on_idle
    try:
        return await awaitable
    except asyncio.CancelledError:
        # Only our own cancel (and no one else's) becomes a DeadlockError.
        if stuck and task.cancelling() == 1:
            task.uncancel()
            at, blocked = stuck[0]
            raise DeadlockError(
                f"stuck at virtual time {at:.3f} s: every task is waiting and nothing can wake "
                f"one (no timer will fire and no thread is busy). Blocked:\n{blocked}\n{hint}"
            ) from None
        raise
    finally:
        loop.on_idle = None
