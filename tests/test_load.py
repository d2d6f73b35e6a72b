"""Load: a million items through 10,000 workers with flat memory."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from pcmodel import run_job


async def touch(item: int) -> int:
    await asyncio.sleep(0)
    return item


def peak_memory(items: int) -> tuple[int, int]:
    gc.collect()
    tracemalloc.start()
    try:
        summary = run_job(touch, range(items), workers=10_000, queue_size=100, trace=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return summary.tasks, peak


@pytest.mark.slow
def test_a_million_items_on_ten_thousand_workers_keep_memory_flat() -> None:
    small_tasks, small_peak = peak_memory(50_000)
    tasks, peak = peak_memory(1_000_000)
    assert (small_tasks, tasks) == (50_000, 1_000_000)
    # Twenty times the items, the same peak: it is the 10,000 workers' frames, not the items.
    assert peak < small_peak * 1.10
