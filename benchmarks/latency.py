"""Measurement 6: latency from arrival to callback, at a steady offered load.

Items arrive at a fixed rate from an async generator (an open loop: item i is due at
`i / rate` seconds, whether or not the job keeps up). Each task sleeps 10 ms, so 50 workers
serve at most about 5,000 items a second. The latency of an item is the time from when it was
due to when the callback received its result; the table gives the median and the 99th
percentile at half the capacity and at 80% of it (the sleeps wake up to a millisecond late,
so the real capacity is a few percent lower: 80% is near saturation).

Only contenders that can be fed while they run take part: `asyncio.gather` and aiometer need
the whole list of items up front.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks import _format
from benchmarks._harness import available, interleaved, load_average, median
from benchmarks.contenders import ALL, Contender

SIZES = {
    "full": {"service": 0.010, "seconds": 1.0, "rounds": 3, "loads": [0.5, 0.8]},
    "quick": {"service": 0.005, "seconds": 0.1, "rounds": 1, "loads": [0.5]},
}
LIMIT = 50


def _due(result: Any) -> float:
    """The due time a task returned, whatever shape the contender hands results in."""
    if isinstance(result, float):
        return result
    if hasattr(result, "value"):  # a pcmodel TaskResult
        return float(result.value)
    return float(result[1])  # the bare pipelines' (task_id, value, error)


def run(quick: bool) -> dict[str, Any]:
    """Run the comparison; return its figures as JSON-ready data."""
    size: dict[str, Any] = SIZES["quick" if quick else "full"]
    service = size["service"]
    capacity = LIMIT / service
    contenders, missing = available([c for c in ALL if c.accepts_async_params])
    skipped = [c.name for c in ALL if not c.accepts_async_params]
    load_before = load_average()
    by_load = []
    for load in size["loads"]:
        rate = load * capacity
        count = int(rate * size["seconds"])

        async def task(due: float) -> float:
            await asyncio.sleep(service)
            return due

        async def arrivals(rate: float = rate, count: int = count) -> AsyncIterator[float]:
            start = time.perf_counter()
            for index in range(count):
                due = start + index / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield due

        async def job(contender: Contender, count: int = count) -> dict[str, float]:
            latencies: list[float] = []

            def on_result(result: Any) -> None:
                latencies.append(time.perf_counter() - _due(result))

            started = time.perf_counter()
            await contender.run(task, arrivals(), on_result, LIMIT)
            elapsed = time.perf_counter() - started
            if len(latencies) != count:
                raise RuntimeError(f"{contender.name} handed {len(latencies)} results for {count} items")
            cuts = statistics.quantiles(latencies, n=100)
            return {"p50": statistics.median(latencies), "p99": cuts[98], "served_per_s": count / elapsed}

        trials = interleaved(contenders, size["rounds"], job)
        rows = [
            {
                "name": c.name,
                "p50_ms": median([t.extra["p50"] for t in trials[c.name]]) * 1000,
                "p99_ms": median([t.extra["p99"] for t in trials[c.name]]) * 1000,
                "served_per_s": median([t.extra["served_per_s"] for t in trials[c.name]]),
            }
            for c in contenders
        ]
        by_load.append({"load": load, "rate": rate, "items": count, "rows": rows})
    return {
        "service_ms": service * 1000,
        "capacity": capacity,
        "limit": LIMIT,
        "rounds": size["rounds"],
        "by_load": by_load,
        "missing": missing,
        "skipped": skipped,
        "load": [load_before, load_average()],
    }


def section(data: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    parts = [
        (
            f"Each task sleeps {data['service_ms']:g} ms; {data['limit']} in flight serve at most "
            f"{data['capacity']:,.0f} items/s. Latency = callback time - the item's due time "
            f"(open-loop arrivals); medians over {data['rounds']} interleaved rounds of each round's "
            "median and 99th percentile. The floor is the 10 ms sleep itself plus the timer's "
            "lateness (up to about 1 ms)."
        )
    ]
    for block in data["by_load"]:
        parts.append(
            f"**{block['load']:.0%} of capacity** ({block['rate']:,.0f} items/s offered, "
            f"{block['items']:,} items):"
        )
        parts.append(
            _format.table(
                ["contender", "median (ms)", "p99 (ms)", "served items/s"],
                [
                    [r["name"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", _format.rate(r["served_per_s"])]
                    for r in sorted(block["rows"], key=lambda r: r["p99_ms"])
                ],
            )
        )
    if data["skipped"]:
        parts.append("Not fed while running, so not measured: " + ", ".join(data["skipped"]) + ".")
    return "\n\n".join(parts)
