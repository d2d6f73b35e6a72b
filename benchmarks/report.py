"""RESULTS.md, the plots, and the record of the machine the numbers come from."""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

from benchmarks import _format
from benchmarks._harness import load_average

__all__ = [
    "environment",
    "library_versions",
    "load_average",
    "module",
    "plots",
    "results_markdown",
    "summary_table",
]

LIBRARIES = ("pcmodel", "aiometer", "aiojobs", "anyio", "uvloop", "matplotlib")

MODULES = {"peers": "bench_peers"}
"""Measurements whose module is not named after them (`benchmarks.<name>` otherwise)."""

TITLES = {
    "throughput": "1. Throughput",
    "makespan": "2. Scheduling efficiency on real waits",
    "memory": "3. Memory",
    "virtual_clock": "4. Virtual clock",
    "growth": "5. Growth",
    "latency": "6. Latency",
    "hotpath": "7. Hot path: earlier versions side by side, profiles, what changed",
    "ledger": "8. The outcome ledger: its cost, and the time to resume",
    "adaptive": "9. Adaptive concurrency against fixed pools, on an API of limited capacity",
    "peers": "10. Scaling out: the Redis path against arq, SAQ and taskiq",
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def library_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """The installed version of each distribution in `names` (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """The machine, Python and library versions, and how busy the machine was."""
    versions = library_versions(LIBRARIES)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "versions": versions,
        "load_before": load_average(),
    }


def _module(name: str) -> Any:
    return importlib.import_module(f"benchmarks.{MODULES.get(name, name)}")


def module(name: str) -> Any:
    """The module of the measurement `name`."""
    return _module(name)


def plots(results: dict[str, Any], assets: Path) -> list[str]:
    """Draw every measurement's plots into `assets`; return the files written."""
    written: list[str] = []
    for name, data in results.items():
        plot = getattr(_module(name), "plot", None)
        if plot is not None:
            written += plot(data, assets)
    return written


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Every target the measurements check: (target, measured, met)."""
    found: list[tuple[str, str, bool]] = []
    for name, data in results.items():
        check = getattr(_module(name), "targets", None)
        if check is not None:
            found += check(data)
    return found


def summary_table(data: dict[str, Any]) -> str:
    """The targets as a Markdown table."""
    rows = [[target, measured, _format.verdict(met)] for target, measured, met in targets(data["results"])]
    return _format.table(["target", "measured", "verdict"], rows, align="lrl")


def results_markdown(data: dict[str, Any], plot_files: list[str], results_dir: Path) -> str:
    """The whole RESULTS.md."""
    env = data["environment"]
    versions = ", ".join(f"{name} {version or 'not installed'}" for name, version in env["versions"].items())
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m benchmarks`"
        + (" --quick (tiny sizes: these numbers mean nothing)" if env["quick"] else "")
        + "; do not edit by hand. Ratios compare contenders measured in the same process, in",
        "interleaved rounds; absolute rates depend on the machine.",
        "",
        f"- Date: {env['date']}",
        f"- Machine: {env['machine']}",
        f"- Python: {env['python']}",
        f"- Libraries: {versions}",
        (
            f"- Total run time: {env['total_seconds']:.0f} s; one-minute load average "
            f"{env['load_before']:.2f} before, {env['load_after']:.2f} after (the machine is shared: "
            "a load above 1 means other processes competed for the two cores)."
        ),
        *([f"- Note: {env['note']}."] if env.get("note") else []),
        *(
            f"- Re-run alone later (`--only {name}`): section {TITLES.get(name, name).split('.')[0]} on "
            f"{rerun['date']}, load {rerun['load_before']:.2f} before, {rerun['load_after']:.2f} after."
            for name, rerun in env.get("reruns", {}).items()
        ),
        "",
        "How to read these numbers: every comparison ran in its own process, its contenders in",
        "interleaved rounds; the tables give medians, and ratios to the bare asyncio pipeline",
        "measured in the same rounds. Throughput, growth, the virtual clock and the hot path are",
        "timed on the process's CPU time: those jobs are single-threaded and CPU-bound, and on",
        "this shared machine wall time also counts the time other processes held the CPU (the",
        "*spread* columns show how far single rounds strayed; the wall-time ratio is given",
        "beside). Makespan and latency measure real waits, so they are wall time by nature, and",
        "the most exposed to that noise.",
        "",
        "## Targets",
        "",
        "pcmodel as it is in `pcmodel/`. Rows marked *bookkeeping alone* compare it with the bare",
        "pipeline on pcmodel's own queue instead of `asyncio.Queue` (see section 7): they are not",
        "targets of their own, they show what pcmodel's bookkeeping costs by itself.",
        "",
        summary_table(data),
        "",
    ]
    for name, result in data["results"].items():
        lines += [f"## {TITLES.get(name, name)}", "", _module(name).section(result), ""]
        mine = [p for p in plot_files if Path(p).name.startswith(f"bench-{name.replace('_', '-')}")]
        for path in mine:
            relative = os.path.relpath(path, results_dir)
            lines += [f"![{Path(path).stem}]({relative})", ""]
        lines += [f"*This comparison took {result['seconds']:.0f} s.*", ""]
    return "\n".join(lines)
