"""Measurement 5: cost per task as the job grows, in tasks and in workers.

The same one-await function: tasks from 10^3 to 10^6 on 50 workers, then workers from 1 to
10,000 on 100,000 tasks. A flat line means the cost per task does not grow with the job
(nothing is quadratic, nothing piles up). pcmodel runs beside the bare pipeline at every
point, in interleaved rounds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks import _format
from benchmarks._harness import interleaved, load_average, median
from benchmarks.contenders import BARE, PCMODEL_FALSE, PCMODEL_TRUE, Contender

SIZES = {
    "full": {
        "tasks": [1_000, 10_000, 100_000, 1_000_000],
        "workers": [1, 10, 100, 1_000, 10_000],
        "tasks_at_workers": 100_000,
        "rounds": 3,
        "rounds_largest": 1,
    },
    "quick": {
        "tasks": [100, 1_000],
        "workers": [1, 100],
        "tasks_at_workers": 1_000,
        "rounds": 1,
        "rounds_largest": 1,
    },
}
WORKERS = 50
CONTENDERS = (BARE, PCMODEL_FALSE, PCMODEL_TRUE)


async def one_await(params: Any) -> Any:
    """A task that awaits once."""
    await asyncio.sleep(0)
    return params


def _point(tasks: int, workers: int, rounds: int) -> dict[str, float]:
    """Microseconds per task of each contender at one size (median of the rounds)."""
    params = range(tasks)

    async def job(contender: Contender) -> None:
        await contender.run(one_await, params, lambda _result: None, workers)

    trials = interleaved(CONTENDERS, rounds, job)
    return {name: median([t.cpu for t in runs]) / tasks * 1e6 for name, runs in trials.items()}


def run(quick: bool) -> dict[str, Any]:
    """Run the comparison; return its figures as JSON-ready data."""
    size: dict[str, Any] = SIZES["quick" if quick else "full"]
    load_before = load_average()
    largest = max(size["tasks"])
    by_tasks = [
        {
            "tasks": n,
            "us_per_task": _point(n, WORKERS, size["rounds_largest"] if n == largest else size["rounds"]),
        }
        for n in size["tasks"]
    ]
    by_workers = [
        {"workers": w, "us_per_task": _point(size["tasks_at_workers"], w, size["rounds"])}
        for w in size["workers"]
    ]
    return {
        "workers": WORKERS,
        "tasks_at_workers": size["tasks_at_workers"],
        "rounds": size["rounds"],
        "by_tasks": by_tasks,
        "by_workers": by_workers,
        "load": [load_before, load_average()],
    }


def _flatness(points: list[dict[str, Any]], name: str) -> float:
    """Largest cost per task over the smallest, across the points (1.0 is perfectly flat)."""
    costs: list[float] = [p["us_per_task"][name] for p in points]
    return max(costs) / min(costs)


def section(data: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    names = [c.name for c in CONTENDERS]
    by_tasks = _format.table(
        ["tasks", *[f"{n} (us/task)" for n in names], "pcmodel trace=False / bare"],
        [
            [
                f"{p['tasks']:,}",
                *[f"{p['us_per_task'][n]:.2f}" for n in names],
                _format.ratio(p["us_per_task"][BARE.name] / p["us_per_task"][PCMODEL_FALSE.name]),
            ]
            for p in data["by_tasks"]
        ],
    )
    by_workers = _format.table(
        ["workers", *[f"{n} (us/task)" for n in names], "pcmodel trace=False / bare"],
        [
            [
                f"{p['workers']:,}",
                *[f"{p['us_per_task'][n]:.2f}" for n in names],
                _format.ratio(p["us_per_task"][BARE.name] / p["us_per_task"][PCMODEL_FALSE.name]),
            ]
            for p in data["by_workers"]
        ],
    )
    flat = ", ".join(f"{n} {_flatness(data['by_tasks'], n):.2f}" for n in names)
    return (
        f"Microseconds of CPU time per task (median of {data['rounds']} interleaved rounds; one "
        f"round at the largest size), one-await function. Growing the tasks on {data['workers']} "
        f"workers:\n\n{by_tasks}\n\nLargest over smallest cost per task across task counts: {flat}."
        f"\n\nGrowing the workers on {data['tasks_at_workers']:,} tasks:\n\n{by_workers}"
    )


def plot(data: dict[str, Any], assets: Any) -> list[str]:
    """Cost per task against tasks and against workers; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for contender in CONTENDERS:
        name = contender.name
        left.plot(
            [p["tasks"] for p in data["by_tasks"]],
            [p["us_per_task"][name] for p in data["by_tasks"]],
            marker="o",
            label=name,
        )
        right.plot(
            [p["workers"] for p in data["by_workers"]],
            [p["us_per_task"][name] for p in data["by_workers"]],
            marker="o",
            label=name,
        )
    left.set_xscale("log")
    right.set_xscale("log")
    left.set_xlabel(f"tasks ({data['workers']} workers)")
    right.set_xlabel(f"workers ({data['tasks_at_workers']:,} tasks)")
    left.set_ylabel("microseconds per task (lower is better)")
    left.set_ylim(bottom=0)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend()
    fig.suptitle("Cost per task as the job grows")
    fig.tight_layout()
    path = assets / "bench-growth.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]
