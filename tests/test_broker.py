"""The job on worker processes through Redis Streams: a real redis-server, real processes.

The tests start their own redis-server on a free loopback port, in a temporary folder, with
persistence off, and stop it at the end; worker processes are started with
`python -m pcmodel.broker` (what `python -m pcmodel worker` runs) and stopped after each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")

import redis
import redis.asyncio as aioredis

import pcmodel
from pcmodel.broker import (
    Broker,
    BrokerJobSummary,
    RemoteError,
    WorkerLostError,
    live_workers,
    queue_name,
    run_job_on_broker,
    serve_worker,
    worker_main,
)
from pcmodel.broker.messages import decode_error, encode_error, encode_result
from pcmodel.controller import make_spec
from pcmodel.policies import Retry
from pcmodel.records import TaskResult
from pcmodel.stopping import StopSignal

REDIS_SERVER = shutil.which("redis-server")
ROOT = Path(__file__).resolve().parent.parent
POOL = "tests-pool"
"""The queue of the module's shared worker processes."""

needs_server = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed: run .ci/redis-setup.sh (apt-get install -y redis-server)",
)


# -- the function the worker processes run ------------------------------------------------


class QuotaError(Exception):
    """A made-up API error, to retry by name."""


_tries: Counter[int] = Counter()


async def act(params: dict[str, Any]) -> Any:
    """Sleep `params["sleep"]` seconds, then do what `params["do"]` says; return `params["n"]`."""
    await asyncio.sleep(params.get("sleep", 0))
    what, number = params.get("do"), params["n"]
    if what == "fail":
        raise ValueError(f"item {number} failed")
    if what == "quota":
        raise QuotaError(f"quota exceeded on item {number}")
    if what == "quota-once":
        _tries[number] += 1
        if _tries[number] == 1:
            raise QuotaError(f"quota exceeded on item {number}, first try")
    if what == "set":
        return {number}
    return number


def act_in_thread(params: dict[str, Any]) -> Any:
    """A plain (blocking) function: the worker runs it in a thread."""
    time.sleep(params.get("sleep", 0))
    return params["n"] * 2


def items(count: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"n": number, **fields} for number in range(count)]


# -- a real redis-server and real worker processes ---------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(folder: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of a test's own, persistence off; yields its URL and its process.

    `options` replace the loopback TCP port, e.g. `("--port", "0", "--unixsocket", path)`:
    the URL is then the socket's.
    """
    assert REDIS_SERVER is not None
    port = _free_port()
    listen = list(options) or ["--port", str(port), "--bind", "127.0.0.1"]
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen(
            [REDIS_SERVER, *listen, "--save", "", "--appendonly", "no", "--dir", str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if "--unixsocket" in listen:
            socket_path = listen[listen.index("--unixsocket") + 1]
            url = f"unix://{socket_path}?db=0"
            client = redis.Redis(unix_socket_path=socket_path)
        else:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis(host="127.0.0.1", port=port)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"redis-server did not start: {(folder / 'server.log').read_text()}")
                    time.sleep(0.02)
        finally:
            client.close()
        yield url, server
    finally:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: run .ci/redis-setup.sh (apt-get install -y redis-server)")
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url


@dataclass
class Workers:
    """Worker processes started by a test, stopped (and waited for) at its end."""

    url: str
    folder: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    on_queue: Counter[str] = field(default_factory=Counter)

    def start(
        self,
        queue: str,
        count: int = 1,
        *,
        workers: int = 10,
        function: str = "tests.test_broker:act",
        command: tuple[str, ...] = ("-m", "pcmodel.broker"),
        name_the_queue: bool = True,
    ) -> list[subprocess.Popen[bytes]]:
        """Start `count` worker processes on `queue` and wait for their heartbeats.

        With `name_the_queue=False` no `--queue` is given: `queue` must then be the one the
        worker derives from `function`.
        """
        options = ["--broker", self.url, "--function", function, "--workers", str(workers)]
        if name_the_queue:
            options += ["--queue", queue]
        started = []
        for _ in range(count):
            path = self.folder / f"worker-{len(self.processes)}.log"
            with open(path, "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, *command, *options],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self.processes.append(process)
            started.append(process)
        self.on_queue[queue] += count
        # Wait for their heartbeats (a plain client: this may run inside an async test).
        client = redis.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + 60
            while client.zcard(f"pcmodel:queue:{queue}:workers") < self.on_queue[queue]:
                assert time.monotonic() < deadline, "worker processes did not start"
                assert all(process.poll() is None for process in started), self.log(started[0])
                time.sleep(0.02)
        finally:
            client.close()
        return started

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return (self.folder / f"worker-{self.processes.index(process)}.log").read_text()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def pool(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """Two worker processes of 20 slots serving `POOL`, shared by the module's tests."""
    processes = Workers(redis_url, tmp_path_factory.mktemp("pool"))
    try:
        processes.start(POOL, 2, workers=20)
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes of the test's own."""
    processes = Workers(redis_url, tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


async def run(url: str, params: Any, *, queue: str = POOL, **options: Any) -> BrokerJobSummary:
    """Run `act` on `params` through the broker, with a hang guard."""
    settings = {
        name: options.pop(name) for name in ("visibility_timeout", "max_deliveries") if name in options
    }
    spec = make_spec(act, params, **options)
    async with asyncio.timeout(120):
        return await run_job_on_broker(spec, Broker(url, queue=queue, **settings))


async def job_keys(url: str) -> list[Any]:
    """The keys of jobs, and the lists of running jobs, left in Redis."""
    async with aioredis.Redis.from_url(url) as client:
        return [*await client.keys("pcmodel:job:*"), *await client.keys("pcmodel:queue:*:jobs")]


async def current_job_id(client: aioredis.Redis, queue: str) -> str:
    members: set[bytes] = await client.smembers(f"pcmodel:queue:{queue}:jobs")  # type: ignore[assignment]
    assert len(members) == 1
    return next(iter(members)).decode()


def partition_is_exact(summary: BrokerJobSummary, results: list[TaskResult], produced: int) -> None:
    """Every produced item is reported exactly once, or unprocessed exactly once."""
    reported = Counter(result.task_id for result in results)
    assert all(count == 1 for count in reported.values()), reported.most_common(3)
    assert summary.unprocessed_params is not None
    unprocessed = [params["n"] for params in summary.unprocessed_params]
    assert len(unprocessed) == len(set(unprocessed)) == summary.unprocessed
    assert set(reported).isdisjoint(unprocessed)
    assert sorted([*reported, *unprocessed]) == list(range(produced))
    # Each item taken back is in the trace's queue-depth rebuild: when it entered, when it left.
    assert summary.drained is not None
    assert len(summary.drained) == summary.unprocessed
    assert all(0 <= entered <= left <= summary.elapsed for entered, left in summary.drained)


# -- many processes, many items -----------------------------------------------------------


@needs_server
async def test_every_item_has_exactly_one_result_across_worker_processes(
    redis_url: str, workers: Workers
) -> None:
    queue = "tests-thousand"
    workers.start(queue, 3, workers=20)
    seen: list[TaskResult] = []
    summary = await run(
        redis_url, items(1000, sleep=0.02), queue=queue, on_task_complete=seen.append, queue_size=200
    )
    assert Counter(result.task_id for result in seen) == Counter(range(1000))
    assert (summary.tasks, summary.succeeded, summary.failed, summary.duplicates) == (1000, 1000, 0, 0)
    assert summary.results is not None
    assert [result.value for result in summary.results] == list(range(1000))
    assert [result.params["n"] for result in summary.results] == list(range(1000))
    # The processes shared the work (how evenly depends on timing), and each one that took
    # part owns a band of 20 lanes in the timeline.
    taking_part = len(summary.processes)
    assert taking_part >= 2
    assert summary.workers == 20 * taking_part
    assert sorted(process.first_lane for process in summary.processes) == list(range(0, 20 * taking_part, 20))
    assert {process.pid for process in summary.processes} <= {process.pid for process in workers.processes}
    assert sum(process.tasks for process in summary.processes) == 1000
    for result in summary.results:
        owner = summary.process_of(result.worker)
        assert owner is not None
        assert 0 <= result.enqueued_at <= result.started_at <= result.finished_at <= summary.elapsed
    assert summary.lane_labels()[20].endswith("/0")
    assert await job_keys(redis_url) == []


@needs_server
@pytest.mark.parametrize(
    "pool_size", [50, pcmodel.Adaptive(min=2, max=10, initial=10)], ids=["fixed", "adaptive"]
)
async def test_a_worker_killed_mid_job_loses_nothing(
    redis_url: str, workers: Workers, pool_size: int | pcmodel.Adaptive
) -> None:
    # An adaptive job runs its calls through a gate in each process: crash safety is the same.
    queue = f"tests-kill-{'adaptive' if isinstance(pool_size, pcmodel.Adaptive) else 'fixed'}"
    victim, *_ = workers.start(queue, 3, workers=10)
    seen: list[TaskResult] = []
    held: list[int] = []
    async with aioredis.Redis.from_url(redis_url) as client:

        async def kill_while_it_holds_items(result: TaskResult) -> None:
            seen.append(result)
            if held or len(seen) < 30:
                return
            # Kill it only while Redis shows it holding items (taken, not acknowledged).
            work = f"pcmodel:job:{{{await current_job_id(client, queue)}}}:work"
            pending = await client.xpending_range(work, "pcmodel-workers", "-", "+", 1000)
            ids = [entry["message_id"] for entry in pending if f":{victim.pid}:" in str(entry["consumer"])]
            if ids:
                os.kill(victim.pid, signal.SIGKILL)
                for entry_id in ids:
                    entries: list[Any] = await client.xrange(work, min=entry_id, max=entry_id)  # type: ignore[assignment]
                    held.extend(json.loads(fields[b"m"])["task"] for _, fields in entries)

        summary = await run(
            redis_url,
            items(900, sleep=0.05),
            queue=queue,
            on_task_complete=kill_while_it_holds_items,
            visibility_timeout=0.5,
            workers=pool_size,
        )
    assert victim.wait(10) == -signal.SIGKILL
    assert held
    assert Counter(result.task_id for result in seen) == Counter(range(900))
    assert (summary.tasks, summary.failed, summary.duplicates) == (900, 0, 0)
    # The items it held were taken over by the live processes and finished there...
    assert summary.redelivered >= 1
    assert "took over" in "".join(workers.log(process) for process in workers.processes[1:])
    # ...ahead of the items still queued, not after the queue ran dry.
    assert summary.results is not None
    starts = sorted(result.started_at for result in summary.results)
    assert max(summary.results[task].started_at for task in held) < starts[-200]
    assert await job_keys(redis_url) == []


@needs_server
async def test_a_live_worker_keeps_items_that_run_longer_than_the_visibility_timeout(
    redis_url: str, pool: Workers
) -> None:
    # Each call takes four visibility timeouts: only the heartbeats keep other processes
    # from taking the items over and running them a second time.
    summary = await run(redis_url, items(30, sleep=2.0), visibility_timeout=0.5)
    assert (summary.tasks, summary.succeeded) == (30, 30)
    assert (summary.redelivered, summary.duplicates) == (0, 0)
    assert "took over" not in "".join(pool.log(process) for process in pool.processes)


@needs_server
async def test_a_controller_killed_outright_leaves_no_keys_behind(redis_url: str, pool: Workers) -> None:
    script = (
        "import asyncio, sys\n"
        "from pcmodel.controller import make_spec\n"
        "from pcmodel.broker import Broker, run_job_on_broker\n"
        "from tests.test_broker import act\n"
        "spec = make_spec(act, [{'n': n, 'sleep': 1.0} for n in range(1000)])\n"
        f"asyncio.run(run_job_on_broker(spec, Broker({redis_url!r}, queue={POOL!r}, lease=1.0)))\n"
    )
    controller = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
    try:
        async with aioredis.Redis.from_url(redis_url) as client:
            async with asyncio.timeout(60):
                while not await client.keys("pcmodel:job:*"):  # noqa: ASYNC110 - polling Redis
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.5)  # the workers are at it
            controller.send_signal(signal.SIGKILL)
            assert await controller.wait() == -signal.SIGKILL
            # The keys expire with the lease; the workers drop the job and its listing.
            async with asyncio.timeout(30):
                while await job_keys(redis_url):  # noqa: ASYNC110 - polling Redis
                    await asyncio.sleep(0.05)
    finally:
        if controller.returncode is None:
            controller.kill()
            await controller.wait()
    # The workers go on serving.
    assert (await run(redis_url, items(5))).succeeded == 5


@needs_server
async def test_sigterm_finishes_the_items_in_flight_and_exits_0(redis_url: str, workers: Workers) -> None:
    queue = "tests-sigterm"
    leaving, _staying = workers.start(queue, 2, workers=5)
    loop = asyncio.get_running_loop()
    counted: list[TaskResult] = []
    signalled_at: list[float] = []

    def signal_at_ten(result: TaskResult) -> None:
        counted.append(result)
        if len(counted) == 10:
            leaving.send_signal(signal.SIGTERM)
            # Job times count from the job's start, a little after `called`: this is no
            # earlier than the signal on the job's clock.
            signalled_at.append(loop.time() - called)

    # Durations that differ keep the slots out of step: the process is busy at the signal.
    params = [{"n": n, "sleep": 0.2 + 0.03 * (n % 7)} for n in range(60)]
    called = loop.time()
    # A long visibility timeout: an item left behind would hold the job up for a minute.
    summary = await run(
        redis_url, params, queue=queue, on_task_complete=signal_at_ten, visibility_timeout=60.0
    )
    assert leaving.wait(20) == 0
    assert "stopped after" in workers.log(leaving)
    assert Counter(result.task_id for result in counted) == Counter(range(60))
    assert (summary.failed, summary.redelivered, summary.duplicates) == (0, 0, 0)
    # The items it held at the signal ran to the end, and their results count.
    process = next(process for process in summary.processes if process.pid == leaving.pid)
    assert summary.results is not None
    finished_after_the_signal = [
        result
        for result in summary.results
        if result.worker in process.lanes and result.finished_at > signalled_at[0]
    ]
    assert finished_after_the_signal
    assert await job_keys(redis_url) == []


@needs_server
async def test_unfinished_items_never_exceed_queue_size(redis_url: str, pool: Workers) -> None:
    deepest = 0
    async with aioredis.Redis.from_url(redis_url) as client:
        work_key = ""

        async def measure(result: TaskResult) -> None:
            nonlocal deepest, work_key
            if not work_key:
                job_id = await current_job_id(client, POOL)
                work_key = f"pcmodel:job:{{{job_id}}}:work"
            deepest = max(deepest, await client.xlen(work_key))

        summary = await run(redis_url, items(300, sleep=0.01), on_task_complete=measure, queue_size=15)
    assert summary.tasks == 300
    assert 0 < deepest <= 15
    assert summary.max_queue_depth == 15
    # Waiting for a slot is part of being unfinished: the rebuilt depth stays within it too.
    assert summary.queue_depth is not None
    assert max(sample.depth for sample in summary.queue_depth) <= 15
    assert summary.producer_wait > 0
    assert summary.producer_blocked


# -- what travels -------------------------------------------------------------------------


@needs_server
async def test_failures_come_back_as_exceptions(redis_url: str, pool: Workers) -> None:
    params = [{"n": 0}, {"n": 1, "do": "fail"}, {"n": 2, "do": "quota"}, {"n": 3, "do": "set"}]
    summary = await run(redis_url, params)
    assert summary.results is not None
    ok, failed, quota, not_json = summary.results
    assert (ok.ok, ok.value) == (True, 0)
    assert isinstance(failed.error, ValueError)
    assert str(failed.error) == "item 1 failed"
    assert any("raised in worker process" in note for note in failed.error.__notes__)
    assert isinstance(quota.error, RemoteError)
    assert quota.error.type_name == "tests.test_broker.QuotaError"
    assert "builtins.Exception" in quota.error.type_names
    assert "quota exceeded on item 2" in quota.error.remote_traceback
    assert isinstance(not_json.error, TypeError)
    assert "which JSON cannot carry" in str(not_json.error)
    assert (summary.tasks, summary.failed) == (4, 3)


@needs_server
async def test_params_that_json_cannot_carry_fail_alone(redis_url: str, pool: Workers) -> None:
    params: list[Any] = [{"n": 0}, {"n": 1, "extra": {1, 2}}, {"n": 2}]
    summary = await run(redis_url, params)
    assert summary.results is not None
    assert [result.ok for result in summary.results] == [True, False, True]
    bad = summary.results[1]
    assert isinstance(bad.error, TypeError)
    assert "cannot travel to a worker process as JSON" in str(bad.error)
    assert (bad.worker, bad.attempts) == (-1, 0)
    assert bad.params == params[1]  # the original object, not a copy


@needs_server
async def test_malformed_work_entries_are_counted_apart_and_workers_go_on(
    redis_url: str, pool: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    injected = False
    async with aioredis.Redis.from_url(redis_url) as client:

        async def inject(result: TaskResult) -> None:
            nonlocal injected
            if injected:
                return
            injected = True
            job_id = await current_job_id(client, POOL)
            work = f"pcmodel:job:{{{job_id}}}:work"
            await client.xadd(work, {"m": b"\x80\x81 not json"})
            await client.xadd(work, {"other": "field"})
            await client.xadd(work, {"m": json.dumps({"task": "seven", "params": 7})})

        with caplog.at_level("WARNING", logger="pcmodel.broker"):
            summary = await run(redis_url, items(100, sleep=0.02), on_task_complete=inject, queue_size=10)
    assert summary.results is not None
    # Each injected entry is counted once, apart from the job's tasks, and runs nothing.
    assert (summary.tasks, summary.failed, summary.malformed) == (100, 0, 3)
    assert [result.task_id for result in summary.results] == list(range(100))
    assert summary.scalars()["malformed"] == 3
    assert caplog.text.count("is not a pcmodel message") == 1
    assert all(process.poll() is None for process in pool.processes)


@needs_server
async def test_a_result_reported_twice_reaches_the_callback_once(redis_url: str, pool: Workers) -> None:
    calls: Counter[int] = Counter()
    async with aioredis.Redis.from_url(redis_url) as client:

        async def duplicate_first(result: TaskResult) -> None:
            calls[result.task_id] += 1
            if sum(calls.values()) == 1:
                # What a worker thought dead would write when it finishes after all.
                job_id = await current_job_id(client, POOL)
                message = {"task": result.task_id, "process": "elsewhere:1:x", "slot": 0, "slots": 1}
                message.update(started=0.0, finished=0.0, attempts=1, value="late")
                await client.xadd(f"pcmodel:job:{{{job_id}}}:results", {"r": encode_result(message)})

        summary = await run(redis_url, items(50, sleep=0.02), on_task_complete=duplicate_first, queue_size=10)
    assert calls == Counter(range(50))
    assert summary.duplicates == 1
    assert summary.results is not None
    assert "late" not in [result.value for result in summary.results]


# -- the job's controls, on the worker side -----------------------------------------------


@needs_server
async def test_retries_and_timeout_apply_in_the_workers(redis_url: str, pool: Workers) -> None:
    params = [
        {"n": 100, "do": "quota-once"},
        {"n": 101, "do": "fail"},
        {"n": 102, "sleep": 5.0},
        {"n": 103},
    ]
    summary = await run(
        redis_url, params, retries=Retry(2, on=(QuotaError,), backoff=0.01, seed=1), timeout=0.5
    )
    assert summary.results is not None
    retried, not_retried, too_slow, plain = summary.results
    assert (retried.ok, retried.value, retried.attempts) == (True, 100, 2)
    assert (not_retried.ok, not_retried.attempts) == (False, 1)  # ValueError is not a QuotaError
    assert isinstance(too_slow.error, TimeoutError)
    assert str(too_slow.error) == "the call took longer than the timeout of 0.5 s"
    assert too_slow.attempts == 1
    assert (plain.ok, plain.attempts) == (True, 1)
    assert summary.retries == 1


@needs_server
async def test_rate_limit_is_shared_by_every_worker_process(redis_url: str, workers: Workers) -> None:
    # Two processes of one slot each: neither can hold more than one item, so both take part,
    # and a limit of their own each would let them through twice as fast.
    queue = "tests-rate"
    workers.start(queue, 2, workers=1)
    summary = await run(redis_url, items(31), queue=queue, max_per_second=20, burst=1)
    assert summary.results is not None
    # The calls return at once, so each finishes when the shared limit lets it start: 31 calls
    # at 20 per second take at least 1.5 s from the first to the last (at 40 per second, 0.75 s).
    finishes = sorted(result.finished_at for result in summary.results)
    assert finishes[-1] - finishes[0] >= 1.4
    assert len(summary.processes) == 2


@needs_server
async def test_fail_fast_takes_back_queued_items_and_cancels_calls_in_flight(
    redis_url: str, pool: Workers
) -> None:
    params = [{"n": n, "sleep": 0.0 if n == 5 else 2.0, "do": "fail" if n == 5 else None} for n in range(300)]
    seen: list[TaskResult] = []
    summary = await run(redis_url, params, on_task_complete=seen.append, fail_fast=True, queue_size=60)
    assert summary.stop_reason == "fail_fast"
    assert isinstance(summary.error, ValueError)
    assert summary.cancelled >= 1
    assert all(isinstance(result.error, asyncio.CancelledError) for result in seen if result.task_id != 5)
    assert summary.unprocessed >= 1
    partition_is_exact(summary, seen, summary.tasks + summary.unprocessed)
    assert await job_keys(redis_url) == []


@needs_server
async def test_stop_lets_calls_in_flight_finish(redis_url: str, pool: Workers) -> None:
    stop = StopSignal()
    seen: list[TaskResult] = []

    def stop_at_five(result: TaskResult) -> None:
        seen.append(result)
        if len(seen) == 5:
            stop.set()

    summary = await run(
        redis_url, items(400, sleep=0.1), on_task_complete=stop_at_five, stop=stop, queue_size=100
    )
    assert summary.stop_reason == "stop"
    assert summary.cancelled == summary.failed == 0
    assert summary.unprocessed > 0
    partition_is_exact(summary, seen, summary.tasks + summary.unprocessed)


@needs_server
async def test_cancelling_the_job_deletes_its_keys(redis_url: str, pool: Workers) -> None:
    first = asyncio.Event()
    task = asyncio.create_task(
        run(redis_url, items(200, sleep=0.5), on_task_complete=lambda _result: first.set())
    )
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await job_keys(redis_url) == []
    # The workers drop what they held for it and serve the next job.
    summary = await run(redis_url, items(10))
    assert summary.succeeded == 10
    assert await job_keys(redis_url) == []


@needs_server
async def test_a_plain_function_runs_in_threads(redis_url: str, workers: Workers) -> None:
    queue = "tests-threads"
    workers.start(queue, 1, workers=4, function="tests.test_broker:act_in_thread")
    summary = await run(redis_url, items(12, sleep=0.05), queue=queue)
    assert summary.results is not None
    assert [result.value for result in summary.results] == [2 * n for n in range(12)]
    assert summary.workers == 4


@needs_server
async def test_an_item_whose_workers_keep_dying_fails_after_max_deliveries(redis_url: str) -> None:
    # A consumer that takes an item and never answers stands for a worker killed by it; with
    # max_deliveries=1 the process that takes it over reports it instead of running it.
    queue = "tests-max-deliveries"
    stop = asyncio.Event()
    held = asyncio.Event()
    async with aioredis.Redis.from_url(redis_url) as client:

        async def take_one_and_die() -> None:
            # Polling Redis: nothing here could set an Event when the job appears.
            while not await client.smembers(f"pcmodel:queue:{queue}:jobs"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            work = f"pcmodel:job:{{{await current_job_id(client, queue)}}}:work"
            while not await client.xreadgroup("pcmodel-workers", "ghost", {work: ">"}, count=1):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            held.set()

        async def serve_after_the_ghost() -> None:
            await held.wait()
            await serve_worker(redis_url, act, workers=2, queue=queue, stop=stop, poll=0.05)

        ghost = asyncio.create_task(take_one_and_die())
        worker = asyncio.create_task(serve_after_the_ghost())
        try:
            summary = await run(redis_url, items(3), queue=queue, visibility_timeout=0.2, max_deliveries=1)
        finally:
            stop.set()
            await ghost
            await worker
    assert summary.results is not None
    lost = [result for result in summary.results if not result.ok]
    assert len(lost) == 1
    assert isinstance(lost[0].error, WorkerLostError)
    assert "was delivered 2 times" in str(lost[0].error)
    assert lost[0].attempts == 0
    assert summary.redelivered == 1
    assert sorted(result.value for result in summary.results if result.ok) == sorted(
        {0, 1, 2} - {lost[0].task_id}
    )


async def _blocked_reading_news(client: aioredis.Redis) -> None:
    """Wait until a client is blocked reading a stream (`XREAD`): the idle worker's wait for news."""
    while True:
        clients = await client.client_list()
        if any(entry["cmd"] == "xread" and "b" in entry["flags"] for entry in clients):
            return
        await asyncio.sleep(0.01)


@needs_server
async def test_an_idle_worker_starts_on_each_new_job_at_once_not_at_its_next_look(redis_url: str) -> None:
    # poll=60: a worker that only looked for jobs every poll interval would take a minute to
    # start on each job; the job's announcement on the queue's news wakes it at once.
    queue = "tests-idle"
    async with aioredis.Redis.from_url(redis_url) as client:
        worker = asyncio.create_task(serve_worker(redis_url, act, workers=2, queue=queue, poll=60))
        try:
            for _ in range(3):
                async with asyncio.timeout(20):
                    await _blocked_reading_news(client)
                    summary = await run(redis_url, items(2), queue=queue)
                assert summary.results is not None
                assert sorted(result.value for result in summary.results) == [0, 1]
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        # No job runs on the queue: its news went with the last one.
        assert await client.keys(f"pcmodel:queue:{queue}:news") == []


@needs_server
async def test_keys_are_cleaned_up_after_jobs_and_workers(redis_url: str, workers: Workers) -> None:
    queue = "tests-cleanup"
    workers.start(queue, 2, workers=5)
    summary = await run(redis_url, items(30, sleep=0.01), queue=queue)
    assert summary.tasks == 30
    assert await job_keys(redis_url) == []
    assert len(await live_workers(redis_url, queue)) == 2
    workers.stop_all()
    assert [process.returncode for process in workers.processes] == [0, 0]
    async with aioredis.Redis.from_url(redis_url) as client:
        assert await client.keys(f"pcmodel:queue:{queue}:*") == []
        leftovers = [str(key) for key in await client.keys("pcmodel:worker:*")]
    for process in workers.processes:
        assert not [key for key in leftovers if f":{process.pid}:" in key]


@needs_server
async def test_a_job_with_no_items_ends_at_once_and_warns_without_workers(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="pcmodel.broker"):
        summary = await run(redis_url, [], queue="tests-nobody")
    assert (summary.tasks, summary.processes) == (0, ())
    assert "no worker process serves queue 'tests-nobody'" in caplog.text
    assert await job_keys(redis_url) == []


# -- the entry points the package wires to the broker -------------------------------------

wired = pytest.mark.skipif(
    "broker" not in inspect.signature(pcmodel.run_job).parameters,
    reason="run_job(..., broker=URL) is not wired to pcmodel.broker yet",
)


@needs_server
@wired
def test_run_job_with_a_broker_uses_the_workers_named_after_the_function(
    redis_url: str, workers: Workers
) -> None:
    # `python -m pcmodel worker` with no --queue serves the function's module:qualname, which
    # is also where run_job(act, ..., broker=URL) sends its items.
    workers.start(queue_name(act), 2, workers=5, command=("-m", "pcmodel", "worker"), name_the_queue=False)
    seen: list[int] = []
    summary = pcmodel.run_job(  # type: ignore[call-arg,unused-ignore]
        act,
        items(40, sleep=0.05),
        on_task_complete=lambda result: seen.append(result.task_id),
        broker=redis_url,
    )
    assert sorted(seen) == list(range(40))
    assert isinstance(summary, BrokerJobSummary)
    assert summary.queue == "tests.test_broker:act"
    assert {process.pid for process in summary.processes} <= {process.pid for process in workers.processes}
    with pytest.raises(ValueError, match="clock='virtual' cannot drive worker processes"):
        pcmodel.run_job(act, [1], clock="virtual", broker=redis_url)  # type: ignore[call-arg,unused-ignore]


@wired
def test_the_worker_command_is_part_of_the_command_line() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pcmodel", "worker", "--help"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0
    assert "usage: pcmodel worker [-h] --broker URL --function MODULE:NAME" in completed.stdout


# -- checks that need no server -----------------------------------------------------------


async def test_a_virtual_clock_is_refused() -> None:
    spec = make_spec(act, [1], clock="virtual")
    with pytest.raises(ValueError, match="clock='virtual' cannot drive worker processes"):
        await run_job_on_broker(spec, Broker("redis://127.0.0.1:1/0", queue="q"))


async def test_a_retry_rule_that_is_a_function_cannot_travel() -> None:
    spec = make_spec(act, [1], retries=Retry(2, on=lambda error: True))
    with pytest.raises(ValueError, match="decides with a function, which cannot travel"):
        await run_job_on_broker(spec, Broker("redis://127.0.0.1:1/0", queue="q"))


async def test_an_unreachable_broker_is_a_clear_connection_error() -> None:
    spec = make_spec(act, [1])
    with pytest.raises(ConnectionError, match=r"cannot reach the broker at redis://127\.0\.0\.1:"):
        await run_job_on_broker(spec, Broker(f"redis://127.0.0.1:{_free_port()}/0", queue="q"))


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        (6379, TypeError, "broker must be a Redis URL string, got 6379"),
        ("http://example.com", ValueError, "broker must be a Redis URL such as"),
    ],
)
async def test_bad_broker_urls_are_refused(url: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        await run_job_on_broker(make_spec(act, [1]), url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"visibility_timeout": 0}, ValueError, "visibility_timeout must be a finite number > 0, got 0"),
        ({"lease": "long"}, TypeError, "lease must be a number of seconds, got 'long'"),
        ({"max_deliveries": 0}, ValueError, "max_deliveries must be >= 1, got 0"),
        ({"queue": ""}, ValueError, "queue must be a non-empty string or None, got ''"),
    ],
)
def test_broker_settings_are_checked(settings: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Broker("redis://127.0.0.1:6379/0", **settings)


def test_a_broker_hides_its_password() -> None:
    assert "s3cret" not in repr(Broker("redis://user:s3cret@db.example:6379/0"))


def test_importing_the_broker_package_does_not_import_redis() -> None:
    code = "import sys, pcmodel.broker; b = pcmodel.broker.Broker('redis://h:1/0'); print('redis' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert completed.stdout.strip() == "False"


def test_queue_names_come_from_importable_functions() -> None:
    assert queue_name(act) == "tests.test_broker:act"
    with pytest.raises(ValueError, match="define it at the top level of a module"):
        queue_name(lambda params: params)
    main_function = types.FunctionType(act.__code__, {})
    main_function.__module__ = "__main__"
    with pytest.raises(ValueError, match="is defined in __main__"):
        queue_name(main_function)


def test_errors_travel_by_name_never_by_import() -> None:
    rebuilt = decode_error(encode_error(KeyError("car 7")), "here:1:x")
    assert isinstance(rebuilt, KeyError)
    custom = decode_error(encode_error(QuotaError("slow down")), "here:1:x")
    assert isinstance(custom, RemoteError)
    assert str(custom) == "tests.test_broker.QuotaError: slow down"
    assert isinstance(decode_error(encode_error(asyncio.CancelledError()), "x"), asyncio.CancelledError)
    # A built-in type that needs more arguments is kept by name.
    strange = decode_error(encode_error(UnicodeDecodeError("utf-8", b"\x80", 0, 1, "bad")), "x")
    assert isinstance(strange, RemoteError)
    assert strange.type_name == "builtins.UnicodeDecodeError"
    # A message never plants an interrupt, an exit or a StopIteration in the job: those are
    # kept by name.
    for dangerous in (KeyboardInterrupt(), SystemExit(2), StopIteration(), GeneratorExit()):
        rebuilt = decode_error(encode_error(dangerous), "x")
        assert isinstance(rebuilt, RemoteError)
        assert rebuilt.type_name == f"builtins.{type(dangerous).__name__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--function", "tests.test_broker:act"], "the following arguments are required: --broker"),
        (["--broker", "redis://127.0.0.1:1/0", "--function", "act"], "must be 'package.module:name'"),
        (["--broker", "redis://127.0.0.1:1/0", "--function", "tests.nowhere:act"], "cannot import"),
        (["--broker", "redis://127.0.0.1:1/0", "--function", "tests.test_broker:POOL"], "not callable"),
        (
            ["--broker", "redis://127.0.0.1:1/0", "--function", "tests.test_broker:act", "--workers", "0"],
            "--workers must be >= 1, got 0",
        ),
        (
            [
                *("--broker", "redis://127.0.0.1:1/0", "--function", "tests.test_broker:act"),
                *("--round-trip-timeout", "0"),
            ],
            "--round-trip-timeout must be a finite number > 0, got 0.0",
        ),
    ],
)
def test_worker_command_line_rejects_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        worker_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_worker_exits_1_when_the_broker_is_unreachable() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pcmodel.broker",
            "--broker",
            f"redis://127.0.0.1:{_free_port()}/0",
            "--function",
            "tests.test_broker:act",
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert "cannot reach the broker at redis://127.0.0.1:" in completed.stderr
