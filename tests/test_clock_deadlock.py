"""A stuck virtual-time job says which tasks are blocked and what each one awaits."""

from __future__ import annotations

import asyncio
import inspect
import math
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pcmodel import DeadlockError, _task_waits, run_job, run_job_async


def line_of(function: Callable[..., Any], text: str) -> str:
    """`file.py:N`, where N is the line of `function` that contains `text`."""
    lines, first = inspect.getsourcelines(function)
    (offset,) = [index for index, line in enumerate(lines) if text in line]
    return f"test_clock_deadlock.py:{first + offset}"


def deadlock_message(function: Callable[[Any], Any], params: Any = range(4), **options: Any) -> str:
    with pytest.raises(DeadlockError) as caught:
        run_job(function, params, clock="virtual", **options)
    return str(caught.value)


def blocked_lines(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines() if line.startswith("  ")]


async def waits_on_an_event(n: int) -> None:
    if n == 2:
        await asyncio.Event().wait()
    await asyncio.sleep(1)


def test_the_error_names_the_blocked_task_and_the_await_it_is_stuck_in() -> None:
    message = deadlock_message(waits_on_an_event, workers=2)
    assert message.startswith("stuck at virtual time 2.000 s: every task is waiting")
    where = line_of(waits_on_an_event, ".wait()")
    # Item 2 is the third item: worker 0 takes it at t=1, when items 0 and 1 are done.
    assert blocked_lines(message)[0] == f"pcmodel-worker-0 awaits Event.wait() in waits_on_an_event ({where})"


def test_tasks_blocked_in_the_users_code_are_listed_before_pcmodels_idle_pieces() -> None:
    lines = blocked_lines(deadlock_message(waits_on_an_event, workers=2))
    assert lines[0].startswith("pcmodel-worker-0 awaits Event.wait()")
    assert lines[1:] == [
        line for line in lines[1:] if re.search(r"\((result_handler|worker|producer)\.py:", line)
    ]
    assert any(
        line.startswith("pcmodel-result-handler-0 awaits JobQueue.get() in handle_results") for line in lines
    )


async def awaits_a_bare_future(n: int) -> None:
    await asyncio.get_running_loop().create_future()


def test_a_bare_future_is_named_as_such() -> None:
    where = line_of(awaits_a_bare_future, "create_future()")
    lines = blocked_lines(deadlock_message(awaits_a_bare_future, range(1), workers=1))
    assert lines[0] == f"pcmodel-worker-0 awaits a Future in awaits_a_bare_future ({where})"


async def awaits_a_helper_task(n: int) -> None:
    helper = asyncio.create_task(asyncio.Event().wait(), name="helper")
    await helper


def test_a_task_awaiting_another_task_names_it_and_the_other_task_is_listed_too() -> None:
    where = line_of(awaits_a_helper_task, "await helper")
    lines = blocked_lines(deadlock_message(awaits_a_helper_task, range(1), workers=1))
    # The helper task's own coroutine is asyncio's Event.wait: no user frame to point at.
    assert "helper awaits Event.wait()" in lines
    assert f"pcmodel-worker-0 awaits task 'helper' in awaits_a_helper_task ({where})" in lines


async def sleeps_for_ever(n: int) -> None:
    await asyncio.sleep(math.inf)


def test_a_task_sleeping_until_infinity_is_blocked() -> None:
    where = line_of(sleeps_for_ever, "asyncio.sleep(math.inf)")
    lines = blocked_lines(deadlock_message(sleeps_for_ever, range(1), workers=1))
    assert lines[0] == f"pcmodel-worker-0 awaits sleep() in sleeps_for_ever ({where})"


def test_a_producer_stuck_in_an_async_generator_is_named() -> None:
    async def items() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()
        yield 2

    async def quick(n: int) -> int:
        return n

    lines = blocked_lines(deadlock_message(quick, items(), workers=1))
    assert any(
        re.fullmatch(
            r"pcmodel-producer-0 awaits an async generator's next item in produce \(producer\.py:\d+\)", line
        )
        for line in lines
    ), lines


def test_at_most_ten_tasks_are_listed_then_how_many_more() -> None:
    # 20 workers stuck, the producer blocked on a full queue, one result handler: 22 tasks.
    message = deadlock_message(awaits_a_bare_future, range(30), workers=20, queue_size=2)
    lines = blocked_lines(message)
    assert len(lines) == 11
    assert lines[:10] == [
        f"pcmodel-worker-{n} awaits a Future in awaits_a_bare_future "
        f"({line_of(awaits_a_bare_future, 'create_future()')})"
        for n in range(10)
    ]
    assert lines[10] == "and 12 more"
    assert len(message.splitlines()) == 13  # the first line, 11 listed, the hint


async def test_run_job_async_on_a_private_virtual_loop_lists_the_blocked_tasks_too() -> None:
    with pytest.raises(DeadlockError) as caught:
        await run_job_async(awaits_a_bare_future, range(1), workers=1, clock="virtual")
    assert blocked_lines(str(caught.value))[0].startswith(
        "pcmodel-worker-0 awaits a Future in awaits_a_bare_future"
    )


def test_a_task_that_cannot_be_described_still_ends_in_a_deadlock_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The description runs in the loop's idle hook: if it raised, the stuck job would hang.
    def broken(coro: Any) -> Any:
        raise AttributeError("no code")

    monkeypatch.setattr(_task_waits, "_code", broken)
    lines = blocked_lines(deadlock_message(awaits_a_bare_future, range(1), workers=1))
    assert (
        "pcmodel-worker-0 awaits something that could not be described (AttributeError('no code'))" in lines
    )
