"""The job's queue: asyncio.Queue's behaviour for the calls a job makes, checked side by side."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from pcmodel import VirtualTimeLoop
from pcmodel._queues import JobQueue


def run(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)


def test_put_and_get_without_waiting_keep_order_and_limits() -> None:
    async def main() -> None:
        queue: JobQueue[int] = JobQueue(2)
        assert (queue.empty(), queue.full(), queue.qsize(), queue.maxsize) == (True, False, 0, 2)
        queue.put_nowait(1)
        queue.put_nowait(2)
        assert (queue.empty(), queue.full(), queue.qsize()) == (False, True, 2)
        with pytest.raises(asyncio.QueueFull):
            queue.put_nowait(3)
        assert [queue.get_nowait(), queue.get_nowait()] == [1, 2]
        with pytest.raises(asyncio.QueueEmpty):
            queue.get_nowait()
        unbounded: JobQueue[int] = JobQueue(0)
        for n in range(1000):
            unbounded.put_nowait(n)
        assert not unbounded.full()
        assert unbounded.qsize() == 1000

    run(main())


def test_waiting_readers_and_writers_are_served_first_come_first_served() -> None:
    async def main() -> tuple[list[str], list[str]]:
        queue: JobQueue[str] = JobQueue(1)
        got: list[str] = []

        async def reader(name: str) -> None:
            got.append(f"{name}:{await queue.get()}")

        readers = [asyncio.create_task(reader(name)) for name in "abc"]
        await asyncio.sleep(1)  # all three wait on the empty queue
        for item in ("x", "y", "z"):
            await queue.put(item)
        await asyncio.gather(*readers)

        put_order: list[str] = []

        async def writer(item: str) -> None:
            await queue.put(item)
            put_order.append(item)

        queue.put_nowait("first")  # now full: the writers wait
        writers = [asyncio.create_task(writer(item)) for item in ("p", "q", "r")]
        await asyncio.sleep(1)
        taken = [await queue.get() for _ in range(4)]
        await asyncio.gather(*writers)
        return got, put_order + taken

    got, order = run(main())
    assert got == ["a:x", "b:y", "c:z"]
    assert order[:3] == ["p", "q", "r"]
    assert order[3:] == ["first", "p", "q", "r"]


@pytest.mark.parametrize("side", ["get", "put"])
def test_a_cancelled_waiter_passes_its_wake_up_to_the_next_in_line(side: str) -> None:
    # The first waiter is woken and cancelled in the same instant, before it runs: the item
    # (or the room) it was woken for must go to the second waiter, or the second waits forever.
    async def main() -> Any:
        queue: JobQueue[str] = JobQueue(1)
        if side == "put":
            queue.put_nowait("filler")
        first = asyncio.create_task(queue.get() if side == "get" else queue.put("from first"))
        second = asyncio.create_task(queue.get() if side == "get" else queue.put("from second"))
        await asyncio.sleep(0)  # both are waiting
        if side == "get":
            queue.put_nowait("item")  # wakes first ...
        else:
            queue.get_nowait()  # makes room, wakes first ...
        first.cancel()  # ... which is cancelled before it can run
        async with asyncio.timeout(5):
            result = await second
        with pytest.raises(asyncio.CancelledError):
            await first
        return result, queue.qsize(), (queue.get_nowait() if side == "put" else None)

    result, size, left = run(main())
    if side == "get":
        assert (result, size) == ("item", 0)
    else:
        assert (size, left) == (1, "from second")


def test_a_cancelled_waiter_that_was_not_woken_wakes_nobody() -> None:
    async def main() -> tuple[int, bool]:
        queue: JobQueue[int] = JobQueue(1)
        waiting = asyncio.create_task(queue.get())
        other = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.sleep(0)
        queue.put_nowait(7)
        value = await other
        return value, waiting.cancelled()

    assert run(main()) == (7, True)


def test_join_and_task_done_are_refused() -> None:
    async def main() -> None:
        queue: JobQueue[int] = JobQueue(1)
        with pytest.raises(AttributeError):
            queue.task_done()  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            await queue.join()  # type: ignore[attr-defined]

    run(main())


def test_the_same_random_script_gives_the_same_outcome_as_asyncio_queue() -> None:
    # Random producers, consumers, sizes and cancellations, run once on asyncio.Queue and once
    # on JobQueue: what each consumer got, in what order, must be the same.
    def script(make: Any, seed: int) -> Any:
        async def main() -> Any:
            rng = random.Random(seed)
            queue = make(rng.randint(1, 4))
            got: dict[int, list[int]] = {n: [] for n in range(3)}

            async def producer(first: int) -> None:
                for n in range(first, first + 20):
                    await asyncio.sleep(rng.choice([0, 0, 0.5, 1]))
                    await queue.put(n)

            async def consumer(index: int) -> None:
                while True:
                    await asyncio.sleep(rng.choice([0, 0.5, 1.5]))
                    got[index].append(await queue.get())

            producers = [asyncio.create_task(producer(100 * k)) for k in range(2)]
            consumers = [asyncio.create_task(consumer(k)) for k in range(3)]
            victim = consumers[rng.randrange(3)]
            await asyncio.sleep(rng.choice([0.5, 3, 7]))
            victim.cancel()
            await asyncio.gather(*producers)
            await asyncio.sleep(100)  # far longer than the consumers need to empty the queue
            assert queue.qsize() == 0
            for task in consumers:
                task.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
            return got, asyncio.get_running_loop().time()

        return run(main())

    for seed in range(25):
        assert script(JobQueue, seed) == script(asyncio.Queue, seed), f"seed {seed}"
