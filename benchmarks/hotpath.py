"""Measurement 7: the hot path before and after the changes in `patches/hotpath.diff`.

The patch is applied to a copy of the current `pcmodel/` in a temporary folder; both copies
are imported under other names (`pcmodel_before`, `pcmodel_after`) so that they run side by
side in one process, in interleaved rounds, beside the bare pipeline. If the patch no longer
applies (it has been merged, or the files moved on), the section says so and measures
nothing.

The section also prints a short profile of each version (the functions with the most own
time under cProfile, for a traced job), so the numbers come with the reason.
"""

from __future__ import annotations

import asyncio
import cProfile
import importlib
import io
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import _format
from benchmarks._harness import interleaved, load_average, median, rates
from benchmarks.contenders import BARE, Contender, pcmodel_runner

ROOT = Path(__file__).resolve().parent.parent
PATCH = Path(__file__).resolve().parent / "patches" / "hotpath.diff"
SIZES = {
    "full": {
        "tasks": 50_000,
        "rounds": 9,
        "memory_items": 200_000,
        "virtual_tasks": 100_000,
        "virtual_rounds": 3,
    },
    "quick": {"tasks": 300, "rounds": 1, "memory_items": 1_000, "virtual_tasks": 500, "virtual_rounds": 1},
}
LIMIT = 50

FINDINGS = """\
What the profile of the traced job showed before the changes, and what each change does:

1. **Queue-depth sampling** (`DepthRecordingQueue`): two Python-level hooks per task (a
   `_put` and a `_get` override, each calling the clock through a closure and building a
   `DepthSample` through its keyword `__new__`), plus two retained samples per task (about
   200 bytes). It was the largest item in the traced profile, and the reason `trace=True`
   ran at less than half the bare pipeline's speed. The trace already holds the same facts:
   an item is in the queue from `enqueued_at` to `started_at`. The patch drops the sampling
   and makes `JobSummary.queue_depth` a property that rebuilds the depth from the results
   when it is asked for (one sample per instant at which the depth changed).
2. **The clock**: `loop.time()` of the standard loop is a Python method around
   `time.monotonic()`; the controller now hands the pieces `time.monotonic` itself when the
   loop's `time` is the stock one (the virtual loop and uvloop keep their own).
3. **The producer's per-item helper**: `offer()` was a Python call per item; the patch
   writes the fast path inline in the two loops (sync and async source), and stops asking
   the queue's size once it has been full (no put can make it deeper).
4. **The worker's clock reads and waits**: an item taken with `get_nowait()` (no wait)
   starts at the clock reading the worker took when the previous task finished (nothing
   ran in between), so the worker reads the clock once per task instead of twice, and
   the start time of one task is the same float object as the finish time of the one
   before (24 bytes less per traced task). `await get()` only when the queue is empty.
5. **The result handler**: `inspect.isawaitable()` is only asked when a plain callback
   returned something other than None.

What is left (measured by removing one piece at a time in a scratch copy, one-await
function, 50,000 tasks, CPU time): building the `TaskResult` named tuple costs about 6% of
the bare pipeline's throughput (a tuple subclass does not use the tuple free list, and its
deallocation goes through the generic subtype path); the remaining clock reads (one in the
producer, one or two in the worker) about 5%; the ids and counters the summary needs about
3%; the job controls added since (timeout, retries, rate limit, fail-fast: a few checks per
task even when they are off) about 2%. A traced job also pays for keeping every result: a
`TaskResult` is a tuple subclass, which CPython's collector never untracks (it untracks only
exact tuples), so every full collection walks every kept result; and the allocations cannot
be recycled from free lists. Reaching 0.90 and 0.80 would need a record built in C, fewer
per-task fields, or a worker loop of its own for jobs without controls.
"""


def _rename(package_dir: Path, name: str) -> None:
    """Rewrite the package's own imports of `pcmodel` to `name`."""
    pattern = re.compile(r"^(\s*)(from|import) pcmodel(?=[\s.])", re.MULTILINE)
    for path in package_dir.rglob("*.py"):
        text = path.read_text()
        path.write_text(pattern.sub(lambda m: f"{m.group(1)}{m.group(2)} {name}", text))


def prepare(scratch: Path) -> tuple[ModuleType, ModuleType] | str:
    """Copies of pcmodel before and after the patch, imported; or why there are none."""
    if not PATCH.exists():
        return f"no patch at {PATCH.relative_to(ROOT)}"
    source = ROOT / "pcmodel"
    work = scratch / "apply"
    shutil.copytree(source, work / "pcmodel", ignore=shutil.ignore_patterns("__pycache__"))
    check = subprocess.run(
        ["git", "apply", "-C1", "--check", str(PATCH)], cwd=work, capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        return (
            "the patch does not apply to the current pcmodel/ (merged already, or the files moved on):\n"
            + (check.stderr.strip())
        )
    subprocess.run(["git", "apply", "-C1", str(PATCH)], cwd=work, check=True)
    packages = scratch / "packages"
    shutil.copytree(source, packages / "pcmodel_before", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(work / "pcmodel", packages / "pcmodel_after")
    _rename(packages / "pcmodel_before", "pcmodel_before")
    _rename(packages / "pcmodel_after", "pcmodel_after")
    sys.path.insert(0, str(packages))
    return importlib.import_module("pcmodel_before"), importlib.import_module("pcmodel_after")


async def noop(params: Any) -> Any:
    """Returns at once."""
    return params


async def one_await(params: Any) -> Any:
    """Awaits once."""
    await asyncio.sleep(0)
    return params


def _throughput(contenders: list[Contender], tasks: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    params = list(range(tasks))
    found: dict[str, list[dict[str, Any]]] = {}
    for label, function in (("no-op", noop), ("one await", one_await)):

        async def job(contender: Contender, function: Any = function) -> None:
            await contender.run(function, params, lambda _result: None, LIMIT)

        trials = interleaved(contenders, rounds, job)
        found[label] = rates(trials, tasks, BARE.name)
    return found


def _memory(module: ModuleType, items: int, trace: bool) -> float:
    """Peak traced bytes per item of a job over a generator of `items` ints."""

    async def job() -> int:
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        source = iter(range(10**6, 10**6 + items))
        await module.run_job_async(one_await, source, workers=LIMIT, trace=trace)
        highest = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return highest - baseline

    with asyncio.Runner() as runner:
        return runner.run(job()) / items


def _virtual(modules: dict[str, ModuleType], tasks: int, rounds: int) -> list[dict[str, Any]]:
    import random

    generator = random.Random(7)
    durations = [generator.uniform(0.1, 2.0) for _ in range(tasks)]

    async def simulated(index: int) -> int:
        await asyncio.sleep(durations[index])
        return index

    contenders = [
        Contender(f"{label} trace={trace}", pcmodel_runner(trace, module), make_loop=module.VirtualTimeLoop)
        for label, module in modules.items()
        for trace in (False, True)
    ]

    async def job(contender: Contender) -> None:
        await contender.run(simulated, range(tasks), lambda _result: None, LIMIT)

    trials = interleaved(contenders, rounds, job)
    return [
        {"name": c.name, "tasks_per_s": tasks / median([t.wall for t in trials[c.name]])} for c in contenders
    ]


def _profile(module: ModuleType, tasks: int, top: int = 8) -> str:
    """The `top` functions by own time for a traced one-await job under cProfile."""
    params = list(range(tasks))

    async def job() -> None:
        await module.run_job_async(
            one_await, params, on_task_complete=lambda _r: None, workers=LIMIT, trace=True
        )

    profiler = cProfile.Profile()
    with asyncio.Runner() as runner:
        profiler.enable()
        runner.run(job())
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    site = re.compile(r"\S*/(?:lib/python[\d.]+|site-packages|packages)/")
    return "\n".join(site.sub("", line) for line in lines[start : start + top + 1])


def run(quick: bool) -> dict[str, Any]:
    """Run the comparison; return its figures as JSON-ready data."""
    size = SIZES["quick" if quick else "full"]
    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        prepared = prepare(Path(scratch))
        if isinstance(prepared, str):
            return {"applied": False, "reason": prepared, "load": [load_before, load_average()]}
        before, after = prepared
        contenders = [
            BARE,
            Contender("before: pcmodel trace=False", pcmodel_runner(False, before)),
            Contender("after: pcmodel trace=False", pcmodel_runner(False, after)),
            Contender("before: pcmodel trace=True", pcmodel_runner(True, before)),
            Contender("after: pcmodel trace=True", pcmodel_runner(True, after)),
        ]
        throughput = _throughput(contenders, size["tasks"], size["rounds"])
        memory = [
            {
                "name": f"{label} trace={trace}",
                "bytes_per_item": _memory(module, size["memory_items"], trace),
            }
            for label, module in (("before", before), ("after", after))
            for trace in (False, True)
        ]
        virtual = _virtual({"before": before, "after": after}, size["virtual_tasks"], size["virtual_rounds"])
        profiles = {"before": _profile(before, size["tasks"]), "after": _profile(after, size["tasks"])}
        sys.path[:] = [p for p in sys.path if not p.startswith(scratch)]
    return {
        "applied": True,
        "tasks": size["tasks"],
        "rounds": size["rounds"],
        "memory_items": size["memory_items"],
        "virtual_tasks": size["virtual_tasks"],
        "throughput": throughput,
        "memory": memory,
        "virtual": virtual,
        "profiles": profiles,
        "load": [load_before, load_average()],
    }


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for pcmodel with the patch applied."""
    if not data["applied"]:
        return []
    found = []
    for label in ("one await", "no-op"):
        rows = {r["name"]: r for r in data["throughput"][label]}
        for trace, goal in (("False", 0.90), ("True", 0.80)):
            value = rows[f"after: pcmodel trace={trace}"]["ratio"]
            found.append(
                (
                    f"with the patch, {label} function: pcmodel trace={trace} >= {goal:.2f} x bare pipeline",
                    f"{value:.2f}",
                    value >= goal,
                )
            )
    memory = {r["name"]: r["bytes_per_item"] for r in data["memory"]}
    per = memory["after trace=True"]
    found.append(
        (
            f"with the patch: trace=True <= 250 bytes per task ({data['memory_items']:,} items)",
            f"{per:.0f} B",
            per <= 250,
        )
    )
    virtual = {r["name"]: r["tasks_per_s"] for r in data["virtual"]}
    rate = virtual["after trace=False"]
    found.append(
        ("with the patch: virtual clock >= 100,000 simulated tasks/s", f"{rate:,.0f}", rate >= 100_000)
    )
    return found


def section(data: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    if not data["applied"]:
        return f"Not measured: {data['reason']}\n\n{FINDINGS}"
    parts = [
        (
            f"`benchmarks/patches/hotpath.diff` applied to a copy of the current `pcmodel/`; both "
            f"copies run side by side with the bare pipeline, {data['tasks']:,} tasks, "
            f"{data['rounds']} interleaved rounds, medians."
        ),
        FINDINGS,
    ]
    for label, rows in data["throughput"].items():
        parts.append(f"**Throughput, {label} function** (ratio to the bare pipeline):")
        parts.append(_format.throughput_table("version", rows))
    parts.append(f"**Memory**, peak traced bytes per item, {data['memory_items']:,} items from a generator:")
    parts.append(
        _format.table(
            ["version", "bytes / item"], [[r["name"], f"{r['bytes_per_item']:.1f}"] for r in data["memory"]]
        )
    )
    parts.append(f"**Virtual clock**, {data['virtual_tasks']:,} simulated tasks:")
    parts.append(
        _format.table(
            ["version", "simulated tasks/s (CPU)"],
            [[r["name"], _format.rate(r["tasks_per_s"])] for r in data["virtual"]],
        )
    )
    for label, text in data["profiles"].items():
        parts.append(f"Profile {label} (traced job, one-await function, own time):\n\n```\n{text}\n```")
    return "\n\n".join(parts)
