"""What a failed task's error carries: only what the function raised, none of the runner's own state."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pcmodel import run_job, run_job_async
from pcmodel.clock import Clock


async def fails_async(n: int) -> int:
    await asyncio.sleep(0.001)
    raise ValueError(f"bad item {n}")


def fails_plain(n: int) -> int:
    raise ValueError(f"bad item {n}")


def errors_of(summary: Any) -> list[BaseException]:
    assert summary.results is not None
    errors = [result.error for result in summary.results]
    assert all(isinstance(error, ValueError) for error in errors)
    return errors


@pytest.mark.parametrize("clock", ["real", "virtual"])
@pytest.mark.parametrize("function", [fails_async, fails_plain], ids=["async", "plain"])
def test_a_failed_tasks_error_has_no_context_from_run_job(function: Any, clock: Clock) -> None:
    # run_job once ran the whole job inside `except RuntimeError:` (no running loop), so every
    # error raised on the loop had RuntimeError('no running event loop') as its context.
    summary = run_job(function, range(3), workers=2, clock=clock)
    errors = errors_of(summary)
    assert [error.__context__ for error in errors] == [None, None, None]
    assert [error.__cause__ for error in errors] == [None, None, None]


@pytest.mark.parametrize("clock", ["real", "virtual"])
def test_a_failed_tasks_error_has_no_context_from_run_job_inside_a_running_loop(clock: Clock) -> None:
    async def cell() -> Any:
        return run_job(fails_async, range(3), workers=2, clock=clock)

    with asyncio.Runner() as runner:
        summary = runner.run(cell())
    assert [error.__context__ for error in errors_of(summary)] == [None, None, None]


@pytest.mark.parametrize("clock", ["real", "virtual"])
async def test_a_failed_tasks_error_has_no_context_from_run_job_async(clock: Clock) -> None:
    summary = await run_job_async(fails_async, range(3), workers=2, clock=clock)
    assert [error.__context__ for error in errors_of(summary)] == [None, None, None]


def test_an_error_raised_while_the_function_handles_another_keeps_that_context() -> None:
    # The fix must not strip a context the function itself made.
    async def chains(n: int) -> None:
        try:
            raise KeyError(n)
        except KeyError:
            raise ValueError("while handling a KeyError")  # noqa: B904 - the implicit context is the point

    summary = run_job(chains, range(2), clock="virtual")
    assert [type(error.__context__) for error in errors_of(summary)] == [KeyError, KeyError]
