"""What each task of a stuck loop awaits, for the `DeadlockError` of a virtual-time job.

`describe_blocked_tasks` follows every task's chain of coroutines (each one's `cr_await`) down
to the innermost one that is not library code, and says what that one awaits and where:
`pcmodel-worker-0 awaits Event.wait() in my_function (file.py:12)`. It runs in the virtual
loop's idle hook (see `pcmodel.clock.fail_if_stuck`), before the cancel unwinds the tasks.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

__all__ = ["describe_blocked_tasks"]

_MAX_LISTED = 10
"""The most blocked tasks a `DeadlockError` lists one by one."""

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
_PCMODEL_DIR = os.path.dirname(os.path.abspath(__file__))  # this module is in pcmodel/ too


def _is_library(code: Any) -> bool:
    """Whether `code` is asyncio's, or one of pcmodel's private helpers (`pcmodel/_queues.py`).

    A blocked task is described by the innermost of its coroutines that is *not* library code
    (the user's function, or a piece of the job like `work`) and by what that one awaits.
    """
    directory, name = os.path.split(str(code.co_filename))
    return directory == _ASYNCIO_DIR or (directory == _PCMODEL_DIR and name.startswith("_"))


def _describe_wait(task: asyncio.Task[Any]) -> tuple[bool, str]:
    """What `task` awaits, and where: `Event.wait() in my_function (file.py:12)`.

    Follows the chain of coroutines the task is suspended in (each one's `cr_await`). Returns
    whether the waiting code is pcmodel's or asyncio's own (listed last), and the text.
    """
    chain: list[Any] = []
    awaited: Any = task.get_coro()
    while hasattr(awaited, "cr_await") or hasattr(awaited, "gi_yieldfrom"):
        if getattr(awaited, "cr_frame", None) is None and getattr(awaited, "gi_frame", None) is None:
            break  # finished, or never started: no frame to show
        chain.append(awaited)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    users = [index for index, coro in enumerate(chain) if not _is_library(_code(coro))]
    if not users:
        return True, f"awaits {_name(chain[0])}()" if chain else "waits"
    index = users[-1]
    if index + 1 < len(chain):
        what = f"{_name(chain[index + 1])}()"
    else:
        # The innermost coroutine awaits a future, a task or an async generator directly.
        waiter = getattr(task, "_fut_waiter", None)  # the future a blocked task waits on
        if isinstance(waiter, asyncio.Task):
            what = f"task {waiter.get_name()!r}"
        elif type(awaited).__name__ == "async_generator_asend":
            what = "an async generator's next item"
        else:
            what = "a Future"
    code = _code(chain[index])
    frame = getattr(chain[index], "cr_frame", None) or chain[index].gi_frame
    ours = os.path.dirname(code.co_filename) == _PCMODEL_DIR
    return (
        ours,
        f"awaits {what} in {_name(chain[index])} ({os.path.basename(code.co_filename)}:{frame.f_lineno})",
    )


def _describe_safely(task: asyncio.Task[Any]) -> tuple[bool, str]:
    """`_describe_wait(task)`, or a note if it fails: this runs in the loop's `on_idle` hook,
    where an exception would keep the stuck job from ever being cancelled."""
    try:
        return _describe_wait(task)
    except Exception as error:  # noqa: BLE001 - a description is not worth a hang
        return True, f"awaits something that could not be described ({error!r})"


def _code(coro: Any) -> Any:
    return getattr(coro, "cr_code", None) or coro.gi_code


def _name(coro: Any) -> str:
    return str(getattr(coro, "__qualname__", None) or _code(coro).co_name)


def _natural(name: str) -> list[Any]:
    """A sort key that puts `pcmodel-worker-2` before `pcmodel-worker-10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def describe_blocked_tasks(loop: asyncio.AbstractEventLoop, skip: asyncio.Task[Any] | None = None) -> str:
    """One line per task of `loop` (but `skip`) saying what it awaits, the telling ones first.

    Tasks that wait in the user's code come before the ones waiting in pcmodel's own pieces
    (idle workers on the work queue, say); at most ten are listed, then how many more.
    """
    described = sorted(
        ((*_describe_safely(task), task.get_name()) for task in asyncio.all_tasks(loop) if task is not skip),
        key=lambda entry: (entry[0], _natural(entry[2])),
    )
    lines = [f"  {name} {text}" for _, text, name in described[:_MAX_LISTED]]
    if len(described) > _MAX_LISTED:
        lines.append(f"  and {len(described) - _MAX_LISTED} more")
    return "\n".join(lines)
