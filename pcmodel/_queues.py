"""The marker that tells a reader of a queue to stop."""

from __future__ import annotations

from typing import Final


class _Stop:
    """The type of `STOP`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


STOP: Final = _Stop()
"""Put once per reader after the last item: a reader that takes it returns."""
