"""Attempts that wait their turn under a limit: the rule both gates of an adaptive job keep.

The in-process pool (`pcmodel._pool.Pool`) and a worker process's gate for one job
(`pcmodel.broker._tuning.ProcessGate`) let an attempt start only while the job is not held
(paused, or waiting out a Retry-After) and fewer than `limit` attempts are in flight; the
others wait, first come, first served, so a retry waits behind the attempts already waiting
instead of hammering an API that said "too many". What holds a job, and what feeds the limit,
differ between the two: they are the subclasses' own.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Turns:
    """Attempts in flight under `limit`, and the ones waiting for their turn, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        """The most attempts in flight at once."""
        self.in_flight = 0
        """Attempts in flight."""
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> bool:
        """True while no attempt may start, whatever the room (a subclass says when)."""
        return False

    async def take_turn(self) -> None:
        """Wait until this attempt may start, and count it in flight."""
        if not (self.held or self.in_flight >= self.limit or self._waiting):
            self.in_flight += 1
            return
        waiter = self.loop.create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give_turn_back()  # given a turn it will not use: pass it on
            else:
                self._waiting.remove(waiter)
            raise

    def give_turn_back(self) -> None:
        """An attempt in flight ended, or will not start after all: the next may start."""
        self.in_flight -= 1
        self.pass_turns()

    def pass_turns(self) -> None:
        """Let waiting attempts start, in order, while not held and there is room."""
        waiting = self._waiting
        while waiting and not self.held and self.in_flight < self.limit:
            waiter = waiting.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
