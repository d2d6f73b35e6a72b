"""Measurement 8: an adaptive pool against fixed pools on an API of limited capacity.

The car-price API in capacity mode serves at most K calls at once and turns the next away at
once with a 429, whose Retry-After is the exact wait until a slot frees. A fixed pool must
guess K: a pool of K/4 leaves three quarters of the API idle, one of 4K keeps it full but
sends a 429 for every slot it does not get. `workers=pcmodel.Adaptive(max=200)` is not told K
and must find it. Every contender runs the same items with the same retry policy, the one an
adaptive pool wants (`Retry(1000, on=RETRYABLE_ERRORS, backoff=0.05, multiplier=1, seed=1)`:
soon and flat, 0.05 s with jitter and at least the Retry-After; the limit, not a growing wait,
protects the API), so every item succeeds in the end and the figures compare the cost of
getting there:

- *goodput*: successful calls per second (items priced / elapsed);
- *429s per 1,000 calls*: how much of the traffic was turned away;
- *p95 task time* and *longest task*: the 95th percentile and the longest of a task's time
  from its first attempt to its success, waits for retries included;
- *settled at* and *mean limit*: when the adaptive limit entered 80%-120% of K for good, and
  its time-weighted mean over the second half of the job.

The main run is on the API's twin (`workloads.SimulatedCarAPI(capacity=K)`) on the virtual
clock: exact, repeatable, and fast, so it can be long. A shorter run against the real HTTP
server (`carapi.CarAPIServer(capacity=K)` on loopback, real sockets, real time) checks that
the same holds when time is real; its figures move a little from run to run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import pcmodel
from benchmarks import _format
from pcmodel import timeline, workloads

SIZES = {
    "full": {
        "capacity": 20,
        "items": 4000,
        "scales": [1, 2, 5, 20, 100],
        "real_capacity": 10,
        "real_items": 400,
    },
    "quick": {"capacity": 8, "items": 150, "scales": [1, 4], "real_capacity": 4, "real_items": 30},
}
ITEMS_PER_SLOT = 200  # items per unit of K in the scaling runs: about 30 s of virtual time each
LATENCY = (0.05, 0.25)  # seconds: the twin's, the server's default
REAL_LATENCY = (0.01, 0.05)  # seconds: shorter, so the real-time run stays short
ADAPTIVE = pcmodel.Adaptive(max=200)
SEED = 1


def _retry() -> pcmodel.Retry:
    # Made afresh for each run: its jitter draws from its own seeded generator.
    return pcmodel.Retry(1000, on=workloads.RETRYABLE_ERRORS, backoff=0.05, multiplier=1, seed=SEED)


def _contenders(capacity: int) -> list[tuple[str, int | pcmodel.Adaptive]]:
    return [
        (f"fixed pool of {capacity // 4} (K/4)", capacity // 4),
        (f"fixed pool of {capacity} (K)", capacity),
        (f"fixed pool of {capacity * 4} (4K)", capacity * 4),
        (f"Adaptive(max={ADAPTIVE.max})", ADAPTIVE),
    ]


def _figures(
    summary: pcmodel.JobSummary, capacity: int, requests: int, turned_away: int, wall: float
) -> dict[str, Any]:
    """One contender's figures, from its summary and what the API counted."""
    times = [r.duration for r in summary.results or () if r.ok]
    band = (0.8 * capacity, 1.2 * capacity)
    adaptive = summary.limit_changes is not None and len({c.limit for c in summary.limit_changes}) > 1
    return {
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "elapsed": summary.elapsed,
        "goodput": summary.succeeded / summary.elapsed,
        "requests": requests,
        "per_1000": 1000 * turned_away / requests,
        "p95_ms": statistics.quantiles(times, n=20)[18] * 1000 if len(times) > 1 else float("nan"),
        "max_s": max(times, default=float("nan")),
        "settled_at": timeline.settled_at(summary, *band) if adaptive else None,
        "mean_limit": timeline.mean_limit(summary, summary.elapsed / 2) if adaptive else None,
        "wall": wall,
    }


def _virtual(capacity: int, items: int) -> list[dict[str, Any]]:
    rows = []
    for name, workers in _contenders(capacity):
        api = workloads.SimulatedCarAPI(latency=LATENCY, capacity=capacity, seed=SEED)
        started = time.perf_counter()
        summary = pcmodel.run_job(api, range(items), workers=workers, retries=_retry(), clock="virtual")
        wall = time.perf_counter() - started
        rows.append({"name": name, **_figures(summary, capacity, api.requests, api.over_capacity, wall)})
    return rows


def _scaling(capacities: list[int], items_per_slot: int) -> list[dict[str, Any]]:
    """Adaptive against the pool of K, for each K: what AIMD's probing costs as K grows."""
    rows = []
    for capacity in capacities:
        figures = {}
        for name, workers in (("tuned", capacity), ("adaptive", ADAPTIVE)):
            api = workloads.SimulatedCarAPI(latency=LATENCY, capacity=capacity, seed=SEED)
            items = capacity * items_per_slot
            summary = pcmodel.run_job(api, range(items), workers=workers, retries=_retry(), clock="virtual")
            figures[name] = _figures(summary, capacity, api.requests, api.over_capacity, 0.0)
        adaptive = figures["adaptive"]
        rows.append(
            {
                "capacity": capacity,
                "items": capacity * items_per_slot,
                "ratio": adaptive["goodput"] / figures["tuned"]["goodput"],
                "per_1000": adaptive["per_1000"],
                "mean_limit": adaptive["mean_limit"],
            }
        )
    return rows


async def _real(capacity: int, items: int) -> list[dict[str, Any]]:
    from pcmodel.carapi import CarAPIServer, CarPriceClient

    rows = []
    for name, workers in _contenders(capacity):
        async with (
            CarAPIServer(latency=REAL_LATENCY, capacity=capacity, seed=SEED) as server,
            CarPriceClient(server.url) as fetch_price,
        ):
            started = time.perf_counter()
            summary = await pcmodel.run_job_async(
                fetch_price, range(items), workers=workers, retries=_retry()
            )
            wall = time.perf_counter() - started
            stats = server.statistics()
        rows.append({"name": name, **_figures(summary, capacity, stats.requests, stats.over_capacity, wall)})
    return rows


def _with_ratios(rows: list[dict[str, Any]], capacity: int) -> list[dict[str, Any]]:
    """Each row's goodput as a ratio to the fixed pool of K, the one hand-tuned to the API."""
    tuned = next(r for r in rows if r["name"] == f"fixed pool of {capacity} (K)")
    return [{**row, "ratio": row["goodput"] / tuned["goodput"]} for row in rows]


def run(quick: bool) -> dict[str, Any]:
    """Run the comparison; return its figures as JSON-ready data."""
    size: dict[str, Any] = SIZES["quick" if quick else "full"]
    data: dict[str, Any] = {
        "capacity": size["capacity"],
        "items": size["items"],
        "latency": list(LATENCY),
        "virtual": _with_ratios(_virtual(size["capacity"], size["items"]), size["capacity"]),
        "scaling": _scaling(size["scales"], ITEMS_PER_SLOT if not quick else 20),
    }
    try:
        import pcmodel.carapi  # noqa: F401  (the real run needs aiohttp: the `api` extra)
    except ImportError:
        data["real"] = None
        return data
    data.update(
        real_capacity=size["real_capacity"],
        real_items=size["real_items"],
        real_latency=list(REAL_LATENCY),
        real=_with_ratios(
            asyncio.run(_real(size["real_capacity"], size["real_items"])), size["real_capacity"]
        ),
    )
    return data


def _adaptive_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rows if r["name"].startswith("Adaptive"))


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met): the adaptive pool finds K on the twin, and keeps its goodput."""
    row = _adaptive_row(data["virtual"])
    capacity = data["capacity"]
    mean = row["mean_limit"]
    return [
        (
            f"Adaptive on the twin (K={capacity}): goodput >= 0.90 x a fixed pool of K",
            f"{row['ratio']:.2f}",
            row["ratio"] >= 0.9,
        ),
        (
            f"Adaptive on the twin (K={capacity}): mean limit over the second half within 20% of K",
            "-" if mean is None else f"{mean:.1f}",
            mean is not None and abs(mean - capacity) <= 0.2 * capacity,
        ),
    ]


def _table(rows: list[dict[str, Any]]) -> str:
    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f}"

    return _format.table(
        [
            "pool",
            "goodput (ok/s)",
            "ratio to K",
            "429s per 1,000 calls",
            "p95 task time (ms)",
            "longest task (s)",
            "calls per item",
            "settled at (s)",
            "mean limit, 2nd half",
            "elapsed (s)",
        ],
        [
            [
                r["name"],
                f"{r['goodput']:.1f}",
                _format.ratio(r["ratio"]),
                f"{r['per_1000']:.0f}",
                f"{r['p95_ms']:.0f}",
                f"{r['max_s']:.2f}",
                f"{r['requests'] / (r['succeeded'] + r['failed']):.2f}",
                "-" if r["mean_limit"] is None else seconds(r["settled_at"]),
                "-" if r["mean_limit"] is None else f"{r['mean_limit']:.1f}",
                f"{r['elapsed']:.2f}",
            ]
            for r in rows
        ],
    )


def _reading(data: dict[str, Any]) -> str:
    """What the twin's table shows, in words, with its numbers."""
    capacity = data["capacity"]
    rows = {row["name"]: row for row in data["virtual"]}
    small = rows[f"fixed pool of {capacity // 4} (K/4)"]
    large = rows[f"fixed pool of {4 * capacity} (4K)"]
    adaptive = _adaptive_row(data["virtual"])
    settled = adaptive["settled_at"]
    return (
        f"What it shows: a pool of K/4 leaves three quarters of the API idle ({small['ratio']:.2f} of "
        f"the goodput). A pool of 4K keeps the API as busy as a pool of K ({large['ratio']:.2f}): "
        "each 429 says when a slot frees and costs this API nothing, so the retries refill it at "
        f"once; but {large['per_1000']:.0f} of every 1,000 calls are turned away "
        f"({large['requests'] / large['succeeded']:.1f} calls per item), a load a real API pays "
        f"for, and the unluckiest task waited {large['max_s']:.1f} s while the others took the "
        f"freed slots first. `Adaptive`, told nothing, keeps {adaptive['ratio']:.2f} of the tuned "
        f"pool's goodput with {adaptive['per_1000']:.0f} 429s per 1,000 calls: its limit "
        + ("never settled" if settled is None else f"settled within {settled:.2f} s")
        + f" and averaged {adaptive['mean_limit']:.1f} over the second half (K = {capacity}). What "
        "it gives up is AIMD's sawtooth: each 429 cuts the limit to 0.9 times itself, below K, "
        "and it climbs back one call per round trip."
    )


def section(data: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    low, high = data["latency"]
    parts = [
        (
            f"**The twin, virtual clock**: {data['items']:,} items on an API of capacity K = "
            f"{data['capacity']} calls at once, each answered in {low:g}-{high:g} s (seed {SEED}); one "
            "run each (the virtual clock is exact: another run gives the same figures)."
        ),
        _table(data["virtual"]),
        _reading(data),
    ]
    if data.get("scaling"):
        parts += [
            (
                f"**As K grows** (the twin, {ITEMS_PER_SLOT} items per unit of K): `Adaptive(max=200)` "
                "against the pool of K, same policy."
            ),
            _format.table(
                ["K", "items", "goodput, ratio to K", "429s per 1,000 calls", "mean limit, 2nd half"],
                [
                    [
                        r["capacity"],
                        f"{r['items']:,}",
                        _format.ratio(r["ratio"]),
                        f"{r['per_1000']:.0f}",
                        "-" if r["mean_limit"] is None else f"{r['mean_limit']:.1f}",
                    ]
                    for r in data["scaling"]
                ],
            ),
            (
                "AIMD probes: it adds one call to the limit per round trip until a 429 says it went "
                "one too far. Near K = 1 that probe is a large share of the traffic (the limit saws "
                "between 1 and 2, and every second call meets a full API); at K = 100 it is lost in "
                "it, but each cut to 0.9 K then takes some ten round trips to win back, which is "
                "what the goodput pays."
            ),
        ]
    if data.get("real") is None:
        parts.append("The real-time run needs aiohttp (the `api` extra): not measured.")
    else:
        low, high = data["real_latency"]
        parts += [
            (
                f"**The HTTP server, real time**: {data['real_items']:,} items on "
                f"`CarAPIServer(capacity={data['real_capacity']})` on loopback, each answered in "
                f"{low:g}-{high:g} s; one run each, so the figures move a little from run to run."
            ),
            _table(data["real"]),
        ]
    parts.append(
        "*settled at*: when the adaptive limit entered 80%-120% of K for good; *mean limit*: "
        "its time-weighted mean over the second half of the job. Every item is retried until "
        "it succeeds (0.05 s flat, at least its Retry-After), so *calls per item* counts the 429s "
        "each success cost."
    )
    return "\n\n".join(parts)
