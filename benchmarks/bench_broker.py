"""Throughput of a job on worker processes through Redis: I/O-bound items on 1, 2 and 4 processes.

Each item waits `--seconds` (0.1 s: an API call), so one process of 50 worker slots can finish
at most 500 items per second, and N processes N times that: the ideal. The script starts its
own redis-server (loopback, free port, temporary folder, no persistence) and 1 + 2 + 4 worker
processes (`python -m pcmodel.broker`, 50 slots each, one queue per group), then runs the same
job on each group in interleaved rounds (1, 2, 4, 1, 2, 4, ...) and reports the median rate,
its ratio to the ideal and to one process. Every process it starts is stopped at the end.

    python -m benchmarks.bench_broker              # about a minute: 3 rounds of ~3 s jobs
    python -m benchmarks.bench_broker --quick      # a few seconds, tiny jobs (checks it runs)
    python -m benchmarks.bench_broker --out broker.json

Needs the redis extra (`pip install 'pcmodel[redis]'`) and redis-server (`.ci/redis-setup.sh`).
A job's elapsed time includes the workers noticing it (an idle worker hears of a job at once).
The overhead per item (no-op items) is measured by `benchmarks.bench_broker_noop`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GROUPS = (1, 2, 4)
SLOTS = 50


async def io_item(params: dict[str, Any]) -> int:
    """An I/O-bound item: wait `params["seconds"]` as a network call would, return its number."""
    await asyncio.sleep(params["seconds"])
    number: int = params["n"]
    return number


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port; its URL."""
    import redis

    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("bench_broker: redis-server is not installed: run .ci/redis-setup.sh")
    port = _free_port()
    with open(folder / "redis.log", "wb") as log:
        options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = subprocess.Popen(
            [executable, *options, "--dir", str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench_broker: redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def worker_processes(url: str, groups: tuple[int, ...], folder: Path) -> Iterator[dict[int, str]]:
    """Start each group's worker processes on a queue of its own; stop them all at the end."""
    import redis

    processes: list[subprocess.Popen[bytes]] = []
    queues = {count: f"bench-{count}-processes" for count in groups}
    command = [sys.executable, "-m", "pcmodel.broker", "--broker", url, "--workers", str(SLOTS)]
    command += ["--function", "benchmarks.bench_broker:io_item"]
    try:
        for count, queue in queues.items():
            for index in range(count):
                with open(folder / f"worker-{count}-{index}.log", "wb") as log:
                    processes.append(
                        subprocess.Popen(
                            [*command, "--queue", queue],
                            cwd=ROOT,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 60
        while any(client.zcard(f"pcmodel:queue:{queue}:workers") < count for count, queue in queues.items()):
            if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
                raise SystemExit(f"bench_broker: worker processes did not start; see {folder}")
            time.sleep(0.05)
        client.close()
        yield queues
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process in processes:
            try:
                codes.append(process.wait(30))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        if any(code != 0 for code in codes):
            print(f"bench_broker: worker exit codes {codes}; logs in {folder}", file=sys.stderr)


def run_once(url: str, queue: str, items: int, seconds: float, processes: int) -> dict[str, float]:
    """One job of `items` items on `queue`; its figures."""
    from pcmodel.broker import Broker, run_job_on_broker
    from pcmodel.controller import make_spec

    spec = make_spec(
        io_item,
        ({"n": number, "seconds": seconds} for number in range(items)),
        # Room for every slot plus as many queued: backpressure, not starvation.
        queue_size=2 * processes * SLOTS,
        trace=False,
    )
    cpu_before = time.process_time()
    summary = asyncio.run(run_job_on_broker(spec, Broker(url, queue=queue)))
    cpu = time.process_time() - cpu_before
    if (summary.tasks, summary.succeeded, summary.duplicates) != (items, items, 0):
        raise SystemExit(f"bench_broker: a run lost or repeated items: {summary}")
    return {
        "elapsed": summary.elapsed,
        "rate": items / summary.elapsed,
        "controller_cpu_per_item_us": cpu / items * 1e6,
        "processes_seen": len(summary.processes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_broker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny jobs, one round: checks the script runs")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, default=0.1, help="each item's wait (default 0.1 s)")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="ideal length of each job in seconds (default 3, quick 0.5)",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    target = args.target or (0.5 if args.quick else 3.0)
    items = {count: max(1, round(target * count * SLOTS / args.seconds)) for count in GROUPS}
    runs: dict[int, list[dict[str, float]]] = {count: [] for count in GROUPS}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pcmodel-bench-broker-") as scratch:
        folder = Path(scratch)
        with redis_server(folder) as url, worker_processes(url, GROUPS, folder) as queues:
            for count in GROUPS:  # warm up: each group sees one small job first
                run_once(url, queues[count], count * SLOTS, args.seconds, count)
            for round_index in range(rounds):
                order = GROUPS[round_index % len(GROUPS) :] + GROUPS[: round_index % len(GROUPS)]
                for count in order:
                    runs[count].append(run_once(url, queues[count], items[count], args.seconds, count))
    load_after = os.getloadavg()

    one = statistics.median(run["rate"] for run in runs[1])
    rows = []
    for count in GROUPS:
        rate = statistics.median(run["rate"] for run in runs[count])
        ideal = count * SLOTS / args.seconds
        rows.append(
            {
                "processes": count,
                "slots": count * SLOTS,
                "items": items[count],
                "rate": rate,
                "rates": [run["rate"] for run in runs[count]],
                "ideal": ideal,
                "of_ideal": rate / ideal,
                "vs_one_process": rate / one,
                "controller_cpu_per_item_us": statistics.median(
                    run["controller_cpu_per_item_us"] for run in runs[count]
                ),
            }
        )
    print(
        f"pcmodel broker throughput: items of {args.seconds:g} s on processes of {SLOTS} slots, "
        f"{rounds} interleaved rounds (median), Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print(
        f"{'processes':>9} {'slots':>5} {'items':>6} {'items/s':>8} {'ideal':>6} {'of ideal':>8} "
        f"{'vs 1':>5} {'ctl CPU/item':>12}"
    )
    for row in rows:
        print(
            f"{row['processes']:>9} {row['slots']:>5} {row['items']:>6} {row['rate']:>8.0f} "
            f"{row['ideal']:>6.0f} {row['of_ideal']:>8.0%} {row['vs_one_process']:>4.2f}x "
            f"{row['controller_cpu_per_item_us']:>9.0f} us"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "slots_per_process": SLOTS,
                    "rounds": rounds,
                    "python": platform.python_version(),
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
