"""The marker that tells a reader of a queue to stop."""

from __future__ import annotations

import asyncio
from typing import Final, TypeVar

_T = TypeVar("_T")


class _Stop:
    """The type of `STOP`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


STOP: Final = _Stop()
"""Put once per reader after the last item: a reader that takes it returns."""


class JobQueue(asyncio.Queue[_T]):
    """A bounded FIFO queue for one job: `asyncio.Queue` with its two hot methods written out.

    `put_nowait` and `get_nowait` do what asyncio's do (take or leave room, wake one waiting
    reader or writer) in one Python call each instead of four or five; `put` and `get`, which
    wait, are asyncio's own and call them. What is left out is `join()` and `task_done()`: a
    job stops its readers with `STOP` markers and never joins, so these queues keep no count of
    unfinished items, and both methods raise.
    """

    def put_nowait(self, item: _T) -> None:
        """Put `item` if there is room, else raise `asyncio.QueueFull`; wake one waiting reader."""
        items = self._queue  # type: ignore[attr-defined]
        if 0 < self._maxsize <= len(items):  # type: ignore[attr-defined]
            raise asyncio.QueueFull
        items.append(item)
        waiters = self._getters  # type: ignore[attr-defined]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def get_nowait(self) -> _T:
        """Take the first item, else raise `asyncio.QueueEmpty`; wake one waiting writer."""
        items = self._queue  # type: ignore[attr-defined]
        if not items:
            raise asyncio.QueueEmpty
        item: _T = items.popleft()
        waiters = self._putters  # type: ignore[attr-defined]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return item

    def task_done(self) -> None:
        raise NotImplementedError("a job's queues count no unfinished items: they end with STOP markers")

    async def join(self) -> None:
        raise NotImplementedError("a job's queues count no unfinished items: they end with STOP markers")
