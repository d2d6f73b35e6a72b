"""Measurement 7: the hot path, before and after: earlier versions of pcmodel run beside it.

Each earlier version is `pcmodel/` as it was at a commit of this repository (taken with
`git archive`, so the measurement needs the repository's history; a version that cannot be
taken is left out and the section says why). Every version is imported under a name of its
own (`pcmodel_original`, `pcmodel_previous`, `pcmodel_now`), so all of them run side by side
in one process, in interleaved rounds, beside the bare pipelines: throughput, memory per
task, and the virtual clock each version ships.

The section also prints a short profile of the first and the last version (the functions
with the most own time under cProfile, for a traced job), so the numbers come with the
reason.
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
import tarfile
import tempfile
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import _format
from benchmarks._harness import interleaved, load_average, median, rates
from benchmarks.contenders import BARE, BARE_JOB_QUEUE, Contender, pcmodel_runner

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = {
    "original": ("8e43e42", "before any hot-path work: queue depth sampled on every put and get"),
    "previous": ("d9decf9", "after the first round: depth rebuilt from the trace, one clock read per task"),
}
"""Earlier versions measured: name -> (commit, what it was). The current `pcmodel/` is "now"."""
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
What the profiles showed, and what each change did (in order; "first round" is the previous
version, "second round" is now):

1. **Queue-depth sampling** (first round): two Python-level hooks per task and two kept
   samples per task. The trace already holds the same facts (an item waits from
   `enqueued_at` to `started_at`), so `JobSummary.queue_depth` is rebuilt from it on demand.
2. **Clock reads** (first round): `time.monotonic` itself instead of the loop's Python
   `time()` method; one read per task in the worker (a task taken without waiting starts at
   the finish time of the one before).
3. **Producer and worker loops** (both rounds): the producer's fast and slow paths are written
   out in its loop (a coroutine per blocked put cost more than the put); a plain iterable
   that left the queue full waits at once at the next item instead of raising `QueueFull`
   first; the worker has one branch per outcome, and timeouts, retries and rate limits live in
   a wrapper that only jobs using them pay for.
4. **Results travel as plain tuples** (second round): the worker puts a row of the
   `TaskResult`'s fields on the result queue and the handler builds the `TaskResult` once,
   only if a callback or the trace needs one. A job with neither builds none.
5. **pcmodel's own queue, `JobQueue`** (second round): `asyncio.Queue.put_nowait` is five
   Python calls (`full`, `qsize`, `_put`, `_wakeup_next`, `Event.clear` for `join()`),
   `get_nowait` four; a job makes four such calls per task. `JobQueue` keeps asyncio's
   behaviour for the calls a job makes (first come, first served; a cancelled waiter hands
   its wake-up on; checked against `asyncio.Queue` in `tests/test_queues.py`) in one call
   each, and drops `join()`/`task_done()`, which a job never uses. This is the largest single
   gain, and the reason pcmodel now outruns the bare pipeline on `asyncio.Queue`; the bare
   pipeline on `JobQueue` isolates what the bookkeeping still costs.
6. **The virtual clock** (second round): `VirtualTimeLoop` turns without asyncio's select step
   while no thread is busy and no real I/O is registered, keeps its timers in a heap of
   `(when, order, handle)` tuples (compared in C; asyncio's heap of handles calls a Python
   `__lt__` about seven times per timer), and makes its handles without asking for debug
   mode each time.

What is left, measured by taking one piece out at a time in a scratch copy (50,000 tasks, CPU
time): building the `TaskResult` costs about 6% of the bare pipeline's throughput (a tuple
subclass is built through `tuple.__new__`, does not use the tuple free list, and its
deallocation takes the generic path); the two clock reads per task (the producer's enqueue
time, the worker's finish time) about 8% together; everything else (ids, counters, the
checks for the job controls) about 4%. Against the bare pipeline on the same queue that
leaves pcmodel at about 0.82 (`trace=False`), short of 0.90: getting there would take a
record built in C (a compiled extension, which this package does not ship) and an enqueue
time shared by a burst of items instead of one per item (which loses per-item times in the
trace). With `trace=True` a job also keeps every result: the
memory it allocates cannot come from free lists, and a `TaskResult` is a tuple subclass,
which CPython's collector never untracks (it untracks only exact tuples), so collections walk
the kept results (measured: keeping plain tuples instead and building the records at the end
cost more than it saved). On the virtual clock each task is four callbacks of asyncio's own
(the timer, and the wake-ups of the worker, the result handler and the producer), which is
most of what is left.
"""


def _rename(package_dir: Path, name: str) -> None:
    """Rewrite the package's own imports of `pcmodel` to `name`."""
    pattern = re.compile(r"^(\s*)(from|import) pcmodel(?=[\s.])", re.MULTILINE)
    for path in package_dir.rglob("*.py"):
        text = path.read_text()
        path.write_text(pattern.sub(lambda m: f"{m.group(1)}{m.group(2)} {name}", text))


def _checkout(commit: str, target: Path) -> str | None:
    """`pcmodel/` at `commit` into `target`; None, or why it could not be taken."""
    archive = target.with_suffix(".tar")
    try:
        with archive.open("wb") as out:
            subprocess.run(
                ["git", "archive", "--format=tar", commit, "pcmodel"],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.PIPE,
                check=True,
            )
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        return f"commit {commit} is not in this clone ({detail.decode(errors='replace').strip() or error})"
    with tarfile.open(archive) as tar:
        tar.extractall(target.parent / "extract", filter="data")
    shutil.move(str(target.parent / "extract" / "pcmodel"), target)
    return None


def prepare(scratch: Path) -> tuple[dict[str, ModuleType], dict[str, str]]:
    """Every version that can be had, imported: (name -> module, name -> why it is missing)."""
    packages = scratch / "packages"
    packages.mkdir()
    missing: dict[str, str] = {}
    names: list[str] = []
    for name, (commit, _what) in VERSIONS.items():
        problem = _checkout(commit, packages / f"pcmodel_{name}")
        if problem is not None:
            missing[name] = problem
            continue
        names.append(name)
    shutil.copytree(ROOT / "pcmodel", packages / "pcmodel_now", ignore=shutil.ignore_patterns("__pycache__"))
    names.append("now")
    for name in names:
        _rename(packages / f"pcmodel_{name}", f"pcmodel_{name}")
    sys.path.insert(0, str(packages))
    return {name: importlib.import_module(f"pcmodel_{name}") for name in names}, missing


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
        {"name": c.name, "tasks_per_s": tasks / median([t.cpu for t in trials[c.name]])} for c in contenders
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
        modules, missing = prepare(Path(scratch))
        contenders = [
            BARE,
            BARE_JOB_QUEUE,
            *(
                Contender(f"{name}: pcmodel trace={trace}", pcmodel_runner(trace, module))
                for trace in (False, True)
                for name, module in modules.items()
            ),
        ]
        throughput = _throughput(contenders, size["tasks"], size["rounds"])
        memory = [
            {"name": f"{name} trace={trace}", "bytes_per_item": _memory(module, size["memory_items"], trace)}
            for name, module in modules.items()
            for trace in (False, True)
        ]
        virtual = _virtual(modules, size["virtual_tasks"], size["virtual_rounds"])
        first, last = next(iter(modules)), "now"
        profiles = {
            first: _profile(modules[first], size["tasks"]),
            last: _profile(modules[last], size["tasks"]),
        }
        sys.path[:] = [p for p in sys.path if not p.startswith(scratch)]
    return {
        "versions": {name: list(VERSIONS[name]) for name in modules if name in VERSIONS},
        "missing": missing,
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


def section(data: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    versions = [
        f"- **{name}**: `pcmodel/` at commit {commit}, {what};"
        for name, (commit, what) in data["versions"].items()
    ]
    versions.append("- **now**: `pcmodel/` as it is.")
    versions += [f"- *{name}*: not measured, {why}." for name, why in data["missing"].items()]
    parts = [
        (
            f"Every version runs side by side with the bare pipelines, {data['tasks']:,} tasks, "
            f"{data['rounds']} interleaved rounds, medians; the ratios are to the bare pipeline on "
            "`asyncio.Queue`, on CPU time."
        ),
        "\n".join(versions),
        FINDINGS,
    ]
    for label, rows in data["throughput"].items():
        parts.append(f"**Throughput, {label} function**:")
        parts.append(_format.throughput_table("version", rows))
    parts.append(f"**Memory**, peak traced bytes per item, {data['memory_items']:,} items from a generator:")
    parts.append(
        _format.table(
            ["version", "bytes / item"], [[r["name"], f"{r['bytes_per_item']:.1f}"] for r in data["memory"]]
        )
    )
    parts.append(
        f"**Virtual clock**, {data['virtual_tasks']:,} simulated tasks, each version on its own "
        "`VirtualTimeLoop`:"
    )
    parts.append(
        _format.table(
            ["version", "simulated tasks/s (CPU)"],
            [[r["name"], _format.rate(r["tasks_per_s"])] for r in data["virtual"]],
        )
    )
    for label, text in data["profiles"].items():
        parts.append(f"Profile, {label} (traced job, one-await function, own time):\n\n```\n{text}\n```")
    return "\n\n".join(parts)
