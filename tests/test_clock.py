from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pcmodel import VirtualTimeLoop


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
