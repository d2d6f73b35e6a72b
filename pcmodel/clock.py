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
  error instead of hanging.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

__all__ = ["CLOCKS", "Clock", "DeadlockError", "VirtualTimeLoop", "fail_if_stuck", "loop_factory"]

Clock = Literal["real", "virtual"]
CLOCKS: tuple[Clock, ...] = ("real", "virtual")

_T = TypeVar("_T")


class _JumpingSelector:
    """Wraps the loop's real selector and jumps the virtual clock instead of sleeping."""

    def __init__(self, loop: VirtualTimeLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        # The loop's own self-pipe is always registered; anything more is real I/O.
        real_io = len(self._real.get_map()) > 1
        if loop._threads_busy or (real_io and timeout is None):
            # A thread's result (or a socket) wakes the selector; until then time stands
            # still: work outside the loop takes no virtual time.
            return self._real.select(0 if timeout == 0 else None)
        if real_io:
            ready = self._real.select(0)
            if ready or timeout == 0:
                return ready
        if timeout is None:
            hook = loop.on_idle
            if hook is not None:
                # Nothing is ready, no timer is set, no thread is busy: only another thread
                # could wake a task now. Tell the runner once, then wait for real.
                loop.on_idle = None
                loop.call_soon(hook)
                return []
            return self._real.select(None)
        if timeout > 0:
            loop._now += timeout
        # Callbacks queued by other threads are already on the ready list; the byte they
        # wrote to the self-pipe is read the next time the loop really selects. Skipping the
        # system call here is what makes a jump cheap.
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing is ready to run.

    `time()` starts at 0.0. Use it as a loop factory, for example
    `asyncio.Runner(loop_factory=VirtualTimeLoop)`, or through `run_job(..., clock="virtual")`.

    Attributes:
        on_idle: called once (then reset to None) when every task waits and nothing can wake
            one: no ready callback, no timer, no busy thread.
    """

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        super().__init__(selector)
        self._now = 0.0
        self._threads_busy = 0
        self.on_idle: Callable[[], object] | None = None
        # The selector is private to SelectorEventLoop; wrapping it is how the clock jumps.
        self._selector = cast(selectors.BaseSelector, _JumpingSelector(self, self._selector))  # type: ignore[has-type]

    def time(self) -> float:
        """The virtual time in seconds since the loop was made."""
        return self._now

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        future = super().run_in_executor(executor, func, *args)
        self._threads_busy += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future[Any]) -> None:
        self._threads_busy -= 1


def loop_factory(clock: Clock) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop factory for `clock`: a `VirtualTimeLoop` or asyncio's default loop."""
    if clock == "virtual":
        return VirtualTimeLoop
    return asyncio.new_event_loop


class DeadlockError(RuntimeError):
    """A virtual-time job stopped making progress: every task waits and nothing can wake one."""


async def fail_if_stuck(awaitable: Awaitable[_T], hint: str) -> _T:
    """Await `awaitable`; on a `VirtualTimeLoop` that gets stuck, raise `DeadlockError`.

    The loop's `on_idle` hook cancels the awaiting task when every task waits and nothing can
    wake one; that cancel (and no other) becomes a `DeadlockError` whose message ends with
    `hint`, a sentence on what to look for. On any other loop this is a plain `await`.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if not isinstance(loop, VirtualTimeLoop) or task is None:
        return await awaitable
    stuck_at: list[float] = []

    def on_idle() -> None:
        stuck_at.append(loop.time())
        task.cancel()

    loop.on_idle = on_idle
    try:
        return await awaitable
    except asyncio.CancelledError:
        # Only our own cancel (and no one else's) becomes a DeadlockError.
        if stuck_at and task.cancelling() == 1:
            task.uncancel()
            raise DeadlockError(
                f"stuck at virtual time {stuck_at[0]:.3f} s: every task is waiting and nothing "
                f"can wake one (no timer is set and no thread is busy). {hint}"
            ) from None
        raise
    finally:
        loop.on_idle = None
