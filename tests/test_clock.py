from __future__ import annotations

import asyncio
import select
import socket
import sys
import threading
import time

import pytest

from pcmodel import VirtualTimeLoop
from pcmodel.clock import real_time_loop


def run_virtual(coro: object) -> object:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def test_sleep_jumps_the_clock_to_the_timer_exactly() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return start, loop.time()

    assert run_virtual(main()) == (0.0, 3600.0)


def test_concurrent_sleeps_overlap_in_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(asyncio.sleep(s) for s in (1.0, 2.5, 2.0)))
        return loop.time()

    assert run_virtual(main()) == 2.5


def test_timeout_fires_at_its_virtual_deadline() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.sleep(5)
        return loop.time()

    assert run_virtual(main()) == 1.0


def test_work_in_a_thread_takes_no_virtual_time_and_is_waited_for() -> None:
    # While the thread runs, a timer is pending at t=10: the clock must not jump to it.
    started = threading.Event()

    def blocking() -> str:
        started.set()
        time.sleep(0.05)
        return "done"

    async def main() -> tuple[str, float, float]:
        loop = asyncio.get_running_loop()
        sleeper = asyncio.ensure_future(asyncio.sleep(10))
        value = await asyncio.to_thread(blocking)
        at = loop.time()
        await sleeper
        return value, at, loop.time()

    assert run_virtual(main()) == ("done", 0.0, 10.0)
    assert started.is_set()


def test_on_idle_is_called_once_when_nothing_can_wake_a_task() -> None:
    calls: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        never = asyncio.Event()
        task = asyncio.current_task()
        assert task is not None

        def idle() -> None:
            calls.append(loop.time())
            task.cancel()

        loop.on_idle = idle
        await asyncio.sleep(2)
        with pytest.raises(asyncio.CancelledError):
            await never.wait()
        task.uncancel()

    run_virtual(main())
    assert calls == [2.0]


def test_a_callback_from_another_thread_is_run() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        threading.Thread(target=lambda: loop.call_soon_threadsafe(future.set_result, "hello")).start()
        return await future

    assert run_virtual(main()) == "hello"


def test_timers_due_at_the_same_time_fire_in_the_order_they_were_set() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        done = loop.create_future()
        # Set out of time order, with ties at t=2 and t=5: ties must keep their setting order.
        for index, delay in enumerate([5, 2, 5, 2, 1, 5, 2]):
            loop.call_later(delay, fired.append, index)
        loop.call_later(6, done.set_result, None)
        await done
        return fired

    assert run_virtual(main()) == [4, 1, 3, 6, 0, 2, 5]


def test_cancelled_timers_never_fire_even_when_most_of_the_heap_is_cancelled() -> None:
    # Over half of 300 timers cancelled: the loop rebuilds its heap without them.
    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        handles = [loop.call_later(1 + n, fired.append, n) for n in range(300)]
        for handle in handles:
            if handle.when() % 3:  # cancels 200 of 300
                handle.cancel()
        await asyncio.sleep(400)
        return fired, loop.time()

    assert run_virtual(main()) == ([n for n in range(300) if (1 + n) % 3 == 0], 400.0)


def test_a_callback_that_raises_is_reported_to_the_exception_handler_and_the_loop_goes_on() -> None:
    seen: list[dict[str, object]] = []

    def broken() -> None:
        raise ValueError("broken callback")

    async def main() -> float:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        loop.call_soon(broken)
        loop.call_later(2, broken)
        await asyncio.sleep(3)
        return loop.time()

    assert run_virtual(main()) == 3.0
    assert [type(context["exception"]) for context in seen] == [ValueError, ValueError]
    assert all("Exception in callback" in str(context["message"]) for context in seen)


def test_debug_mode_runs_the_same_virtual_schedule() -> None:
    async def main() -> tuple[float, list[float]]:
        loop = asyncio.get_running_loop()
        ends: list[float] = []

        async def nap(seconds: float) -> None:
            await asyncio.sleep(seconds)
            ends.append(loop.time())

        await asyncio.gather(nap(3), nap(1), nap(2))
        return loop.time(), ends

    with asyncio.Runner(loop_factory=VirtualTimeLoop, debug=True) as runner:
        assert runner.run(main()) == (3.0, [1.0, 2.0, 3.0])


def test_a_callback_from_another_thread_runs_while_the_clock_jumps() -> None:
    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        arrived = loop.create_future()
        thread = threading.Thread(target=lambda: loop.call_soon_threadsafe(arrived.set_result, "hello"))
        sleeper = asyncio.ensure_future(asyncio.sleep(60))
        thread.start()
        value = await arrived
        thread.join()
        await sleeper
        return value, loop.time()

    assert run_virtual(main()) == ("hello", 60.0)


def test_a_closed_loop_refuses_new_callbacks_and_timers() -> None:
    loop = VirtualTimeLoop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(1, print)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll is Linux's")


@linux_only
def test_run_jobs_real_time_loop_waits_with_the_precise_epoll_selector() -> None:
    loop = real_time_loop()
    try:
        assert type(loop._selector).__name__ == "_PreciseEpollSelector"  # type: ignore[attr-defined]
    finally:
        loop.close()


def test_another_event_loop_policy_is_respected() -> None:
    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            loop.made_by_policy = True  # type: ignore[attr-defined]
            return loop

    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(Policy())
    try:
        loop = real_time_loop()
        assert getattr(loop, "made_by_policy", False)
        loop.close()
    finally:
        asyncio.set_event_loop_policy(previous)


@linux_only
@pytest.mark.parametrize("select_fails", [False, True], ids=["select", "epoll-fallback"])
def test_the_real_time_loop_serves_sockets_and_timers(
    select_fails: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if select_fails:
        # As for a descriptor number of 1024 and up: select() refuses, epoll's own wait is used.
        def refuse(*_args: object) -> object:
            raise ValueError("filedescriptor out of range in select()")

        monkeypatch.setattr(select, "select", refuse)

    async def main() -> tuple[bytes, bool]:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        left.setblocking(False)
        right.setblocking(False)
        try:
            started = time.monotonic()
            loop.call_later(0.02, right.send, b"ping")
            data = await asyncio.wait_for(loop.sock_recv(left, 10), timeout=5)
            await asyncio.sleep(0.01)
            # A timer never fires early: both waits together took at least what they asked for.
            return data, time.monotonic() - started >= 0.03
        finally:
            left.close()
            right.close()

    with asyncio.Runner(loop_factory=real_time_loop) as runner:
        assert runner.run(main()) == (b"ping", True)
