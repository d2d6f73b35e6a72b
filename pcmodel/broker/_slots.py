"""The slots: run each item the fetcher took, under its job's policies, into a result message.

A worker process has `--workers` slots, like the worker pool of a job in one process: each
`slot` takes items from the buffer until `STOP`, and `run_item` turns one item into the result
message the controller reads (`messages.encode_result`): the value, or the error, with the
item's timing, its slot, how many times it was delivered and how many attempts it made. The
call runs under the job's timeout, retry policy and shared rate limit (`rate_limit`).

Nothing an item does stops the process. A malformed message, unreadable job settings, an item
that already stopped `max_deliveries` processes, a halted job, and whatever the function
raises or returns (StopIteration, a CancelledError of its own, SystemExit, a value JSON cannot
carry) each fail the item. An item whose job ended while it waited or ran is dropped
unanswered (`run_item` returns None). Only a hard stop of the process itself (its task
cancelled) leaves an item unfinished, for another process to take over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pcmodel._queues import STOP
from pcmodel.broker._process import Item, Job, ProcessState
from pcmodel.broker._redis import decode_text
from pcmodel.broker.messages import (
    MalformedMessageError,
    WorkerLostError,
    decode_work,
    encode_error,
    encode_result,
)
from pcmodel.policies import call_with_policies
from pcmodel.stopping import cancelled_by_others

__all__ = ["run_item", "slot"]

logger = logging.getLogger("pcmodel.broker")


async def slot(process: ProcessState, index: int) -> None:
    """Run items from the buffer until `STOP`; hand each result to the writer.

    A slot numbered above the process's slots now (a job asked for more, then for fewer
    again: `ProcessState.resize`) retires after its item; while it waits for one
    (`process.idle_slots`), `serve_worker` may end it at once.
    """
    while index < process.workers:
        process.idle_slots.add(index)
        try:
            item = await process.buffer.get()
        finally:
            process.idle_slots.discard(index)
        if item is STOP:
            break
        # A job that ended while its item waited here: drop the item unanswered.
        payload = None if item.job.gone else await run_item(process, index, item)
        if payload is None:
            item.job.inflight.discard(item.entry_id)
        else:
            item.job.written_soon += 1
            process.outbox.put_nowait((item.job, item.entry_id, payload))
        process.outstanding -= 1
        process.wake.set()


async def run_item(process: ProcessState, index: int, item: Item) -> bytes | None:
    """The result message for `item`, run in slot `index`, or None if its job ended meanwhile."""
    job = item.job
    message: dict[str, Any] = {
        "task": None,
        "entry": decode_text(item.entry_id),
        "process": process.name,
        "slot": index,
        "slots": process.workers,
        "deliveries": item.deliveries,
        "attempts": 0,
    }
    settings = job.settings
    if settings is not None and item.deliveries > settings.max_deliveries:
        # Checked before reading the entry: an entry that kills whoever reads it must not
        # be read again. The controller knows which task the entry carries.
        return _failed(
            process,
            message,
            WorkerLostError(
                f"the item was delivered {item.deliveries} times and every worker that took it "
                f"stopped before finishing it (max_deliveries={settings.max_deliveries}): it is "
                "not run again"
            ),
        )
    try:
        work = decode_work(item.fields)
    except MalformedMessageError as malformed:
        process.stats.malformed += 1
        logger.warning("job %s: malformed message %s: %s", job.keys.job_id, message["entry"], malformed)
        return _failed(process, message, malformed)
    message["task"] = work.task_id
    if settings is None:
        return _failed(
            process, message, MalformedMessageError(f"the job's settings are unreadable: {job.problem}")
        )
    if job.halted:
        message["cancelled"] = True
        return _failed(process, message, asyncio.CancelledError())
    # As in a local job, a task starts when a worker slot takes it (a rate-limit wait is
    # part of its duration), and `attempts[0]` counts its calls, retries included.
    attempts = [1]
    started = process.loop.time()
    call = asyncio.create_task(_call(process, job, work.params, attempts))
    job.running.add(call)
    failure: BaseException | None = None
    value: Any = None
    try:
        value = await call
    except Exception as exc:  # noqa: BLE001 - a failing call is an outcome, not a crash
        failure = exc
    except asyncio.CancelledError as exc:
        current = asyncio.current_task()
        if current is not None and cancelled_by_others(current):
            raise  # this process is stopping hard: leave the item to other processes
        if job.gone:
            return None
        failure = exc
        # Only the keeper (a fail-fast halt) and `forget` (the job ended) cancel a call; a
        # call nobody cancelled raised a CancelledError of its own: a plain failure.
        message["cancelled"] = cancelled_by_others(call)
    finally:
        job.running.discard(call)
    finished = process.loop.time()
    message.update(started=started + process.offset, finished=finished + process.offset, attempts=attempts[0])
    if failure is not None:
        process.stats.failed += 1
        message["error"] = encode_error(failure)
    else:
        message["value"] = value
    return encode_result(message)


def _failed(process: ProcessState, message: dict[str, Any], error: BaseException) -> bytes:
    """A result message for an item that did not run."""
    now = process.loop.time() + process.offset
    message.update(started=now, finished=now, error=encode_error(error))
    process.stats.failed += 1
    return encode_result(message)


async def _call(process: ProcessState, job: Job, params: Any, attempts: list[int]) -> Any:
    try:
        if job.policies is None:
            return await process.function(params)
        return await call_with_policies(process.function, params, attempts, *job.policies)
    except (KeyboardInterrupt, SystemExit) as escape:
        # Raised in a task, these would end the event loop and the process with it, and
        # every item it holds for every job: a worker process serves many jobs, so the
        # function's exit is its item's failure. (Ctrl-C and SIGTERM never arrive here:
        # signal handlers stop the process gracefully.)
        raise RuntimeError(
            f"the function raised {type(escape).__name__}({_short(escape)}): a worker process "
            "reports it as the item's failure rather than exiting"
        ) from escape


def _short(error: BaseException) -> str:
    """`repr` of an exception's arguments, at most 80 characters."""
    try:
        text = ", ".join(repr(arg) for arg in error.args)
    except Exception:  # noqa: BLE001 - only for a message
        text = "..."
    return text if len(text) <= 80 else text[:77] + "..."
