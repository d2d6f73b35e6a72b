"""`python -m benchmarks`: run every comparison, each in its own process; write the results.

    python -m benchmarks                  # full sizes: benchmarks/RESULTS.md, assets/bench-*.png
    python -m benchmarks --quick          # tiny sizes, into a temporary folder
    python -m benchmarks --only throughput,memory
    python -m benchmarks --out DIR        # RESULTS.md, results.json and the plots go to DIR
    python -m benchmarks --render         # rewrite RESULTS.md and the plots from results.json
    python -m benchmarks --only peers     # re-run one comparison; the others stay as they were

With --only, the comparisons not re-run keep their results from results.json (when there is
one), and RESULTS.md says which sections were re-run alone, and when.

Each comparison runs in a fresh Python process, so one cannot warm up, fragment or fill the
memory of the next; inside it the contenders run in interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report

MEASUREMENTS = (
    "throughput",
    "makespan",
    "memory",
    "virtual_clock",
    "growth",
    "latency",
    "hotpath",
    "ledger",
    "adaptive",
    "peers",
)
ROOT = Path(__file__).resolve().parent.parent


def run_child(name: str, quick: bool, output: Path) -> None:
    """In the child process: run one comparison and write its data as JSON to `output`."""
    module = report.module(name)
    started = time.perf_counter()
    data = module.run(quick)
    data["seconds"] = time.perf_counter() - started
    output.write_text(json.dumps(data, indent=1))


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the suite runs")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    parser.add_argument("--out", type=Path, help="folder for RESULTS.md, results.json and the plots")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite RESULTS.md and the plots from results.json"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run_child(args.child, args.quick, args.json)
        return 0

    asked = [n.strip() for n in args.only.split(",") if n.strip()] or list(MEASUREMENTS)
    unknown = sorted(set(asked) - set(MEASUREMENTS))
    names = [name for name in MEASUREMENTS if name in asked]
    if unknown:
        parser.error(
            f"--only: unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}"
        )
    if args.out is not None:
        results_dir = assets_dir = args.out
    elif args.quick:
        results_dir = assets_dir = Path(tempfile.mkdtemp(prefix="pcmodel-bench-quick-"))
    else:
        results_dir, assets_dir = ROOT / "benchmarks", ROOT / "assets"
    results_dir.mkdir(parents=True, exist_ok=True)
    assets_dir.mkdir(parents=True, exist_ok=True)

    if args.render:
        data = json.loads((results_dir / "results.json").read_text())
        write_report(data, results_dir, assets_dir)
        return 0

    environment = report.environment()
    results: dict[str, object] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            output = Path(scratch) / f"{name}.json"
            command = [sys.executable, "-m", "benchmarks", "--child", name, "--json", str(output)]
            if args.quick:
                command.append("--quick")
            print(f"[benchmarks] {name} ...", flush=True)
            step = time.perf_counter()
            subprocess.run(command, check=True, cwd=ROOT)
            results[name] = json.loads(output.read_text())
            print(f"[benchmarks] {name} done in {time.perf_counter() - step:.1f} s", flush=True)
    environment["total_seconds"] = time.perf_counter() - started
    environment["quick"] = args.quick
    environment["load_after"] = report.load_average()

    data = {"environment": environment, "results": results}
    previous = results_dir / "results.json"
    if args.only and previous.exists():
        data = merged(json.loads(previous.read_text()), data)
    previous.write_text(json.dumps(data, indent=1))
    write_report(data, results_dir, assets_dir)
    for name in names:
        console = getattr(report.module(name), "console", None)
        if console is not None:
            print(console(results[name]))
    return 0


def merged(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`previous` with the comparisons of `new` replaced, noted as re-run alone (with --only).

    The header (machine, date, total time) stays the full run's; each re-run comparison is
    listed with its own date and load.
    """
    results = {**previous["results"], **new["results"]}
    environment = dict(previous["environment"])
    reruns = dict(environment.get("reruns", {}))
    for name in new["results"]:
        reruns[name] = {
            "date": new["environment"]["date"],
            "load_before": new["environment"]["load_before"],
            "load_after": new["environment"]["load_after"],
        }
    environment["reruns"] = reruns
    ordered = {name: results[name] for name in MEASUREMENTS if name in results}
    return {"environment": environment, "results": ordered}


def write_report(data: dict[str, Any], results_dir: Path, assets_dir: Path) -> None:
    """Draw the plots and write RESULTS.md from the collected data."""
    plots = report.plots(data["results"], assets_dir)
    markdown = report.results_markdown(data, plots, results_dir)
    (results_dir / "RESULTS.md").write_text(markdown)
    print(report.summary_table(data))
    print(f"[benchmarks] wrote {results_dir / 'RESULTS.md'} and {len(plots)} plot(s) in {assets_dir}")


if __name__ == "__main__":
    sys.exit(main())
