"""Argument checks, run before any task starts.

Each check raises `TypeError` for a value of the wrong type and `ValueError` for a value out
of range; the message names the parameter, the value given and the rule.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pcmodel.clock import CLOCKS, Clock

if TYPE_CHECKING:
    from pcmodel.broker.config import Broker
    from pcmodel.policies import Retry


MAX_WORKERS = 10_000
"""The most workers a job (or a broker worker process) may run at once, `Adaptive.max` and
`JobHandle.set_workers` included. Each worker is a task made at once: far more would only
exhaust memory (`set_workers(10**9)` once ended in a MemoryError loop), never speed a job."""


def check_int(name: str, value: object, minimum: int) -> int:
    """`value` as an int >= `minimum`, or a TypeError / ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def check_worker_count(name: str, value: object) -> int:
    """`value` as an int between 1 and `MAX_WORKERS`, or a TypeError / ValueError naming `name`."""
    count = check_int(name, value, 1)
    if count > MAX_WORKERS:
        raise ValueError(
            f"{name} must be <= {MAX_WORKERS}, got {value!r}: each worker is a task made at once; "
            "for more calls at once, run more worker processes (a broker job) or more jobs"
        )
    return count


def check_workers(value: object) -> int:
    """`workers` as an int >= 1 (an `Adaptive` is taken before this check)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"workers must be an int or a pcmodel.Adaptive(min=..., max=...), got {value!r} "
            f"({type(value).__name__})"
        )
    return check_worker_count("workers", value)


def check_callable(name: str, value: object, *, optional: bool = False) -> None:
    """A TypeError naming `name` unless `value` is callable (or None when `optional`)."""
    if value is None and optional:
        return
    if not callable(value):
        rule = "a callable or None" if optional else "callable"
        raise TypeError(f"{name} must be {rule}, got {value!r} ({type(value).__name__})")


def check_function(value: object) -> None:
    """A TypeError unless `value` can be a job's function: a callable that is not a generator.

    An `async def` with `yield` in it is an async generator function: calling it returns a
    generator without running any of its code, so every task would "succeed" at once.
    """
    check_callable("function", value)
    if inspect.isasyncgenfunction(value) or inspect.isgeneratorfunction(value):
        kind = "an async generator" if inspect.isasyncgenfunction(value) else "a generator"
        raise TypeError(
            f"function must return its result, got {kind} function {value!r:.60}: calling it only "
            "makes a generator, without running its code. Use `return` instead of `yield`, or, "
            "to feed a job from a generator, pass the generator as params"
        )


def check_source(name: str, value: object) -> Iterable[Any] | AsyncIterable[Any]:
    """`value` if it is an iterable or async iterable of items, else a TypeError naming `name`."""
    if isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be an iterable of items, got a {type(value).__name__} ({value!r:.40}); "
            f"iterating it would give only its keys: pass {name}.values(), {name}.items() or "
            f"{name}.keys() to say which"
        )
    if isinstance(value, str | bytes | bytearray):
        raise TypeError(
            f"{name} must be an iterable of items, got a {type(value).__name__} ({value!r:.40}); "
            f"a string would be split into characters: wrap it in a list, [{name}], to run one task"
        )
    if isinstance(value, AsyncIterable | Iterable):
        return value
    raise TypeError(
        f"{name} must be an iterable or an async iterable of items, "
        f"got {value!r:.60} ({type(value).__name__})"
    )


def check_clock(value: object) -> Clock:
    """`value` as a clock name, or a ValueError / TypeError naming `clock`."""
    if not isinstance(value, str):
        raise TypeError(f"clock must be one of {', '.join(map(repr, CLOCKS))}, got {value!r}")
    if value not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(map(repr, CLOCKS))}, got {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    """`value` if it is a bool, else a TypeError naming `name`."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def is_async_callable(function: object) -> bool:
    """True for an `async def` function, a partial of one, or an object with `async __call__`."""
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(type(function), "__call__", None)  # noqa: B004 - the class's __call__
    return call is not None and inspect.iscoroutinefunction(call)


def check_broker(value: object) -> Broker | None:
    """`broker` as a `pcmodel.broker.Broker` (a Redis URL string makes one), or None."""
    if value is None:
        return None
    from pcmodel.broker.config import Broker  # no redis import: checking needs no extra

    if isinstance(value, Broker):
        return value
    if isinstance(value, str):
        return Broker(value)
    raise TypeError(
        f"broker must be a Redis URL, a pcmodel.Broker or None, got {value!r} ({type(value).__name__})"
    )


def check_seconds(name: str, value: object) -> float | None:
    """`value` as a positive finite number (or None), else a TypeError / ValueError naming `name`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number or None, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 or None, got {value!r}")
    return float(value)


def check_rate(name: str, value: object) -> float | None:
    """`value` as a rate (calls per second) no slower than `MIN_RATE`, or None."""
    from pcmodel.policies import MIN_RATE

    rate = check_seconds(name, value)
    if rate is not None and rate < MIN_RATE:
        raise ValueError(
            f"{name} must be >= {MIN_RATE:g} (one call every {1 / MIN_RATE / 86400:.1f} days) or None, "
            f"got {value!r}: no job could finish at that rate"
        )
    return rate


def check_retries(value: object) -> Retry | None:
    """`retries` as a `Retry` policy (None for no retries); an int n means `Retry(n)`."""
    from pcmodel.policies import Retry

    if isinstance(value, Retry):
        return value if value.times > 0 else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"retries must be an int or a pcmodel.Retry, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"retries must be >= 0, got {value!r}")
    return Retry(value) if value else None
