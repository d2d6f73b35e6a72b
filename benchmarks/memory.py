"""Measurement 3: peak memory for a million items streamed from a generator.

The peak is what `tracemalloc` saw allocated at once during the job (objects that existed
before it are not counted; what the job returns is). The source is a generator, so nobody
holds the items but the job itself: with `trace=False` and a bounded queue pcmodel must keep
a flat, small peak whatever the number of items; with `trace=True` it keeps one `TaskResult`
per task, and the figure that matters is the bytes per task. `asyncio.gather` has to create
every task before the first one finishes: its memory grows with the number of items (it is
measured on fewer items, and its per-item figure given).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

from benchmarks import _format
from benchmarks._harness import load_average
from benchmarks.contenders import BARE, GATHER, PCMODEL_FALSE, PCMODEL_TRUE, Contender

SIZES: dict[str, dict[str, Any]] = {
    "full": {"items": 1_000_000, "other_items": 100_000, "flat_steps": [10_000, 100_000]},
    "quick": {"items": 2_000, "other_items": 1_000, "flat_steps": [500]},
}
"""pcmodel runs on `items`; the bare pipeline (flat like pcmodel) and gather (linear by
construction) on `other_items`, which is enough to show what they do and keeps the run short:
tracemalloc makes every allocation several times slower."""
LIMIT = 50
ITEM_BYTES = sys.getsizeof(10**6)
"""The size of one item (an int of the generator); a traced job keeps it in its TaskResult."""


async def one_await(params: Any) -> Any:
    """A task that awaits once and returns its item (no new object)."""
    await asyncio.sleep(0)
    return params


def items(count: int) -> Iterator[int]:
    """The source: a generator, so only the job holds the items it has taken."""
    yield from range(10**6, 10**6 + count)


def peak(contender: Contender, count: int) -> dict[str, Any]:
    """Run `contender` on `count` items under tracemalloc; return its peak and result size.

    A small job runs first, untraced, so that what the first job in a process allocates once
    (lazy imports, caches) is not counted.
    """
    with asyncio.Runner(loop_factory=contender.loop_factory()) as runner:
        runner.run(contender.run(one_await, items(100), lambda _result: None, LIMIT))
    gc.collect()

    async def job() -> tuple[int, int]:
        tracemalloc.start()
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        await contender.run(one_await, items(count), lambda _result: None, LIMIT)
        current, highest = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return highest - baseline, current - baseline

    with asyncio.Runner(loop_factory=contender.loop_factory()) as runner:
        highest, _kept = runner.run(job())
    return {"name": contender.name, "items": count, "peak": highest, "per_item": highest / count}


def run(quick: bool) -> dict[str, Any]:
    """Run the comparison; return its figures as JSON-ready data."""
    size = SIZES["quick" if quick else "full"]
    count = int(size["items"])
    load_before = load_average()
    flat = [peak(PCMODEL_FALSE, n) for n in [*size["flat_steps"], count]]
    rows = [
        flat[-1],
        peak(PCMODEL_TRUE, count),
        peak(BARE, int(size["other_items"])),
        peak(GATHER, int(size["other_items"])),
    ]
    return {
        "items": count,
        "limit": LIMIT,
        "item_bytes": ITEM_BYTES,
        "rows": rows,
        "flat": flat,
        "load": [load_before, load_average()],
    }


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the memory targets."""
    rows = {r["name"]: r for r in data["rows"]}
    found = []
    if PCMODEL_FALSE.name in rows:
        mb = rows[PCMODEL_FALSE.name]["peak"] / 1e6
        found.append(
            (f"pcmodel trace=False: peak < 5 MB for {data['items']:,} items", f"{mb:.2f} MB", mb < 5)
        )
    if PCMODEL_TRUE.name in rows:
        per = rows[PCMODEL_TRUE.name]["per_item"]
        found.append(
            (
                "pcmodel trace=True: <= 250 bytes per task",
                f"{per:.0f} B ({per - data['item_bytes']:.0f} B without the item itself)",
                per <= 250,
            )
        )
    return found


def section(data: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    intro = (
        f"Peak traced memory (`tracemalloc`) while the job ran, items from a generator, "
        f"`queue_size=100`, {data['limit']} workers, a one-await function returning its item. "
        f"Each item is an int of {data['item_bytes']} bytes, which a traced job keeps in its "
        "`TaskResult.params`: *without the item* subtracts it."
    )
    rows = [
        [
            r["name"],
            f"{r['items']:,}",
            f"{r['peak'] / 1e6:.2f}",
            f"{r['per_item']:.1f}",
            f"{r['per_item'] - data['item_bytes']:.1f}" if r["name"] == PCMODEL_TRUE.name else "-",
        ]
        for r in data["rows"]
    ]
    table = _format.table(["contender", "items", "peak (MB)", "bytes / item", "without the item"], rows)
    flat = _format.table(
        ["items", "peak (MB)"],
        [[f"{r['items']:,}", f"{r['peak'] / 1e6:.3f}"] for r in data["flat"]],
    )
    return (
        f"{intro}\n\n{table}\n\nFlatness: pcmodel `trace=False` as the number of items grows "
        f"(the peak must not grow with it):\n\n{flat}"
    )
