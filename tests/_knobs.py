"""What the tests of a job's knobs share: a bounded wait for a knob to land, and a function
whose first call holds its thread until the test lets it go."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


async def until(condition: Callable[[], bool]) -> None:
    """Wait (a bounded real wait) until `condition()`, which a knob from this thread brings about."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the knob never reached the job")


class FirstCallBlocks:
    """A plain function (it runs in a thread, taking no virtual time) whose call on item 0
    blocks until `release` is set; `started` is set once that call runs."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, n: int) -> int:
        if n == 0:
            self.started.set()
            self.release.wait(10)
        return n
