"""Shared helpers for the test suite."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class ConcurrencySpy:
    """An async function that records how many calls were in flight at once.

    Each call sleeps `seconds` (virtual or real), then returns its params.
    """

    seconds: float = 1.0
    running: int = 0
    max_running: int = 0
    calls: list[Any] = field(default_factory=list)

    async def __call__(self, params: Any) -> Any:
        self.calls.append(params)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        return params


@pytest.fixture
def spy() -> ConcurrencySpy:
    return ConcurrencySpy()


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    """Fail if a test leaves a pcmodel thread running."""
    import threading

    yield
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith("pcmodel") and t.is_alive()]
    assert leftovers == []


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests on a fresh event loop (no plugin needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    with asyncio.Runner() as runner:
        runner.run(pyfuncitem.obj(**arguments))
    return True
