"""The contenders: one shape of job written with each tool.

Every contender runs `function` on every item of `params` with at most `limit` calls in
flight and hands every result to `on_result`. They differ only in the tool that does it:

- pcmodel, with `trace=True` and `trace=False`;
- a bare, hand-written `asyncio.Queue` pipeline of the same shape as pcmodel (a producer, a
  bounded work queue, `limit` workers, a result queue, one result handler), using the same
  queue calls as pcmodel: the reference every ratio is taken against;
- the same bare pipeline on pcmodel's own queue (`JobQueue`), which is what pcmodel runs on:
  what pcmodel adds on top of that one is its bookkeeping alone;
- the same bare pipeline written the way most people first write it (`await queue.put`
  everywhere), for context;
- `asyncio.gather` and `asyncio.TaskGroup` with a `Semaphore`;
- aiometer (`run_on_each`, `amap`), aiojobs (`Scheduler(limit=...)`), anyio (a memory object
  stream read by worker tasks).

The optional libraries are imported when a contender runs, so a missing one only removes its
rows from the results.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

AsyncFunction = Callable[[Any], Coroutine[Any, Any, Any]]
OnResult = Callable[[Any], object]
Params = Iterable[Any] | AsyncIterable[Any]
RunFunction = Callable[[AsyncFunction, Params, OnResult, int], Coroutine[Any, Any, None]]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_STOP = object()


@dataclass(frozen=True)
class Contender:
    """One way to run the job."""

    name: str
    """Row label in the results."""
    run: RunFunction
    """`await run(function, params, on_result, limit)` runs the whole job."""
    needs: str | None = None
    """The optional module this contender imports, if any."""
    loop: str = "asyncio"
    """The event loop it runs on: "asyncio" or "uvloop"."""
    accepts_async_params: bool = True
    """False if it needs a list of params up front (no streaming source)."""
    make_loop: LoopFactory | None = None
    """A loop factory of its own (a virtual-time loop, say), overriding `loop`."""

    @property
    def available(self) -> bool:
        """True if the modules it needs are installed."""
        modules = [m for m in (self.needs, "uvloop" if self.loop == "uvloop" else None) if m]
        return all(importlib.util.find_spec(m) is not None for m in modules)

    def loop_factory(self) -> LoopFactory:
        """A factory for the event loop this contender runs on."""
        if self.make_loop is not None:
            return self.make_loop
        if self.loop == "uvloop":
            uvloop = importlib.import_module("uvloop")
            factory: LoopFactory = uvloop.new_event_loop
            return factory
        return asyncio.new_event_loop


async def _iterate(params: Params) -> AsyncIterable[Any]:
    """`params` as an async iterable, whatever it is."""
    if isinstance(params, AsyncIterable):
        async for item in params:
            yield item
    else:
        for item in params:
            yield item


# --- pcmodel -------------------------------------------------------------------------------


def pcmodel_runner(trace: bool, module: ModuleType | None = None, **options: Any) -> RunFunction:
    """`run_job_async` of `module` (pcmodel itself by default) with the given trace and options."""

    async def run(function: AsyncFunction, params: Params, on_result: OnResult, limit: int) -> None:
        package = module if module is not None else importlib.import_module("pcmodel")
        await package.run_job_async(
            function, params, on_task_complete=on_result, workers=limit, trace=trace, **options
        )

    return run


# --- bare asyncio pipelines ----------------------------------------------------------------


async def bare_pipeline(function: AsyncFunction, params: Params, on_result: OnResult, limit: int) -> None:
    """Producer, bounded work queue, workers, result queue, one handler; sentinels to stop.

    The queue calls are pcmodel's: `put_nowait` first and `await put` only when the queue is
    full, `get_nowait` first and `await get` only when it is empty. Results are plain tuples;
    nothing is timed or counted. The queues are `asyncio.Queue`s.
    """
    await _bare_pipeline(asyncio.Queue, function, params, on_result, limit)


async def bare_pipeline_on_job_queue(
    function: AsyncFunction, params: Params, on_result: OnResult, limit: int
) -> None:
    """The same bare pipeline on pcmodel's own queue (`pcmodel._queues.JobQueue`).

    pcmodel runs on that queue, so this is the pipeline to compare it with to see what its
    bookkeeping alone costs; the bare pipeline on `asyncio.Queue` is what a hand-written one
    costs.
    """
    from pcmodel._queues import JobQueue

    await _bare_pipeline(JobQueue, function, params, on_result, limit)


async def _bare_pipeline(
    make_queue: Callable[[int], Any], function: AsyncFunction, params: Params, on_result: OnResult, limit: int
) -> None:
    work_queue = make_queue(100)
    result_queue = make_queue(100)

    async def produce() -> None:
        put, put_nowait = work_queue.put, work_queue.put_nowait
        task_id = 0
        if isinstance(params, AsyncIterable):
            async for item in params:
                try:
                    put_nowait((task_id, item))
                except asyncio.QueueFull:
                    await put((task_id, item))
                task_id += 1
        else:
            full = False  # as pcmodel: a queue left full is still full at the next item
            for task_id, item in enumerate(params):
                if not full:
                    try:
                        put_nowait((task_id, item))
                        continue
                    except asyncio.QueueFull:
                        pass
                await put((task_id, item))
                full = work_queue.full()

    async def work() -> None:
        get, get_nowait = work_queue.get, work_queue.get_nowait
        put, put_nowait = result_queue.put, result_queue.put_nowait
        while True:
            try:
                item = get_nowait()
            except asyncio.QueueEmpty:
                item = await get()
            if item is _STOP:
                return
            task_id, value = item
            result: tuple[int, Any, Exception | None]
            try:
                result = (task_id, await function(value), None)
            except Exception as error:  # noqa: BLE001 - a failing call is a result
                result = (task_id, None, error)
            try:
                put_nowait(result)
            except asyncio.QueueFull:
                await put(result)

    await _run_pipeline(produce, work, work_queue, result_queue, on_result, limit)


async def bare_pipeline_plain(
    function: AsyncFunction, params: Params, on_result: OnResult, limit: int
) -> None:
    """The same pipeline as most first write it: `await put` and `await get` everywhere."""
    work_queue: asyncio.Queue[Any] = asyncio.Queue(100)
    result_queue: asyncio.Queue[Any] = asyncio.Queue(100)

    async def produce() -> None:
        task_id = 0
        async for item in _iterate(params):
            await work_queue.put((task_id, item))
            task_id += 1

    async def work() -> None:
        while (item := await work_queue.get()) is not _STOP:
            task_id, value = item
            result: tuple[int, Any, Exception | None]
            try:
                result = (task_id, await function(value), None)
            except Exception as error:  # noqa: BLE001 - a failing call is a result
                result = (task_id, None, error)
            await result_queue.put(result)

    await _run_pipeline(produce, work, work_queue, result_queue, on_result, limit)


async def _run_pipeline(
    produce: Callable[[], Coroutine[Any, Any, None]],
    work: Callable[[], Coroutine[Any, Any, None]],
    work_queue: Any,
    result_queue: Any,
    on_result: OnResult,
    limit: int,
) -> None:
    """Both bare pipelines' wiring: one handler, `limit` workers, the producer, stop markers."""

    async def handle() -> None:
        get = result_queue.get
        failures = 0
        while (result := await get()) is not _STOP:
            try:
                on_result(result)
            except Exception:  # noqa: BLE001 - a failing callback is counted, never fatal
                failures += 1

    async with asyncio.TaskGroup() as group:
        handler = group.create_task(handle())
        workers = [group.create_task(work()) for _ in range(limit)]
        await produce()
        for _ in workers:
            await work_queue.put(_STOP)
        await asyncio.wait(workers)
        await result_queue.put(_STOP)
        await handler


async def shared_iterator(function: AsyncFunction, params: Params, on_result: OnResult, limit: int) -> None:
    """`limit` tasks in a TaskGroup, all taking items from one iterator: no queue at all.

    The least machinery that keeps `limit` calls in flight; it cannot take an async source
    and has no backpressure to measure, but it shows what the event loop alone costs.
    """
    items = iter(params)  # type: ignore[arg-type]

    async def work() -> None:
        for item in items:
            try:
                result = await function(item)
            except Exception as error:  # noqa: BLE001 - a failing call is a result
                result = error
            on_result(result)

    async with asyncio.TaskGroup() as group:
        for _ in range(limit):
            group.create_task(work())


# --- the asyncio built-ins ----------------------------------------------------------------


def _limited(function: AsyncFunction, on_result: OnResult, semaphore: asyncio.Semaphore) -> AsyncFunction:
    """`function` under `semaphore`, its result (or error) handed to `on_result`."""

    async def call(value: Any) -> None:
        async with semaphore:
            try:
                result = await function(value)
            except Exception as error:  # noqa: BLE001 - a failing call is a result
                result = error
        on_result(result)

    return call


async def gather_semaphore(function: AsyncFunction, params: Params, on_result: OnResult, limit: int) -> None:
    """One coroutine per item, all gathered; a Semaphore keeps `limit` in flight."""
    call = _limited(function, on_result, asyncio.Semaphore(limit))
    items = [item async for item in params] if isinstance(params, AsyncIterable) else list(params)
    await asyncio.gather(*(call(item) for item in items))


async def taskgroup_semaphore(
    function: AsyncFunction, params: Params, on_result: OnResult, limit: int
) -> None:
    """One task per item in a TaskGroup, created as items arrive; a Semaphore limits them."""
    call = _limited(function, on_result, asyncio.Semaphore(limit))
    async with asyncio.TaskGroup() as group:
        if isinstance(params, AsyncIterable):
            async for item in params:
                group.create_task(call(item))
        else:
            for item in params:
                group.create_task(call(item))


# --- other libraries -------------------------------------------------------------------------


def _reporting(function: AsyncFunction, on_result: OnResult) -> AsyncFunction:
    """`function`, its result (or error) handed to `on_result`."""

    async def call(value: Any) -> None:
        try:
            result = await function(value)
        except Exception as error:  # noqa: BLE001 - a failing call is a result
            result = error
        on_result(result)

    return call


async def aiometer_run_on_each(
    function: AsyncFunction, params: Params, on_result: OnResult, limit: int
) -> None:
    """`aiometer.run_on_each(call, items, max_at_once=limit)`."""
    aiometer = importlib.import_module("aiometer")
    await aiometer.run_on_each(_reporting(function, on_result), list(params), max_at_once=limit)  # type: ignore[arg-type]


async def aiometer_amap(function: AsyncFunction, params: Params, on_result: OnResult, limit: int) -> None:
    """`async with aiometer.amap(function, items, max_at_once=limit) as results`."""
    aiometer = importlib.import_module("aiometer")
    async with aiometer.amap(function, list(params), max_at_once=limit) as results:  # type: ignore[arg-type]
        async for result in results:
            on_result(result)


async def aiojobs_scheduler(function: AsyncFunction, params: Params, on_result: OnResult, limit: int) -> None:
    """`aiojobs.Scheduler(limit=limit)`: one job spawned per item, then wait for them all."""
    aiojobs = importlib.import_module("aiojobs")
    call = _reporting(function, on_result)
    scheduler = aiojobs.Scheduler(limit=limit, wait_timeout=None)
    try:
        async for item in _iterate(params):
            await scheduler.spawn(call(item))
    finally:
        await scheduler.wait_and_close()


async def anyio_stream(function: AsyncFunction, params: Params, on_result: OnResult, limit: int) -> None:
    """An anyio memory object stream (buffer 100) read by `limit` worker tasks."""
    anyio = importlib.import_module("anyio")
    send, receive = anyio.create_memory_object_stream(100)

    async def work(stream: Any) -> None:
        async with stream:
            async for item in stream:
                try:
                    result = await function(item)
                except Exception as error:  # noqa: BLE001 - a failing call is a result
                    result = error
                on_result(result)

    async with anyio.create_task_group() as group:
        for _ in range(limit):
            group.start_soon(work, receive.clone())
        receive.close()
        async with send:
            async for item in _iterate(params):
                await send.send(item)


PCMODEL_FALSE = Contender("pcmodel trace=False", pcmodel_runner(False))
PCMODEL_TRUE = Contender("pcmodel trace=True", pcmodel_runner(True))
BARE = Contender("bare asyncio pipeline", bare_pipeline)
BARE_JOB_QUEUE = Contender("bare pipeline on pcmodel's JobQueue", bare_pipeline_on_job_queue)
BARE_PLAIN = Contender("bare pipeline, await put/get", bare_pipeline_plain)
GATHER = Contender("gather + Semaphore", gather_semaphore, accepts_async_params=False)
TASKGROUP = Contender("TaskGroup + Semaphore", taskgroup_semaphore)
AIOMETER_EACH = Contender(
    "aiometer run_on_each", aiometer_run_on_each, needs="aiometer", accepts_async_params=False
)
AIOMETER_AMAP = Contender("aiometer amap", aiometer_amap, needs="aiometer", accepts_async_params=False)
AIOJOBS = Contender("aiojobs Scheduler", aiojobs_scheduler, needs="aiojobs")
ANYIO = Contender("anyio stream + workers", anyio_stream, needs="anyio")

BARE_UVLOOP = Contender("bare asyncio pipeline [uvloop]", bare_pipeline, loop="uvloop")
PCMODEL_FALSE_UVLOOP = Contender("pcmodel trace=False [uvloop]", pcmodel_runner(False), loop="uvloop")
PCMODEL_TRUE_UVLOOP = Contender("pcmodel trace=True [uvloop]", pcmodel_runner(True), loop="uvloop")

PCMODEL = (PCMODEL_FALSE, PCMODEL_TRUE)
LIBRARIES = (GATHER, TASKGROUP, AIOMETER_EACH, AIOMETER_AMAP, AIOJOBS, ANYIO)
"""The other ways to run the job (not pcmodel, not the bare pipelines)."""
ALL = (BARE, BARE_JOB_QUEUE, *PCMODEL, BARE_PLAIN, *LIBRARIES)
UVLOOP = (BARE_UVLOOP, PCMODEL_FALSE_UVLOOP, PCMODEL_TRUE_UVLOOP)
