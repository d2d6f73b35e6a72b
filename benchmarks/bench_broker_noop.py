"""The broker's overhead per item: no-op items through Redis on one worker process.

A no-op function measures nothing but pcmodel and Redis: the producer's `XADD`s, the worker's
reads, its result writes and acknowledgements, the controller's reads, the encoding at each
end. The script starts its own redis-server (loopback, free port, temporary folder, no
persistence) and one worker process of 50 slots, then runs jobs of `--items` no-op items in
interleaved rounds and reports the median rate (items/s), its spread, and the latency of a
one-item job on an idle system (the time for a worker to notice a new job and answer it).

With `--baseline PATH` (another checkout of pcmodel, e.g. `git worktree add /tmp/base <commit>`)
it runs the same jobs on that checkout too, each with its own worker process and its own
controller process, interleaved with this one's (A B, B A, ...), and reports the ratio: the
way to measure a change on a shared machine, where only figures taken side by side compare.

    python -m benchmarks.bench_broker_noop                          # about half a minute
    python -m benchmarks.bench_broker_noop --baseline /tmp/base     # before and after
    python -m benchmarks.bench_broker_noop --quick                  # checks it runs

The controller of each job runs in a process of its own (started before the job, not timed),
with its checkout first on `PYTHONPATH`; the job's elapsed time is the summary's.
Needs the redis extra (`pip install 'pcmodel[redis]'`) and redis-server (`.ci/redis-setup.sh`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.bench_broker import redis_server

ROOT = Path(__file__).resolve().parent.parent
SLOTS = 50

# The function the worker processes run and the module the controllers name it from: a file of
# its own in the scratch folder, so any checkout (one without this script too) can import it.
_FUNCTION_MODULE = '''
async def noop(params):
    """Do nothing: the item's whole cost is the broker's."""
    return None
'''

# One controller process: runs the throughput jobs, then the one-item jobs; prints figures.
_CONTROLLER = """
import asyncio, json, sys, time
from pcmodel.broker import Broker, run_job_on_broker
from pcmodel.controller import make_spec
from pcmodel_bench_noop import noop

url, queue, items, singles = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
trace = sys.argv[5] == "trace"

async def main():
    broker = Broker(url, queue=queue)
    spec = make_spec(noop, ({"n": n} for n in range(items)), trace=trace)
    cpu, wall = time.process_time(), time.perf_counter()
    summary = await run_job_on_broker(spec, broker)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if (summary.tasks, summary.succeeded, summary.duplicates) != (items, items, 0):
        raise SystemExit(f"a run lost or repeated items: {summary}")
    latencies = []
    for _ in range(singles):
        begun = time.perf_counter()
        one = await run_job_on_broker(make_spec(noop, [{"n": 0}], trace=False), broker)
        latencies.append(time.perf_counter() - begun)
        if one.succeeded != 1:
            raise SystemExit(f"a one-item job failed: {one}")
        await asyncio.sleep(0.05)
    return {"elapsed": summary.elapsed, "wall": wall, "cpu": cpu, "latencies": latencies}

print(json.dumps(asyncio.run(main())))
"""


def _environment(checkout: Path, folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(checkout), str(folder)])
    return env


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process `pid` so far; 0 where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    pid = int(client.info("server")["process_id"])
    client.close()
    return pid


@contextmanager
def worker_process(url: str, checkout: Path, queue: str, folder: Path) -> Iterator[int]:
    """One worker process of `checkout`, 50 slots, serving `queue`; stopped at the end."""
    import redis

    command = [sys.executable, "-m", "pcmodel.broker", "--broker", url, "--workers", str(SLOTS)]
    command += ["--function", "pcmodel_bench_noop:noop", "--queue", queue]
    with open(folder / f"worker-{queue}.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=checkout, env=_environment(checkout, folder), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 60
        while client.zcard(f"pcmodel:queue:{queue}:workers") < 1:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"bench_broker_noop: the worker process did not start; see {folder}")
            time.sleep(0.05)
        client.close()
        yield process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if code != 0:
            print(f"bench_broker_noop: worker exit code {code}; log in {folder}", file=sys.stderr)


def run_controller(
    url: str, checkout: Path, queue: str, folder: Path, items: int, singles: int, trace: bool, pids: list[int]
) -> dict[str, Any]:
    """One controller process of `checkout`: a job of `items` no-op items, then `singles` one-item jobs.

    `pids` are the worker process's and the server's: their CPU time over the run is measured
    (the one-item jobs' included, a small share).
    """
    cpu_before = [cpu_seconds(pid) for pid in pids]
    done = subprocess.run(
        [sys.executable, "-c", _CONTROLLER, url, queue, str(items), str(singles), "trace" if trace else "-"],
        cwd=checkout,
        env=_environment(checkout, folder),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench_broker_noop: a controller failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["rate"] = items / figures["wall"]
    figures["worker_cpu"], figures["server_cpu"] = (
        cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)
    )
    return figures


def _versions() -> str:
    """redis-py's version, and hiredis's (its C reply parser, which changes the figures a lot)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("redis", "hiredis"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"no {package}")
    return ", ".join(found)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_broker_noop", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny jobs, one round: checks the script runs")
    parser.add_argument("--items", type=int, default=None, help="items per job (default 10,000; quick 500)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; quick 1)")
    parser.add_argument("--singles", type=int, default=None, help="one-item jobs per round (default 10)")
    parser.add_argument("--trace", action="store_true", help="keep the trace (run_job's default)")
    parser.add_argument("--baseline", type=Path, help="another pcmodel checkout to run side by side")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    items = args.items or (500 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 5)
    singles = args.singles if args.singles is not None else (2 if args.quick else 10)
    checkouts = {"this": ROOT}
    if args.baseline is not None:
        if not (args.baseline / "pcmodel" / "broker").is_dir():
            raise SystemExit(f"bench_broker_noop: {args.baseline} is not a pcmodel checkout")
        checkouts["baseline"] = args.baseline.resolve()
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in checkouts}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pcmodel-bench-noop-") as scratch:
        folder = Path(scratch)
        (folder / "pcmodel_bench_noop.py").write_text(_FUNCTION_MODULE)
        with redis_server(folder) as url, ExitStack() as stack:
            server = server_pid(url)
            pids = {
                label: [stack.enter_context(worker_process(url, checkout, f"noop-{label}", folder)), server]
                for label, checkout in checkouts.items()
            }
            labels = list(checkouts)
            for label in labels:  # warm up: each worker sees one small job first
                run_controller(
                    url,
                    checkouts[label],
                    f"noop-{label}",
                    folder,
                    min(items, 1000),
                    0,
                    args.trace,
                    pids[label],
                )
            for round_index in range(rounds):
                shift = round_index % len(labels)
                for label in labels[shift:] + labels[:shift]:
                    runs[label].append(
                        run_controller(
                            url,
                            checkouts[label],
                            f"noop-{label}",
                            folder,
                            items,
                            singles,
                            args.trace,
                            pids[label],
                        )
                    )
    load_after = os.getloadavg()

    rows = {}
    for label, trials in runs.items():
        rates = [trial["rate"] for trial in trials]
        latencies = [latency for trial in trials for latency in trial["latencies"]]
        rows[label] = {
            "checkout": str(checkouts[label]),
            "rate": statistics.median(rates),
            "rates": rates,
            "controller_cpu_per_item_us": statistics.median(trial["cpu"] / items * 1e6 for trial in trials),
            "worker_cpu_per_item_us": statistics.median(
                trial["worker_cpu"] / items * 1e6 for trial in trials
            ),
            "server_cpu_per_item_us": statistics.median(
                trial["server_cpu"] / items * 1e6 for trial in trials
            ),
            "latency_p50_ms": _percentile(latencies, 0.5) * 1000 if latencies else None,
            "latency_p99_ms": _percentile(latencies, 0.99) * 1000 if latencies else None,
        }
    print(
        f"pcmodel broker, no-op items: {items} items per job, 1 worker process of {SLOTS} slots, "
        f"{rounds} interleaved rounds (median), Python {platform.python_version()}, "
        f"{_versions()}, {os.cpu_count()} CPUs, load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print("CPU per item in microseconds: ctl (the controller), worker (the process), redis (the server)")
    print(
        f"{'checkout':>9} {'items/s':>8} {'spread':>13} {'ctl':>5} {'worker':>6} {'redis':>5} "
        f"{'1-item p50':>10} {'p99':>8}"
    )
    for label, row in rows.items():
        spread = f"{min(row['rates']):.0f}-{max(row['rates']):.0f}"
        p50 = "-" if row["latency_p50_ms"] is None else f"{row['latency_p50_ms']:.1f} ms"
        p99 = "-" if row["latency_p99_ms"] is None else f"{row['latency_p99_ms']:.1f} ms"
        print(
            f"{label:>9} {row['rate']:>8.0f} {spread:>13} {row['controller_cpu_per_item_us']:>5.0f} "
            f"{row['worker_cpu_per_item_us']:>6.0f} {row['server_cpu_per_item_us']:>5.0f} {p50:>10} {p99:>8}"
        )
    if "baseline" in rows:
        this, base = rows["this"], rows["baseline"]
        cpu = sum(this[f"{part}_cpu_per_item_us"] for part in ("controller", "worker", "server"))
        base_cpu = sum(base[f"{part}_cpu_per_item_us"] for part in ("controller", "worker", "server"))
        print(
            f"this checkout / baseline: {this['rate'] / base['rate']:.2f}x the items/s, "
            f"{cpu / base_cpu:.2f}x the CPU per item (all three processes)"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "items": items,
                    "slots": SLOTS,
                    "rounds": rounds,
                    "python": platform.python_version(),
                    "libraries": _versions(),
                    "cpus": os.cpu_count(),
                    "load": [load_before[0], load_after[0]],
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
