"""Measurement 1: throughput of every contender, for a no-op function and a one-await one.

Each contender runs the same 50,000 tasks with at most 50 in flight, every result handed to
a callback that counts it (a run that loses a result is an error, not a number). Rounds are
interleaved; the table gives the median, the ratio to the bare pipeline, and the same ratio
on CPU time, which other processes on the machine disturb less than wall time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks import _format
from benchmarks._harness import available, interleaved, load_average, rates
from benchmarks.contenders import (
    ALL,
    BARE,
    BARE_JOB_QUEUE,
    LIBRARIES,
    PCMODEL_FALSE,
    PCMODEL_TRUE,
    UVLOOP,
    Contender,
)

CORE = (BARE, BARE_JOB_QUEUE, PCMODEL_FALSE, PCMODEL_TRUE, *UVLOOP)

SIZES = {
    "full": {"tasks": 50_000, "rounds": 3, "extra_core_rounds": 6},
    "quick": {"tasks": 300, "rounds": 1, "extra_core_rounds": 0},
}
"""Every contender runs `rounds` interleaved rounds; then the bare pipeline and pcmodel (the
comparison the targets are about, and the fastest runs) run `extra_core_rounds` more."""
LIMIT = 50


async def noop(params: Any) -> Any:
    """The no-op task: returns at once, never suspends."""
    return params


async def one_await(params: Any) -> Any:
    """A task that awaits once (`asyncio.sleep(0)`): one trip through the event loop."""
    await asyncio.sleep(0)
    return params


FUNCTIONS = {"no-op": noop, "one await": one_await}


def run(quick: bool) -> dict[str, Any]:
    """Run the comparison; return its figures as JSON-ready data."""
    size = SIZES["quick" if quick else "full"]
    tasks, rounds = size["tasks"], size["rounds"]
    contenders, missing = available([*ALL, *UVLOOP])
    params = list(range(tasks))
    load_before = load_average()
    by_function: dict[str, list[dict[str, Any]]] = {}
    for label, function in FUNCTIONS.items():

        async def job(contender: Contender, function: Any = function) -> int:
            handled = 0

            def on_result(_result: object) -> None:
                nonlocal handled
                handled += 1

            await contender.run(function, params, on_result, LIMIT)
            if handled != tasks:
                raise RuntimeError(f"{contender.name} handed {handled} results for {tasks} tasks")
            return handled

        trials = interleaved(contenders, rounds, job)
        core = [c for c in contenders if c in CORE]
        for name, more in interleaved(core, size["extra_core_rounds"], job).items():
            trials[name] += more
        rows = rates(trials, tasks, BARE.name)
        for row, contender in zip(rows, contenders, strict=True):
            row["loop"] = contender.loop
        by_function[label] = rows
    return {
        "tasks": tasks,
        "rounds": rounds,
        "extra_core_rounds": size["extra_core_rounds"],
        "limit": LIMIT,
        "missing": missing,
        "functions": by_function,
        "load": [load_before, load_average()],
    }


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the throughput targets, on both functions.

    The targets compare pcmodel with the bare pipeline on `asyncio.Queue`. Beside them, the
    same thresholds against the bare pipeline on pcmodel's own queue: what the bookkeeping
    alone costs.
    """
    found = []
    for label, function_rows in data["functions"].items():
        rows = {r["name"]: r for r in function_rows}
        for contender, goal in ((PCMODEL_FALSE, 0.90), (PCMODEL_TRUE, 0.80)):
            if contender.name not in rows:
                continue
            value = rows[contender.name]["ratio"]
            found.append(
                (f"{label}: {contender.name} >= {goal:.2f} x bare pipeline", f"{value:.2f}", value >= goal)
            )
            if BARE_JOB_QUEUE.name in rows:
                own = value / rows[BARE_JOB_QUEUE.name]["ratio"]
                found.append(
                    (
                        f"{label}, bookkeeping alone: {contender.name} >= {goal:.2f} x bare pipeline on JobQueue",
                        f"{own:.2f}",
                        own >= goal,
                    )
                )
    rows = {r["name"]: r for r in data["functions"]["one await"]}
    library_names = [c.name for c in LIBRARIES if c.name in rows]
    fastest = max(library_names, key=lambda n: rows[n]["tasks_per_s"]) if library_names else None
    if fastest is not None and PCMODEL_FALSE.name in rows:
        times = rows[PCMODEL_FALSE.name]["tasks_per_s"] / rows[fastest]["tasks_per_s"]
        found.append(
            (f"pcmodel trace=False >= 2 x the fastest other library ({fastest})", f"{times:.2f}x", times >= 2)
        )
    return found


def section(data: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    parts = [
        (
            f"{data['tasks']:,} tasks, at most {data['limit']} in flight, every result handed to a "
            f"callback; interleaved rounds, medians ({data['rounds']} rounds for every contender, "
            f"{data['rounds'] + data['extra_core_rounds']} for the bare pipeline and pcmodel). The "
            "rates and ratios are on this process's CPU time (the contenders are single-threaded "
            "and CPU-bound; on this shared machine wall time also counts the time other processes "
            "held the CPU); the wall-time ratio is given beside. *ratio* is to the bare pipeline on "
            "the standard asyncio loop; *spread* is the fastest and slowest round against the median."
        ),
    ]
    for label, rows in data["functions"].items():
        parts.append(f"**{label}** function:")
        parts.append(_format.throughput_table("contender", sorted(rows, key=lambda r: -r["tasks_per_s"])))
    if data["missing"]:
        parts.append("Not installed here, so not measured: " + ", ".join(data["missing"]) + ".")
    return "\n\n".join(parts)


def plot(data: dict[str, Any], assets: Any) -> list[str]:
    """A bar chart of the ratios to the bare pipeline; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    functions = list(data["functions"])
    names = [r["name"] for r in data["functions"][functions[-1]]]
    names.sort(key=lambda n: next(r["ratio"] for r in data["functions"][functions[-1]] if r["name"] == n))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    height = 0.8 / len(functions)
    for index, label in enumerate(functions):
        ratios = {r["name"]: r["ratio"] for r in data["functions"][label]}
        ax.barh(
            [i + index * height for i in range(len(names))],
            [ratios[n] for n in names],
            height=height,
            label=f"{label} function",
        )
    ax.set_yticks([i + height * (len(functions) - 1) / 2 for i in range(len(names))], names)
    ax.axvline(1.0, color="gray", linewidth=1)
    ax.axvline(0.9, color="gray", linewidth=1, linestyle=":")
    ax.set_xlabel("throughput / bare asyncio pipeline, CPU time (higher is faster)")
    ax.set_title(f"Throughput, {data['tasks']:,} tasks, {data['limit']} in flight")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = assets / "bench-throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]
