"""pcmodel's Redis path side by side with arq, SAQ and taskiq: the same items, the same redis-server.

    python -m benchmarks --only peers           # about 6 minutes; rewrites the peers section
    python -m benchmarks.bench_peers            # the same, printing the tables, writing nothing
    python -m benchmarks.bench_peers --quick    # tiny sizes, one round (checks that it runs)
    BENCH_PEERS_SYSTEMS=pcmodel,saq python -m benchmarks.bench_peers   # only these systems

One redis-server of its own (loopback, free port, temporary folder, no persistence), emptied
before each block of runs. Each system runs as worker processes started with its own command,
and a controller here (in this process) that sends the items and collects every result. Each
system runs first as its documentation sets it up (its defaults) and then with its best
documented settings for throughput (*tuned*); `_peers_tasks.CONFIGS` says which and why.

Rows:

- **no-op items** on 1, 2 and 4 worker processes: items per second, the overhead per item
  (each run sized from a warm-up to last about `TARGET` seconds);
- **50 ms items, 200 slots in all** (4 processes of 50): the rate as a fraction of the ideal
  4,000 items/s;
- **latency of one item on an idle system**: one process, one item at a time, from sending it
  to having its value, p50 and p99;
- **`kill -9` of one of two worker processes** mid-run, each system configured for safety as
  its documentation says: items never done (by a deadline), items whose function finished
  twice, values handed to the controller twice.

Within a block every configuration's workers run at once (each on a queue of its own), and
the runs go in interleaved rounds (A B C D, B C D A, ...); the tables give medians, the spread
of the rounds and ratios to pcmodel measured in the same rounds. A library that is not
installed only removes its rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _format, report
from benchmarks._peers_systems import (
    CHUNK,
    Group,
    available,
    client_for,
    distinct,
    items,
    kill,
    runs_counted,
    start_group,
    stop_group,
    wait_ready,
)
from benchmarks._peers_tasks import CONFIGS, RUNS_KEY, SAFE_CONFIGS, Config
from benchmarks.bench_broker import redis_server

BROKER_NOTE = (
    "pcmodel's broker batches its reads and writes (results and acknowledgements travel together) "
    "and an idle worker blocks on the queue's announcement stream instead of polling for new jobs."
)
"""Said above the tables: what state pcmodel's broker was in when they were measured."""
SYSTEMS = ("pcmodel", "arq", "saq", "taskiq")
NAMES = {"pcmodel": "pcmodel", "arq": "arq", "saq": "SAQ", "taskiq": "taskiq"}
REFERENCE = "pcmodel"
LIBRARIES = ("redis", "hiredis", "arq", "saq", "taskiq", "taskiq-redis")

FULL = {
    "rounds": 3,
    "target": 1.0,
    "max_items": 40_000,
    "sleep_waves": 10,
    "latency_samples": 50,
    "crash_items": 2_000,
    "crash_deadline": 25.0,
}
QUICK = {
    "rounds": 1,
    "target": 0.1,
    "max_items": 400,
    "sleep_waves": 2,
    "latency_samples": 4,
    "crash_items": 300,
    "crash_deadline": 15.0,
}
SLEEP = 0.05
"""Seconds each item of the real-wait row waits."""
SLEEP_PROCESSES, SLEEP_SLOTS = 4, 50
CRASH_PROCESSES, CRASH_SLOTS = 2, 50
BATCH_LIMIT = 30.0
"""Seconds a run may last before the controller stops waiting for it (and reports a failure)."""
SLOW_SAMPLES, SLOW_MS = 15, 300.0
"""The idle latency of a configuration slower than SLOW_MS is measured on SLOW_SAMPLES items."""
CRASH_AT = 0.3
"""The crash test kills a worker once this fraction of the items has finished."""


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _rotated(values: Sequence[Any], shift: int) -> list[Any]:
    shift %= len(values)
    return [*values[shift:], *values[:shift]]


async def _redis(url: str) -> Any:
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url)


async def _timed_batch(client: Any, count: int, seconds: float) -> tuple[float, int]:
    """Send `count` items, wait for every value; (seconds, items whose value came back right).

    A run that has not ended after BATCH_LIMIT seconds stops waiting (and counts what came back).
    """
    sent = items(count, seconds)
    started = time.perf_counter()
    limit = time.monotonic() + BATCH_LIMIT
    values = await client.batch(sent, deadline=lambda: limit)
    elapsed = time.perf_counter() - started
    await client.cleanup()
    return elapsed, distinct(v for v in values if 0 <= v < count)


async def _calibrate(
    client: Any, seconds: float, target: float, least: int, most: int
) -> tuple[int, str | None]:
    """Items for a run of about `target` seconds: grow a warm-up batch until it lasts 0.25 s.

    Also what went wrong, if a warm-up run did not hand back every value.
    """
    count = max(20, least // 4) if least < most else least
    while True:
        elapsed, good = await _timed_batch(client, count, seconds)
        if good != count:
            return count, f"warm-up: {good} of {count} values back within {BATCH_LIMIT:g} s"
        if elapsed >= 0.25 or count >= most:
            break
        count = min(most, count * 4)
    return max(least, min(most, round(count / elapsed * target))), None


async def _block(
    url: str,
    configs: Sequence[Config],
    processes: int,
    slots: int | None,
    seconds: float,
    sizes: dict[str, Any],
    folder: Path,
    name: str,
    latency: bool = False,
) -> dict[str, Any]:
    """Start every configuration's workers, run the interleaved rounds (and the latency samples)."""
    redis = await _redis(url)
    await redis.flushdb()
    groups = [
        start_group(url, config, f"{name}-{_slug(config.label)}", processes, slots, folder)
        for config in configs
    ]
    clients: list[Any] = []
    try:
        await wait_ready(redis, groups, folder)
        clients = [client_for(url, group) for group in groups]
        for client in clients:
            await client.open()
        least = max(20, processes * (slots or 0))
        counts = []
        failures: list[str] = []
        broken: set[int] = set()
        for index, (group, client) in enumerate(zip(groups, clients, strict=True)):
            if seconds:  # real waits: a fixed number of waves of every slot, after one wave
                count, failed = await _calibrate(client, seconds, 0.0, least, least)
                count = sizes["sleep_waves"] * least
            else:
                count, failed = await _calibrate(client, seconds, sizes["target"], least, sizes["max_items"])
            counts.append(count)
            if failed:
                failures.append(f"{group.config.label} on {processes} process(es): {failed}")
                broken.add(index)
        runs: list[list[float]] = [[] for _ in groups]
        for round_index in range(sizes["rounds"]):
            for index in _rotated(range(len(groups)), round_index):
                if index in broken:  # a run that lost values leaves work behind: no more runs
                    continue
                elapsed, good = await _timed_batch(clients[index], counts[index], seconds)
                if good != counts[index]:
                    failures.append(
                        f"{groups[index].config.label} on {processes} process(es): {good} of "
                        f"{counts[index]} values back within {BATCH_LIMIT:g} s"
                    )
                    broken.add(index)
                    continue
                runs[index].append(counts[index] / elapsed)
        block: dict[str, Any] = {
            "processes": processes,
            "rows": [
                _rate_row(group, count, rates)
                for group, count, rates in zip(groups, counts, runs, strict=True)
                if rates
            ],
            "failures": failures,
        }
        if latency:
            block["latency"] = await _latency(groups, clients, sizes["latency_samples"], failures)
        return block
    finally:
        for client in clients:
            await client.close()
        _stop(groups)
        await redis.aclose()


def _stop(groups: Sequence[Group]) -> None:
    for group in groups:
        for process in group.processes:
            if process.poll() is None:
                process.terminate()
    for group in groups:
        stop_group(group)


def _rate_row(group: Group, count: int, rates: list[float]) -> dict[str, Any]:
    rate = statistics.median(rates)
    return {
        "name": group.config.label,
        "system": group.config.system,
        "slots": group.slots,
        "items": count,
        "rates": rates,
        "rate": rate,
        "spread": [min(rates) / rate, max(rates) / rate],
    }


async def _latency(
    groups: Sequence[Group], clients: Sequence[Any], samples: int, failures: list[str]
) -> list[dict[str, Any]]:
    """One item at a time, interleaved across the systems; a warm-up sample each is dropped.

    A configuration whose median is over SLOW_MS after SLOW_SAMPLES items stops there: its
    latency is a whole polling interval (arq's and SAQ's defaults wait 0.5-1 s), which more
    items would only confirm, at a second each.
    """
    pause = random.Random(16)
    seen: list[list[float]] = [[] for _ in groups]
    dead: set[int] = set()
    for sample in range(samples + 1):
        for index in _rotated(range(len(groups)), sample):
            if index in dead:
                continue
            if len(seen[index]) >= SLOW_SAMPLES and statistics.median(seen[index]) > SLOW_MS:
                continue
            item = items(1, 0.0, first=sample)[0]
            started = time.perf_counter()
            try:
                value = await asyncio.wait_for(clients[index].one(item), BATCH_LIMIT)
            except (TimeoutError, OSError) as error:  # a worker gone or stuck: say so, go on
                failures.append(f"{groups[index].config.label}: item {sample}: {error!r}")
                dead.add(index)
                continue
            elapsed = time.perf_counter() - started
            await clients[index].cleanup()
            if value != sample:
                raise SystemExit(
                    f"bench_peers: {groups[index].config.label} returned {value!r} for item {sample}"
                )
            if sample:
                seen[index].append(elapsed * 1000)
            # A pause of its own before the next item, so no item follows a worker's poll in step.
            await asyncio.sleep(pause.uniform(0.005, 0.03))
    return [
        {
            "name": group.config.label,
            "system": group.config.system,
            "p50_ms": statistics.median(ms),
            "p99_ms": _percentile(ms, 0.99),
            "samples_ms": ms,
        }
        for group, ms in zip(groups, seen, strict=True)
        if ms
    ]


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _crash(url: str, config: Config, count: int, deadline: float, folder: Path) -> dict[str, Any]:
    """Kill -9 one of two worker processes once CRASH_AT of the items are done; count the damage."""
    redis = await _redis(url)
    await redis.flushdb()
    group = start_group(
        url, config, f"crash-{config.system}", CRASH_PROCESSES, CRASH_SLOTS, folder, safe=True
    )
    client: Any = None
    killed: list[float] = []
    try:
        await wait_ready(redis, [group], folder)
        client = client_for(url, group)
        await client.open()
        victim = group.pids[0]

        async def killer() -> None:
            while await redis.hlen(RUNS_KEY) < CRASH_AT * count:  # noqa: ASYNC110 - a count in Redis, not an event here
                await asyncio.sleep(0.002)
            kill(victim)
            killed.append(time.monotonic())

        watch = asyncio.ensure_future(killer())
        started = time.monotonic()
        values = await client.batch(
            items(count, SLEEP, record=True), deadline=lambda: killed[0] + deadline if killed else None
        )
        finished = time.monotonic()
        watch.cancel()
        runs = await runs_counted(redis)
        got = distinct(values)
        return {
            "name": NAMES[config.system],
            "system": config.system,
            "items": count,
            "killed": bool(killed),
            "killed_after_s": killed[0] - started if killed else None,
            "recovered_s": finished - killed[0] if killed and got == count else None,
            "lost": count - got,
            "ran_twice": sum(times - 1 for times in runs.values() if times > 1),
            "never_ran": count - len(runs),
            "delivered_twice": len(values) - got,
            "why": config.why,
        }
    finally:
        if client is not None:
            await client.close()
        _stop([group])
        await redis.aclose()


def versions() -> dict[str, str | None]:
    """The versions of the libraries measured, and of redis-server."""
    found = report.library_versions(LIBRARIES)
    try:
        output = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"v=(\S+)", output)
        found["redis-server"] = match.group(1) if match else None
    except OSError:
        found["redis-server"] = None
    return found


def _why_not(system: str) -> str | None:
    """Why `system` is not measured in this run (None: it is).

    BENCH_PEERS_SYSTEMS (comma-separated, e.g. `pcmodel,saq`) keeps only those systems.
    """
    wanted = os.environ.get("BENCH_PEERS_SYSTEMS")
    if system != "pcmodel" and wanted and system not in wanted.split(","):
        return "left out by BENCH_PEERS_SYSTEMS"
    return available(system)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"bench_peers: stopped by signal {signum}")


def _commit() -> str | None:
    """The checkout's commit (short), with "+changes" if it has uncommitted ones."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+changes" if dirty else head


def run(quick: bool) -> dict[str, Any]:
    """Every row, every configuration that can run here; the data for results.json."""
    sizes = QUICK if quick else FULL
    # A SIGTERM (from `timeout`, say) unwinds like an exception: every worker process and the
    # redis-server this run started are stopped on the way out.
    signal.signal(signal.SIGTERM, _terminated)
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not installed (.ci/redis-setup.sh installs it)"}
    if available("pcmodel") is not None:
        return {"skipped": "the redis extra is not installed: pip install -e '.[redis,bench]'"}
    # With its defaults (queue_size=100) a job on 4 processes of 50 slots keeps 100 busy, and
    # says so at every run: measured as documented, and said once in the notes instead.
    logging.getLogger("pcmodel").setLevel(logging.ERROR)
    missing = {label: why for label, c in CONFIGS.items() if (why := _why_not(c.system)) is not None}
    configs = [c for label, c in CONFIGS.items() if label not in missing]
    load_before = os.getloadavg()[0]
    data: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "cores": os.cpu_count(),
        "versions": versions(),
        "commit": _commit(),
        "quick": quick,
        "sizes": sizes,
        "configs": [{"name": c.label, "system": c.system, "why": c.why} for c in CONFIGS.values()],
        "safe_configs": [{"name": c.label, "why": c.why} for c in SAFE_CONFIGS.values()],
        "missing": missing,
    }
    with tempfile.TemporaryDirectory(prefix="pcmodel-bench-peers-") as scratch:
        folder = Path(scratch)
        with redis_server(folder) as url:
            data["noop"] = []
            for processes in (1, 2, 4):
                started = time.perf_counter()
                block = asyncio.run(
                    _block(
                        url,
                        configs,
                        processes,
                        None,
                        0.0,
                        sizes,
                        folder,
                        f"noop{processes}",
                        latency=processes == 1,
                    )
                )
                if processes == 1:
                    data["latency"] = block.pop("latency")
                data["noop"].append(block)
                print(
                    f"[peers] no-op items, {processes} process(es): {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
            started = time.perf_counter()
            data["sleep"] = asyncio.run(
                _block(url, configs, SLEEP_PROCESSES, SLEEP_SLOTS, SLEEP, sizes, folder, "sleep")
            )
            print(f"[peers] 50 ms items: {time.perf_counter() - started:.0f} s", flush=True)
            started = time.perf_counter()
            data["crash"] = [
                asyncio.run(_crash(url, config, sizes["crash_items"], sizes["crash_deadline"], folder))
                for system, config in SAFE_CONFIGS.items()
                if _why_not(system) is None
            ]
            print(f"[peers] kill -9: {time.perf_counter() - started:.0f} s", flush=True)
    data["load"] = [load_before, os.getloadavg()[0]]
    return data


# --- the tables -------------------------------------------------------------------------------


def _reference(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    for row in rows:
        if row["name"] == REFERENCE:
            value: float = row[key]
            return value
    return None


def _ratio(value: float, reference: float | None) -> str:
    return "-" if not reference else f"{value / reference:.2f}"


def _noop_table(data: dict[str, Any]) -> str:
    blocks = data["noop"]
    measured = {row["name"]: row["slots"] for block in blocks for row in block["rows"]}
    headers = ["configuration", "slots/process"]
    for block in blocks:
        headers += [f"{block['processes']} proc items/s", "vs pcmodel", "spread"]
    rows = []
    for config in data["configs"]:
        name = config["name"]
        if name not in measured:
            continue
        row: list[object] = [name, measured[name]]
        for block in blocks:
            found = next((r for r in block["rows"] if r["name"] == name), None)
            if found is None:  # its runs failed: see the failures below the tables
                row += ["failed", "-", "-"]
                continue
            row += [
                _format.rate(found["rate"]),
                _ratio(found["rate"], _reference(block["rows"], "rate")),
                _format.spread(*found["spread"]),
            ]
        rows.append(row)
    return _format.table(headers, rows)


def _sleep_table(data: dict[str, Any]) -> str:
    block = data["sleep"]
    ideal = SLEEP_PROCESSES * SLEEP_SLOTS / SLEEP
    reference = _reference(block["rows"], "rate")
    rows = [
        [
            row["name"],
            f"{row['items']:,}",
            _format.rate(row["rate"]),
            f"{row['rate'] / ideal:.0%}",
            _ratio(row["rate"], reference),
            _format.spread(*row["spread"]),
        ]
        for row in block["rows"]
    ]
    return _format.table(["configuration", "items", "items/s", "of ideal", "vs pcmodel", "spread"], rows)


def _latency_table(data: dict[str, Any]) -> str:
    rows_in = data["latency"]
    reference = _reference(rows_in, "p50_ms")
    rows = [
        [
            row["name"],
            str(len(row["samples_ms"])),
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            _ratio(row["p50_ms"], reference),
        ]
        for row in rows_in
    ]
    return _format.table(["configuration", "items", "p50 (ms)", "p99 (ms)", "p50 vs pcmodel"], rows)


def _crash_table(data: dict[str, Any]) -> str:
    rows = [
        [
            row["name"],
            f"{row['items']:,}",
            "yes" if row["killed"] else "no (ended first)",
            str(row["lost"]),
            str(row["ran_twice"]),
            str(row["delivered_twice"]),
            "-" if row["recovered_s"] is None else f"{row['recovered_s']:.1f}",
        ]
        for row in data["crash"]
    ]
    return _format.table(
        [
            "system (safe settings)",
            "items",
            "worker killed",
            "not done by the deadline",
            "finished twice",
            "value delivered twice",
            "all done, s after the kill",
        ],
        rows,
    )


def best_table(data: dict[str, Any]) -> str:
    """Each system's best configuration on each row, and its ratio to pcmodel's best."""

    def best(rows: Sequence[dict[str, Any]], key: str, system: str, low: bool = False) -> float | None:
        values = [row[key] for row in rows if row["system"] == system]
        if not values:
            return None
        return min(values) if low else max(values)

    columns: list[tuple[str, Sequence[dict[str, Any]], str, bool, str]] = [
        (f"no-op, {block['processes']} proc (items/s)", block["rows"], "rate", False, "rate")
        for block in data["noop"]
    ]
    columns.append(("50 ms items, 200 slots (of ideal)", data["sleep"]["rows"], "rate", False, "ideal"))
    columns.append(("idle latency p50 (ms)", data["latency"], "p50_ms", True, "ms"))
    columns.append(("idle latency p99 (ms)", data["latency"], "p99_ms", True, "ms"))
    ideal = SLEEP_PROCESSES * SLEEP_SLOTS / SLEEP
    rows = []
    for system in SYSTEMS:
        if not any(
            config["system"] == system for config in data["configs"] if config["name"] not in data["missing"]
        ):
            continue
        row: list[object] = [NAMES[system]]
        for _, source, key, low, kind in columns:
            value = best(source, key, system, low)
            mine = best(source, key, "pcmodel", low)
            if value is None or mine is None:
                row.append("-")
                continue
            shown = (
                f"{value / ideal:.0%}"
                if kind == "ideal"
                else (f"{value:.1f}" if kind == "ms" else _format.rate(value))
            )
            row.append(shown if system == "pcmodel" else f"{shown} ({value / mine:.2f}x)")
        crash = next((c for c in data["crash"] if c["system"] == system), None)
        row.append("-" if crash is None else f"{crash['lost']} / {crash['ran_twice']}")
        rows.append(row)
    headers = ["system", *(title for title, *_ in columns), "kill -9: not done / ran twice"]
    return _format.table(headers, rows)


def section(data: dict[str, Any]) -> str:
    """The RESULTS.md section."""
    if "skipped" in data:
        return f"Not measured: {data['skipped']}."
    env = data["versions"]
    libraries = ", ".join(f"{name} {version or 'not installed'}" for name, version in env.items())
    sizes = data["sizes"]
    lines = [
        f"Measured {data['date']}, {data['cores']}-core machine, everything local (controller, worker processes and "
        f"redis-server on one host, over loopback); {data['machine']}; {libraries}; one-minute load "
        f"{data['load'][0]:.2f} before, {data['load'][1]:.2f} after"
        + (" (--quick: tiny sizes, the numbers mean nothing)" if data["quick"] else "")
        + ".",
        "",
        (
            f"pcmodel at commit {data.get('commit') or 'unknown'}. {BROKER_NOTE} Re-run with "
            "`python -m benchmarks --only peers` (6-8 minutes on 2 cores) after a change to the broker."
        ),
        "",
        (
            "**Best of each system** (its best configuration on each row; in brackets, the ratio to "
            "pcmodel's best; for latency lower is better):"
        ),
        "",
        best_table(data),
        "",
        (
            f"**No-op items**: items/s, median of {sizes['rounds']} interleaved rounds, each run sized "
            f"from a warm-up to last about {sizes['target']:g} s; *vs pcmodel* is the ratio to pcmodel "
            "with its documented defaults in the same rounds; *spread* is the slowest and fastest round "
            "against the median."
        ),
        "",
        _noop_table(data),
        "",
        (
            f"**{SLEEP * 1000:.0f} ms items, {SLEEP_PROCESSES * SLEEP_SLOTS} slots in all** "
            f"({SLEEP_PROCESSES} processes of {SLEEP_SLOTS}), {sizes['sleep_waves']} waves of every slot "
            f"after one wave of warm-up: the ideal is "
            f"{SLEEP_PROCESSES * SLEEP_SLOTS / SLEEP:,.0f} items/s."
        ),
        "",
        _sleep_table(data),
        "",
        (
            f"**Latency of one item on an idle system** (one worker process, one item at a time, "
            f"{sizes['latency_samples']} items each ({SLOW_SAMPLES} for a configuration whose median "
            f"is over {SLOW_MS:.0f} ms: *items*), interleaved, a random pause of 5-30 ms between two): "
            "from sending the item to holding its value, with each library's own call to wait for "
            "a result."
        ),
        "",
        _latency_table(data),
        "",
        (
            f"**`kill -9` mid-run**: {CRASH_PROCESSES} worker processes of {CRASH_SLOTS} slots, "
            f"{SLEEP * 1000:.0f} ms items, one process killed once {CRASH_AT:.0%} of the items had "
            f"finished; the controller waits until everything is done or {sizes['crash_deadline']:g} s "
            "after the kill. *Finished twice*: the item's function ran to its end twice (counted by the "
            "function itself in Redis); *value delivered twice*: the controller was handed the item's "
            "value twice."
        ),
        "",
        _crash_table(data),
        "",
        "How each was configured, and why:",
        "",
        *(f"- **{c['name']}**: {c['why']}." for c in data["configs"]),
        "",
        ("For the `kill -9` row, as each documentation says to make a crashed worker's items run again:"),
        "",
        *(f"- **{c['name']}**: {c['why']}." for c in data["safe_configs"]),
        "",
        *_notes(),
    ]
    if data["missing"]:
        lines += [
            "",
            "Not measured: " + "; ".join(f"{name} ({why})" for name, why in data["missing"].items()) + ".",
        ]
    failures = [f for block in [*data["noop"], data["sleep"]] for f in block["failures"]]
    if failures:
        lines += ["", "**Runs that did not hand back every value**: " + "; ".join(failures) + "."]
    return "\n".join(lines)


def _notes() -> list[str]:
    return [
        (
            "How the rounds run: every configuration's worker processes start before a block of "
            "runs, each on a queue of its own, and stay up while the others are measured (idle, "
            "except for their polling: arq's tuned workers look at their queue every 5 ms, which "
            "costs every other system a little CPU; pausing them with SIGSTOP was tried and made "
            "arq's worker die of a read timeout on resuming). Every client uses redis-py (here with hiredis, its C reply parser, "
            "which each of them picks up when it is installed); arq declares redis<6 and SAQ's "
            "`redis` extra redis<8, and both ran here on the redis-py the project uses."
        ),
        "",
        (
            "pcmodel's defaults (queue_size=100) keep at most 100 items in flight: on 4 processes "
            "of 50 slots, half the slots wait (pcmodel logs a warning saying so, and to raise "
            "queue_size), which caps *pcmodel* at 50% of the ideal in the 50 ms row; *pcmodel "
            "tuned* lifts the bound."
        ),
        "",
        (
            "How the controller waits: pcmodel's controller is `run_job_async(..., broker=...)`, which "
            "reads results as they arrive. arq, SAQ and taskiq have no call that waits for many "
            "results at once without a round trip per item per look, so their controller here "
            f"enqueues every item ({CHUNK} at a time, concurrently), looks every 5 ms at an O(1) count of "
            "what is unfinished (arq's queue, SAQ's incomplete set, the stream group's lag and "
            "pending count for taskiq), then reads every result with MGET and decodes it as the "
            "library does. For one item each uses its own documented wait."
        ),
        "",
        "What each gives up for its speed:",
        "",
        (
            "- **pcmodel**: nothing is kept in Redis after a job: results go to the controller "
            "(exactly once per item, de-duplicated by task id) and nowhere else, so a result not "
            "read by the job's controller is gone; a worker serves one function, named on its "
            "command line."
        ),
        (
            "- **arq**: polls its queue (poll_delay) instead of blocking, so an idle worker answers "
            "late or spends round trips; starting each job is a WATCH/MULTI transaction; a job whose "
            "worker died waits job_timeout + 10 s before running again; results are pickled and kept "
            "in Redis (1 h by default), and the controller polls for them."
        ),
        (
            "- **SAQ**: each slot holds a connection blocked on BLMOVE; a crashed worker's jobs are "
            "found only by the sweep, which then waits for each stuck job to acknowledge its abort "
            "(5 s each, one after the other); the sweep also takes for stuck a job in its active "
            "list whose status is not yet *active*, which is every job between a worker's BLMOVE "
            "and its status update (runs that stalled so are listed below the tables as failed); "
            "a job runs at most `retries` times (1 by default: a crashed job is not run again "
            "unless retries are raised)."
        ),
        (
            "- **taskiq**: taskiq-redis's stream broker claims a dead worker's messages (XAUTOCLAIM) "
            "only after a read that returned new messages, so once the stream is drained the "
            "messages a killed worker held can stay pending until new work arrives (the *not "
            "done* column, in the runs where it happens); acknowledged stream messages stay in the stream (no maxlen by default); "
            "a message held longer than idle_timeout (10 min by default) by a live worker is "
            "claimed again by another, so a long call can run twice; its worker command restarts a "
            "killed worker process; results are pickled and kept until read (or forever)."
        ),
    ]


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The issue's targets for pcmodel's Redis path."""
    if "skipped" in data:
        return []
    found: list[tuple[str, str, bool]] = []
    one = data["noop"][0]["rows"]
    best_pcmodel = max((row["rate"] for row in one if row["system"] == "pcmodel"), default=0.0)
    found.append(
        (
            "Redis, no-op, 1 worker process: pcmodel >= 10,000 items/s",
            _format.rate(best_pcmodel),
            best_pcmodel >= 10_000,
        )
    )
    for block in [*data["noop"], data["sleep"]]:
        rows = block["rows"]
        mine = max((row["rate"] for row in rows if row["system"] == "pcmodel"), default=0.0)
        others = [row for row in rows if row["system"] != "pcmodel"]
        if others:
            rival = max(others, key=lambda row: row["rate"])
            what = "no-op" if block is not data["sleep"] else "50 ms items, 200 slots"
            found.append(
                (
                    f"Redis, {what}, {block['processes']} process(es): pcmodel ahead of every peer's best",
                    f"{mine / rival['rate']:.2f}x {rival['name']}",
                    mine > rival["rate"],
                )
            )
    latency = data["latency"]
    mine_p50 = min((row["p50_ms"] for row in latency if row["system"] == "pcmodel"), default=float("inf"))
    others_p50 = [row for row in latency if row["system"] != "pcmodel"]
    if others_p50:
        rival = min(others_p50, key=lambda row: row["p50_ms"])
        found.append(
            (
                "Redis, idle latency p50: pcmodel ahead of every peer's best",
                f"{mine_p50:.1f} ms vs {rival['p50_ms']:.1f} ms ({rival['name']})",
                mine_p50 < rival["p50_ms"],
            )
        )
    crash = next((row for row in data["crash"] if row["system"] == "pcmodel"), None)
    if crash is not None:
        found.append(
            (
                "Redis, kill -9 mid-run: pcmodel finishes every item, none twice",
                f"{crash['lost']} not done, {crash['ran_twice']} ran twice, {crash['delivered_twice']} delivered twice",
                crash["lost"] == 0 and crash["delivered_twice"] == 0,
            )
        )
    return found


def console(data: dict[str, Any]) -> str:
    """The tables, for the terminal at the end of a run."""
    if "skipped" in data:
        return f"[peers] not measured: {data['skipped']}"
    return "\n\n".join(
        [
            f"Redis path, {data['date']}, {data['machine']} (ratios to pcmodel in brackets):",
            best_table(data),
            "No-op items/s:",
            _noop_table(data),
            f"{SLEEP * 1000:.0f} ms items, {SLEEP_PROCESSES * SLEEP_SLOTS} slots:",
            _sleep_table(data),
            "Idle latency:",
            _latency_table(data),
            "kill -9 mid-run:",
            _crash_table(data),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run every row and print the tables (results.json is written by `python -m benchmarks`)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_peers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks that it runs")
    args = parser.parse_args(argv)
    print(console(run(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
