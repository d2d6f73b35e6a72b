"""The threads that run a job's plain (non-async) function.

A plain function would block the event loop, so each call runs in a thread. Threads cannot be
killed: a call that overruns its timeout, or that is still running when the job is cancelled,
goes on in its thread until it returns by itself. Two rules keep such a call from holding the
job up:

- the call is *abandoned*: its result is thrown away, its thread is no longer counted as one of
  the job's, and the next call starts in another thread (a fixed-size pool would make every
  later call queue behind the stuck one and time out without ever running);
- the threads are daemon threads, so neither the end of the job nor the end of the program
  waits for an abandoned call.

`JobThreads` is a `concurrent.futures.Executor`, so the event loop's `run_in_executor` (and the
virtual clock's bookkeeping of busy threads) works with it unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["JobThreads", "in_threads", "result_when_done"]

_R = TypeVar("_R")

_STOP = None


class JobThreads(concurrent.futures.Executor):
    """Daemon threads that run calls one at a time each; a busy thread never delays a call.

    A call goes to an idle thread if there is one, else to a new thread: the job's workers
    bound how many calls run at once, so the threads that are not stuck in an abandoned call
    never outnumber the workers.
    """

    def __init__(self, name_prefix: str = "pcmodel-thread") -> None:
        self._name_prefix = name_prefix
        self._numbers = itertools.count()
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call, minus the calls queued for them
        self._threads: set[threading.Thread] = set()
        self._busy: set[threading.Thread] = set()
        self._shutdown = False
        self.abandoned = 0
        """Calls given up while they still ran in their thread (a timeout or a cancel)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot run a call after the job's threads were shut down")
            self._calls.put((future, fn, args, kwargs))
            if self._idle > 0:
                self._idle -= 1
            else:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name_prefix}-{next(self._numbers)}", daemon=True
                )
                self._threads.add(thread)
                thread.start()
        return future

    def _serve(self) -> None:
        me = threading.current_thread()
        while (call := self._calls.get()) is not _STOP:
            future, fn, args, kwargs = call
            with self._lock:
                self._busy.add(me)
            error: BaseException | None = None
            result: Any = None
            started = future.set_running_or_notify_cancel()
            if started:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting worker
                    error = exc
            # Off the busy list before the result is handed over: once the worker has its
            # result, this thread must no longer count as running a call.
            with self._lock:
                self._busy.discard(me)
                stopping = self._shutdown
                if stopping:
                    self._threads.discard(me)
                else:
                    self._idle += 1
            if started:
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
            del future, error, result  # no reference cycle through a traceback
            if stopping:
                return
        with self._lock:
            self._threads.discard(me)

    def abandon(self) -> None:
        """Count a call given up while it still runs (its thread is then never waited for)."""
        with self._lock:
            self.abandoned += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the idle threads; with `wait`, wait for them (never for a busy one).

        Calls queued but not started are cancelled. A thread still running a call (an
        abandoned one) ends by itself when its call returns.
        """
        with self._lock:
            self._shutdown = True
            while True:
                try:
                    future, *_ = self._calls.get_nowait()
                except queue.Empty:
                    break
                future.cancel()
            idle = [thread for thread in self._threads if thread not in self._busy]
            for _ in idle:
                self._calls.put(_STOP)
        if wait:
            for thread in idle:
                # Bounded: a thread that took a call in the instant before the shutdown is
                # busy after all, and a busy thread is never waited for.
                thread.join(timeout=1.0)

    @property
    def running(self) -> int:
        """Threads running a call right now."""
        with self._lock:
            return len(self._busy)


class _Call:
    """One call of a plain function in a thread; knows whether it has started and ended."""

    __slots__ = ("finished", "function", "started")

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function
        self.started = False
        self.finished = False

    def __call__(self, params: Any) -> Any:
        self.started = True
        try:
            return self.function(params)
        except StopIteration as error:
            # asyncio cannot carry a StopIteration through a Future (it would end the
            # awaiting generator instead): say what happened in an exception it can carry.
            raise RuntimeError(f"{_name(self.function)} raised StopIteration") from error
        finally:
            self.finished = True


def in_threads(
    function: Callable[[Any], Any], threads: concurrent.futures.Executor
) -> Callable[[Any], Awaitable[Any]]:
    """Adapt a plain function so each call runs in one of `threads` and can be awaited.

    A plain function called on the event loop would block every other task while it runs; in a
    thread it only blocks that thread. If the function returns an awaitable (a lambda that
    returns a coroutine, say), the awaitable is awaited on the loop. A call that is cancelled
    (a timeout, a stop) while it runs is abandoned: see the module's docstring.
    """

    async def call_in_thread(params: Any) -> Any:
        call = _Call(function)
        try:
            value = await asyncio.get_running_loop().run_in_executor(threads, call, params)
        except asyncio.CancelledError:
            if call.started and not call.finished and isinstance(threads, JobThreads):
                threads.abandon()
            raise
        if inspect.isawaitable(value):
            value = await value
        return value

    return call_in_thread


def _name(function: Callable[..., Any]) -> str:
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"the function {name}()"


def result_when_done(future: concurrent.futures.Future[_R]) -> _R:
    """`future.result()`, waited for in slices of 0.1 s so that Ctrl-C can interrupt the wait.

    A plain `future.result()` waits on a lock, and before Python 3.14 a lock wait on Windows
    cannot be interrupted (CPython issue gh-125541): "Interrupt kernel" would then only take
    effect once the job had ended.
    """
    while not future.done():
        concurrent.futures.wait([future], timeout=0.1)
    return future.result()
