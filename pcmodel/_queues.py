"""The queues between the pieces, and the marker that tells a reader to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from pcmodel.records import DepthSample


class _Stop:
    """The type of `STOP`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


STOP: Final = _Stop()
"""Put once per reader after the last item: a reader that takes it returns."""


class DepthRecordingQueue(asyncio.Queue[Any]):
    """An `asyncio.Queue` that samples its depth each time an item enters or leaves it.

    `_put` and `_get` are the hooks asyncio's own `PriorityQueue` and `LifoQueue` override;
    `STOP` markers are not counted as depth.
    """

    def __init__(self, maxsize: int, clock: Callable[[], float], samples: list[DepthSample]) -> None:
        super().__init__(maxsize)
        self._clock = clock
        self._samples = samples
        self._stops = 0

    def _put(self, item: Any) -> None:
        super()._put(item)
        if item is STOP:
            self._stops += 1
        else:
            self._sample()

    def _get(self) -> Any:
        item = super()._get()
        if item is STOP:
            self._stops -= 1
        else:
            self._sample()
        return item

    def _sample(self) -> None:
        self._samples.append(DepthSample(self._clock(), self.qsize() - self._stops))
