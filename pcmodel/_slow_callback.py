"""A slow `on_task_complete` callback that records when it ran: `SlowCallback`.

It stands for real work done with each result, waiting the async way, the blocking way or in
a thread, for the lesson on what a callback can do to a job. Import it from
`pcmodel.workloads`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pcmodel.records import TaskResult

__all__ = ["CallbackKind", "SlowCallback", "slow_callback"]


CallbackKind = Literal["async", "blocking", "thread"]


@dataclass(slots=True)
class SlowCallback:
    """An `on_task_complete` callback that takes `seconds` per call, and records when it ran.

    It stands for real work done with each result (saving it to a database, writing a file).
    How it waits is the lesson:

    - `"async"`: `await asyncio.sleep(seconds)`, other tasks run meanwhile;
    - `"blocking"`: `time.sleep(seconds)` on the event loop, which freezes every task;
    - `"thread"`: `time.sleep(seconds)` in a thread via `asyncio.to_thread`, the loop stays free.

    On the virtual clock only `"async"` takes virtual time (work outside the loop's timers
    takes none), so compare the three kinds on the real clock.
    """

    seconds: float
    """How long each call takes."""
    kind: CallbackKind = "async"
    """How the call waits: "async", "blocking" or "thread"."""
    calls: list[tuple[int, float, float, float]] = field(default_factory=list)
    """(task_id, task finished_at, call start, call end) per call; call times on the loop's clock."""

    def __call__(self, result: TaskResult) -> Awaitable[None] | None:
        if self.kind == "blocking":
            loop = asyncio.get_running_loop()
            started = loop.time()
            time.sleep(self.seconds)
            self.calls.append((result.task_id, result.finished_at, started, loop.time()))
            return None
        return self._wait(result)

    async def _wait(self, result: TaskResult) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.kind == "thread":
            await asyncio.to_thread(time.sleep, self.seconds)
        else:
            await asyncio.sleep(self.seconds)
        self.calls.append((result.task_id, result.finished_at, started, loop.time()))

    def windows(self) -> list[tuple[float, float]]:
        """(start, end) of each call, in seconds since the job started, in call order.

        The loop's clock is turned into job time by the earliest gap between a task finishing
        and its callback starting: exact on the virtual clock, off by the handler's reaction
        time (microseconds) on the real clock.
        """
        if not self.calls:
            return []
        origin = min(started - finished_at for _, finished_at, started, _ in self.calls)
        return [(started - origin, ended - origin) for _, _, started, ended in self.calls]


def slow_callback(seconds: float, kind: CallbackKind = "async") -> SlowCallback:
    """A fresh `SlowCallback` that takes `seconds` per call and waits the `kind` way.

    Raises:
        ValueError: `seconds` is negative or `kind` is not "async", "blocking" or "thread".
    """
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    if kind not in ("async", "blocking", "thread"):
        raise ValueError(f"kind must be 'async', 'blocking' or 'thread', got {kind!r}")
    return SlowCallback(seconds, kind)
