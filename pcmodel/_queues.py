"""The queues between a job's pieces, and the marker that tells a reader to stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Final, Generic, Protocol, TypeVar

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


class _Stop:
    """The type of `STOP`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


STOP: Final = _Stop()
"""Put once per reader after the last item: a reader that takes it returns."""


class ItemSource(Protocol[_T_co]):
    """Where a worker takes its items: a `JobQueue`, or a worker's lane of one (`pcmodel._pool`)."""

    def get_nowait(self) -> _T_co:
        """The next item; `asyncio.QueueEmpty` if there is none to take now."""

    async def get(self) -> _T_co:
        """The next item, waiting for one."""


class JobQueue(Generic[_T]):
    """A FIFO queue with room for `maxsize` items (0: no limit), for the tasks of one loop.

    It behaves as `asyncio.Queue` does for everything a job uses: `put_nowait` raises
    `asyncio.QueueFull` when there is no room and `get_nowait` raises `asyncio.QueueEmpty`
    when there is nothing to take; `await put(item)` waits for room and `await get()` for an
    item, first come, first served; a cancelled wait hands its turn to the next waiter. It is
    written for speed on the hot path of a job (each of those calls is one Python call, where
    asyncio's are four or five), and it leaves out `join()` and `task_done()`: a job stops
    its readers with `STOP` markers and never joins, so nothing counts unfinished items.

    Make it inside the loop that uses it: its waits are futures of the running loop.
    """

    __slots__ = ("_getters", "_items", "_new_future", "_putters", "maxsize")

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        """Room for this many items; 0 (or less) for no limit."""
        self._items: deque[_T] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._new_future = asyncio.get_running_loop().create_future

    def qsize(self) -> int:
        """Items in the queue."""
        return len(self._items)

    def count(self, item: object) -> int:
        """How many times `item` is in the queue (`STOP` markers, say)."""
        return self._items.count(item)  # type: ignore[arg-type]

    def empty(self) -> bool:
        """True if there is nothing to take."""
        return not self._items

    def full(self) -> bool:
        """True if there is no room (never, without a limit)."""
        return 0 < self.maxsize <= len(self._items)

    def put_nowait(self, item: _T) -> None:
        """Put `item` at the end and wake the first waiting reader; raise `QueueFull` if no room."""
        items = self._items
        if 0 < self.maxsize <= len(items):
            raise asyncio.QueueFull
        items.append(item)
        waiters = self._getters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def get_nowait(self) -> _T:
        """Take the first item and wake the first waiting writer; raise `QueueEmpty` if none."""
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        waiters = self._putters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return item

    def put_back_nowait(self, item: _T) -> None:
        """Put `item`, just taken, back at the head (room or not) and wake the first waiting reader.

        For a reader that took an item it must not run after all (a resizable pool's worker
        whose lane closed while it waited, see `pcmodel._pool`): the item keeps its place.
        """
        self._items.appendleft(item)
        self._wake_first(self._getters)

    def join_readers(self) -> asyncio.Future[None]:
        """A place in the readers' line: the future is set when an item comes for this reader.

        For a reader that decides once woken whether to take the item (a resizable pool's
        lane, see `pcmodel._pool`): it takes with `get_nowait`, or, if it will not, wakes the
        next reader (`wake_a_reader`); cancelled, it leaves the line (`leave_readers`).
        """
        waiter = self._new_future()
        self._getters.append(waiter)
        return waiter

    def leave_readers(self, waiter: asyncio.Future[None]) -> None:
        """A reader cancelled while in line leaves it, passing on its wake-up if it had one."""
        self._leave_line(self._getters, waiter, bool(self._items))

    def wake_a_reader(self) -> None:
        """Wake the first reader in line (one woken before would not take its item)."""
        self._wake_first(self._getters)

    async def put(self, item: _T) -> None:
        """Put `item` at the end, waiting for room first if there is none."""
        await self.wait_for_room()
        self.put_nowait(item)

    async def wait_for_room(self) -> None:
        """Wait until there is room for an item, first come, first served among writers.

        Once it returns, `put_nowait` succeeds if nothing else runs in between: a writer can
        wait for room first and make its item after (stamped with the time it went in).
        """
        while 0 < self.maxsize <= len(self._items):
            waiter = self._new_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                self._leave_line(self._putters, waiter, not self.full())
                raise

    async def get(self) -> _T:
        """Take the first item, waiting for one first if there is none."""
        while not self._items:
            waiter = self._new_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                self._leave_line(self._getters, waiter, bool(self._items))
                raise
        return self.get_nowait()

    @staticmethod
    def _leave_line(waiters: deque[asyncio.Future[None]], waiter: asyncio.Future[None], served: bool) -> None:
        """Take a cancelled `waiter` out of `waiters`; pass its wake-up on if it had one.

        `served` says whether the room or the item it waited for is there: if it was woken
        for it, the next in line must be woken instead, or nobody would be.
        """
        waiter.cancel()  # no effect if it was woken already
        with contextlib.suppress(ValueError):  # the put or get that woke it took it off the line
            waiters.remove(waiter)
        if served and not waiter.cancelled():
            JobQueue._wake_first(waiters)

    @staticmethod
    def _wake_first(waiters: deque[asyncio.Future[None]]) -> None:
        """Wake the first waiter still waiting (`put_nowait` and `get_nowait` inline this: hot path)."""
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
