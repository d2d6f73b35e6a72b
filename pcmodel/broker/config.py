"""Where a job's workers are, and how the job treats them: the `Broker` settings.

This module does not import redis, so a job's arguments can be checked (and a `Broker` made)
without the `redis` extra installed.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass

__all__ = ["Broker", "check_seconds", "check_url", "redacted"]


def check_url(url: object) -> str:
    """`url` if it is a Redis URL, else a TypeError / ValueError naming `broker`."""
    if not isinstance(url, str):
        raise TypeError(f"broker must be a Redis URL string, got {url!r} ({type(url).__name__})")
    if "://" not in url or url.partition("://")[0] not in ("redis", "rediss", "unix"):
        raise ValueError(f"broker must be a Redis URL such as 'redis://127.0.0.1:6379/0', got {url!r}")
    return url


def redacted(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def check_seconds(name: str, value: object) -> float:
    """`value` as a finite number of seconds > 0, else a TypeError / ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Broker:
    """A Redis server whose worker processes run a job's calls, and how the job treats them.

    `broker="redis://127.0.0.1:6379/0"` is short for `broker=Broker("redis://127.0.0.1:6379/0")`.

    Example:
        `run_job(fetch_price, cars, broker=Broker("redis://127.0.0.1:6379/0", visibility_timeout=5))`
    """

    url: str
    """The Redis server, like `redis://127.0.0.1:6379/0` (`rediss://` for TLS, `unix://` for a socket)."""
    queue: str | None = None
    """The queue the workers serve; None for the function's `module:qualname`, which is also
    what `python -m pcmodel worker --function module:qualname` serves by default."""
    visibility_timeout: float = 30.0
    """Seconds after which the items held by a worker process that stopped sending heartbeats
    (killed, crashed, cut off) are taken over by another. Live workers keep their items however
    long a call runs."""
    max_deliveries: int = 3
    """After this many deliveries, an item whose workers all stopped before finishing it fails
    with `WorkerLostError` instead of being run again."""
    lease: float = 60.0
    """Seconds the job's keys outlive its controller if the controller is killed outright."""
    round_trip_timeout: float = 10.0
    """Seconds the broker gets to answer each request, connecting included (a blocking read
    gets its BLOCK time on top). A broker that accepts connections and never answers (frozen,
    or not Redis at all) then fails the job with a `ConnectionError` naming the URL instead of
    holding it forever."""

    def __post_init__(self) -> None:
        check_url(self.url)
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise ValueError(f"queue must be a non-empty string or None, got {self.queue!r}")
        object.__setattr__(
            self, "visibility_timeout", check_seconds("visibility_timeout", self.visibility_timeout)
        )
        object.__setattr__(self, "lease", check_seconds("lease", self.lease))
        object.__setattr__(
            self, "round_trip_timeout", check_seconds("round_trip_timeout", self.round_trip_timeout)
        )
        deliveries = self.max_deliveries
        if isinstance(deliveries, bool) or not isinstance(deliveries, int):
            raise TypeError(
                f"max_deliveries must be an int, got {deliveries!r} ({type(deliveries).__name__})"
            )
        if deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, got {deliveries!r}")

    def __repr__(self) -> str:
        return (
            f"Broker({redacted(self.url)!r}, queue={self.queue!r}, visibility_timeout="
            f"{self.visibility_timeout:g}, max_deliveries={self.max_deliveries}, lease={self.lease:g}, "
            f"round_trip_timeout={self.round_trip_timeout:g})"
        )
