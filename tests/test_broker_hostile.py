"""The broker path under a hostile user: odd exceptions, odd values, odd messages, odd callbacks.

Every test runs real worker processes on a redis-server of the module's own (see
`tests.test_broker`), and every job runs under a time limit, so a regression fails instead of
hanging the suite.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")

import redis.asyncio as aioredis

import pcmodel
from pcmodel.broker import Broker, BrokerJobSummary, WorkerLostError, serve_worker
from pcmodel.records import JobSummary, TaskResult
from tests.test_broker import ROOT, Workers, current_job_id, job_keys, needs_server, redis_url

__all__ = ["odd", "odd_in_thread", "redis_url"]

QUEUE = "tests-hostile"
THREADS = "tests-hostile-threads"


def _raise(what: str) -> None:
    if what == "stop-iteration":
        next(iter([]))
    if what == "stop-async-iteration":
        raise StopAsyncIteration("no more")
    if what == "exit":
        raise SystemExit(3)
    if what == "interrupt":
        raise KeyboardInterrupt


def _value(what: str, number: int) -> Any:
    if what == "deep":
        # Deeper than json reads or writes on any Python pcmodel supports (5,000 is enough
        # on 3.11, not on 3.13).
        value: Any = number
        for _ in range(100_000):
            value = [value]
        return value
    if what == "not-json":
        return object()
    return number


async def odd(params: dict[str, Any]) -> Any:
    """Do what `params["do"]` says, the way a hostile function would; else return `params["n"]`."""
    what, number = params.get("do", ""), params["n"]
    await asyncio.sleep(params.get("sleep", 0))
    if what == "own-cancel":
        # Awaiting something another task cancelled: a CancelledError of the function's own.
        other = asyncio.get_running_loop().create_future()
        other.cancel()
        await other
    _raise(what)
    return _value(what, number)


def odd_in_thread(params: dict[str, Any]) -> Any:
    """`odd` as a plain function: the worker process runs it in a thread."""
    what, number = params.get("do", ""), params["n"]
    _raise(what)
    return _value(what, number)


def plan(*odd_ones: str, count: int = 8) -> list[dict[str, Any]]:
    """`count` items; the first ones do the odd things named, the rest return their number."""
    return [{"n": n, "do": odd_ones[n] if n < len(odd_ones) else ""} for n in range(count)]


@pytest.fixture(scope="module")
def processes(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """One worker process of 2 slots per queue: a dead slot or a dead process shows."""
    started = Workers(redis_url, tmp_path_factory.mktemp("hostile"))
    try:
        started.start(QUEUE, 1, workers=2, function="tests.test_broker_hostile:odd")
        started.start(THREADS, 1, workers=2, function="tests.test_broker_hostile:odd_in_thread")
        yield started
    finally:
        started.stop_all()


async def run(
    url: str, params: list[dict[str, Any]], *, queue: str = QUEUE, **options: Any
) -> BrokerJobSummary:
    """`run_job_async(odd, ...)` on the broker, under a time limit."""
    async with asyncio.timeout(60):
        summary = await pcmodel.run_job_async(odd, params, broker=Broker(url, queue=queue), **options)
    assert isinstance(summary, BrokerJobSummary)
    return summary


def alive(processes: Workers) -> bool:
    return all(process.poll() is None for process in processes.processes)


def by_task(summary: JobSummary) -> list[TaskResult]:
    assert summary.results is not None
    assert [result.task_id for result in summary.results] == list(range(summary.tasks))
    return list(summary.results)


# -- odd exceptions -----------------------------------------------------------------------


@needs_server
@pytest.mark.parametrize("queue", [QUEUE, THREADS])
async def test_stop_iteration_fails_its_item_and_the_job_goes_on(
    redis_url: str, processes: Workers, queue: str
) -> None:
    summary = await run(redis_url, plan("stop-iteration", "stop-async-iteration"), queue=queue)
    stop, stop_async, *rest = by_task(summary)
    assert isinstance(stop.error, RuntimeError)
    assert "StopIteration" in str(stop.error)
    assert isinstance(stop_async.error, StopAsyncIteration)
    assert [result.value for result in rest] == list(range(2, 8))
    assert (summary.failed, summary.cancelled) == (2, 0)
    assert alive(processes)


@needs_server
async def test_a_cancelled_error_of_the_functions_own_is_a_plain_failure(
    redis_url: str, processes: Workers
) -> None:
    summary = await run(redis_url, plan("own-cancel", "own-cancel", "own-cancel", count=12))
    results = by_task(summary)
    assert all(isinstance(result.error, asyncio.CancelledError) for result in results[:3])
    assert [result.value for result in results[3:]] == list(range(3, 12))
    # No fail-fast, no cancel of the job: nothing counts as cancelled, and the slots go on.
    assert (summary.failed, summary.cancelled, summary.stop_reason) == (3, 0, None)
    assert alive(processes)


@needs_server
@pytest.mark.parametrize("queue", [QUEUE, THREADS])
async def test_exit_and_interrupt_from_the_function_fail_their_item_not_the_worker(
    redis_url: str, processes: Workers, queue: str
) -> None:
    summary = await run(redis_url, plan("exit", "interrupt"), queue=queue)
    exited, interrupted, *rest = by_task(summary)
    assert isinstance(exited.error, RuntimeError)
    assert "the function raised SystemExit(3)" in str(exited.error)
    assert isinstance(interrupted.error, RuntimeError)
    assert "the function raised KeyboardInterrupt" in str(interrupted.error)
    assert [result.value for result in rest] == list(range(2, 8))
    assert alive(processes)


# -- odd values ---------------------------------------------------------------------------


@needs_server
@pytest.mark.parametrize("queue", [QUEUE, THREADS])
async def test_a_value_that_cannot_travel_fails_its_item_not_the_worker(
    redis_url: str, processes: Workers, queue: str
) -> None:
    summary = await run(redis_url, plan("deep", "not-json"), queue=queue)
    deep, not_json, *rest = by_task(summary)
    assert isinstance(deep.error, TypeError)
    assert "nested too deep" in str(deep.error)
    assert isinstance(not_json.error, TypeError)
    assert "the function returned object" in str(not_json.error)
    assert [result.value for result in rest] == list(range(2, 8))
    assert alive(processes)


# -- odd messages -------------------------------------------------------------------------


@needs_server
async def test_a_result_too_deep_to_read_here_fails_its_task_instead_of_leaving_it_waiting(
    redis_url: str, processes: Workers
) -> None:
    # What a worker on a newer Python can write (json there reads and writes deeper than here):
    # the controller cannot read the value, but the task id comes first, so the task fails.
    async with aioredis.Redis.from_url(redis_url) as client:

        async def inject(result: TaskResult) -> None:
            if result.task_id == 1:
                job_id = await current_job_id(client, QUEUE)
                deep = b'{"task":0,"entry":"1-0","value":' + b"[" * 100_000
                await client.xadd(f"pcmodel:job:{{{job_id}}}:results", {b"r": deep})

        summary = await run(redis_url, [{"n": 0, "sleep": 2.0}, {"n": 1}, {"n": 2}], on_task_complete=inject)
    first, *rest = by_task(summary)
    assert isinstance(first.error, TypeError)
    assert "the result of task 0 cannot be read here" in str(first.error)
    assert [result.value for result in rest] == [1, 2]
    # The entry counts as malformed, and the job does not wait for the call still running.
    assert (summary.tasks, summary.failed, summary.malformed) == (3, 1, 1)
    assert alive(processes)


_HOSTILE_RESULTS: list[dict[bytes, bytes]] = [
    {b"r": b"[" * 100_000},
    {b"r": json.dumps({"task": 1, "process": "x:1:y", "slot": 0, "started": "abc", "finished": 0}).encode()},
    {b"r": json.dumps({"process": "x:1:y", "slot": 0, "started": 0, "finished": 0}).encode()},
    {
        b"r": json.dumps(
            {"task": 2, "process": "x:1:y", "slot": 0, "slots": 10**12, "started": 0, "finished": 0}
        ).encode()
    },
    {b"r": json.dumps({"task": True, "process": "x:1:y", "slot": 0, "started": 0, "finished": 0}).encode()},
    {b"r": b"\xff\xfe\x00"},
    {b"r": b"[1, 2]"},
    {b"other": b"field"},
    # Several lines, none a result: the entry counts once.
    {b"r": b"not json\n[1, 2]\n"},
]
_HOSTILE_WORK: list[dict[bytes, bytes]] = [
    {b"m": b"[" * 100_000},
    {b"m": b"[" * 100_000 + b"]" * 100_000},
    {b"m": b"\x00\x01 not json"},
    {b"m": json.dumps({"task": -4, "params": 1}).encode()},
]


@needs_server
async def test_hostile_entries_in_both_streams_are_counted_once_and_nothing_dies(
    redis_url: str, processes: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    injected = asyncio.Event()
    seen: list[TaskResult] = []
    async with aioredis.Redis.from_url(redis_url) as client:

        async def inject(result: TaskResult) -> None:
            seen.append(result)
            if injected.is_set():
                return
            injected.set()
            job_id = await current_job_id(client, QUEUE)
            for fields in _HOSTILE_RESULTS:
                await client.xadd(f"pcmodel:job:{{{job_id}}}:results", fields)  # type: ignore[arg-type]
            for fields in _HOSTILE_WORK:
                await client.xadd(f"pcmodel:job:{{{job_id}}}:work", fields)  # type: ignore[arg-type]

        with caplog.at_level("WARNING", logger="pcmodel.broker"):
            summary = await run(
                # queue_size=2: the injected work entries wait behind at most two real items,
                # so they are read before the job's last items are even sent.
                redis_url,
                [{"n": n, "sleep": 0.05} for n in range(20)],
                on_task_complete=inject,
                queue_size=2,
            )
    assert Counter(result.task_id for result in seen) == Counter(range(20))
    assert [result.value for result in by_task(summary)] == list(range(20))
    assert (summary.tasks, summary.failed) == (20, 0)
    assert summary.malformed == len(_HOSTILE_RESULTS) + len(_HOSTILE_WORK)
    assert summary.workers == 2  # no lane band made up by a hostile result
    assert caplog.text.count("is not a pcmodel message") == 1
    assert alive(processes)
    assert await job_keys(redis_url) == []


@needs_server
async def test_a_results_stream_replaced_mid_job_fails_the_job_not_the_workers(
    redis_url: str, processes: Workers
) -> None:
    async with aioredis.Redis.from_url(redis_url) as client:

        async def replace_the_stream(result: TaskResult) -> None:
            if result.task_id == 0:
                job_id = await current_job_id(client, QUEUE)
                await client.delete(f"pcmodel:job:{{{job_id}}}:results")
                await client.set(f"pcmodel:job:{{{job_id}}}:results", "not a stream")

        with pytest.raises(ConnectionError, match=r"failed during job \w+: .*WRONGTYPE"):
            await run(
                redis_url, [{"n": n, "sleep": 0.1} for n in range(10)], on_task_complete=replace_the_stream
            )
    assert await job_keys(redis_url) == []
    assert alive(processes)
    # The workers serve the next job as usual.
    assert (await run(redis_url, plan())).succeeded == 8


@needs_server
async def test_a_poison_entry_is_given_up_after_max_deliveries_without_being_read(redis_url: str) -> None:
    # A consumer that takes every entry and never answers stands for a worker the poison
    # killed; the process that takes them over after the visibility timeout gives them all up
    # (max_deliveries=1) without reading them: the real items fail with WorkerLostError, and
    # the poison, which the controller never sent, is counted as malformed.
    queue = "tests-poison"
    stop = asyncio.Event()
    stats: list[Any] = []
    async with aioredis.Redis.from_url(redis_url) as client:

        async def poison_then_serve() -> None:
            while not await client.smembers(f"pcmodel:queue:{queue}:jobs"):  # noqa: ASYNC110 - polling Redis
                await asyncio.sleep(0.01)
            work = f"pcmodel:job:{{{await current_job_id(client, queue)}}}:work"
            while await client.xlen(work) < 3:  # noqa: ASYNC110 - polling Redis
                await asyncio.sleep(0.01)
            await client.xadd(work, {b"m": b"[" * 100_000})
            await client.xreadgroup("pcmodel-workers", "ghost", {work: ">"})
            await serve_worker(
                redis_url, odd, workers=2, queue=queue, stop=stop, poll=0.05, on_ready=stats.append
            )

        worker = asyncio.create_task(poison_then_serve())
        try:
            async with asyncio.timeout(60):
                summary = await pcmodel.run_job_async(
                    odd,
                    [{"n": n} for n in range(3)],
                    broker=Broker(redis_url, queue=queue, visibility_timeout=0.2, max_deliveries=1),
                )
        finally:
            stop.set()
            await worker
    assert isinstance(summary, BrokerJobSummary)
    results = by_task(summary)
    assert all(isinstance(result.error, WorkerLostError) for result in results)
    assert all("delivered 2 times" in str(result.error) for result in results)
    assert (summary.tasks, summary.failed, summary.malformed) == (3, 3, 1)
    assert stats[0].malformed == 0  # the worker never read the poison
    assert stats[0].taken_over == 4


# -- odd callbacks ------------------------------------------------------------------------


@needs_server
async def test_on_job_complete_raising_still_returns_the_summary(
    redis_url: str, processes: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(summary: JobSummary) -> None:
        raise ValueError("the report could not be saved")

    with caplog.at_level("ERROR"):
        summary = await run(redis_url, plan(), on_job_complete=fail)
    assert (summary.tasks, summary.succeeded, summary.callback_errors) == (8, 8, 1)
    logged = [record for record in caplog.records if "on_job_complete raised" in record.getMessage()]
    assert len(logged) == 1
    assert await job_keys(redis_url) == []


_SCRIPT = """
import gc, sys
import pcmodel
from pcmodel.broker import Broker
from tests.test_broker_hostile import odd

def on_job_complete(summary):
    raise {error}

def on_task_complete(result):
    if {in_task}:
        raise {error}

try:
    pcmodel.run_job(odd, [{{"n": n, "sleep": 0.05}} for n in range(20)],
                    on_task_complete=on_task_complete, on_job_complete=on_job_complete,
                    broker=Broker({url!r}, queue={queue!r}))
except {caught} as error:
    print("caught", type(error).__name__)
gc.collect()
"""


@needs_server
@pytest.mark.parametrize("error", ["KeyboardInterrupt", "SystemExit(4)"])
@pytest.mark.parametrize("in_task", [False, True], ids=["on_job_complete", "on_task_complete"])
def test_interrupt_and_exit_from_a_callback_propagate_after_the_job_is_wound_down(
    redis_url: str, processes: Workers, error: str, in_task: bool
) -> None:
    caught = error.partition("(")[0]
    script = _SCRIPT.format(error=error, in_task=in_task, url=redis_url, queue=QUEUE, caught=caught)
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert completed.stdout.strip() == f"caught {caught}", completed.stderr
    assert "never retrieved" not in completed.stderr
    assert "Traceback" not in completed.stderr
    assert asyncio.run(job_keys(redis_url)) == []
    assert alive(processes)


# -- the worker command -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "raised"),
    [
        ("1 / 0", "ZeroDivisionError: division by zero"),
        ("raise ValueError('no config')", "ValueError: no config"),
        (
            "import no_such_dependency_for_tests",
            "ModuleNotFoundError: No module named 'no_such_dependency_for_tests'",
        ),
    ],
)
def test_a_function_whose_module_raises_on_import_is_one_clear_error(
    code: str,
    raised: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = f"exploding_module_{abs(hash(code))}"
    (tmp_path / f"{module}.py").write_text(f"def f(x):\n    return x\n\n{code}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        pcmodel.broker.worker_main(["--broker", "redis://127.0.0.1:1/0", "--function", f"{module}:f"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"cannot import --function '{module}:f': importing module '{module}' raised {raised}" in error
    assert f"{module}.py, line 4)" in error
    assert "Traceback" not in error


@needs_server
def test_a_database_the_server_does_not_have_is_a_clear_error(redis_url: str) -> None:
    bad = redis_url.rpartition("/")[0] + "/99999"
    with pytest.raises(ConnectionError, match=r"the broker at redis://127\.0\.0\.1:\d+/99999 refused"):
        pcmodel.run_job(odd, [{"n": 1}], broker=bad)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pcmodel.broker",
            "--broker",
            bad,
            "--function",
            "tests.test_broker_hostile:odd",
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert f"the broker at {bad} refused the connection" in completed.stderr
    assert "database number" in completed.stderr
    assert "Traceback" not in completed.stderr


@needs_server
async def test_a_news_key_of_the_wrong_type_costs_the_announcement_not_the_job(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # `SET pcmodel:queue:Q:news x` once failed every job on the queue at its start, with a
    # ConnectionError, leaving the keys the job had made: announcing is only a speed-up.
    queue = "tests-hostile-news"
    stop = asyncio.Event()
    async with aioredis.Redis.from_url(redis_url) as client:
        await client.set(f"pcmodel:queue:{queue}:news", "not a stream")
        worker = asyncio.create_task(
            serve_worker(redis_url, odd, workers=2, queue=queue, stop=stop, poll=0.05)
        )
        try:
            async with asyncio.timeout(60):
                summary = await pcmodel.run_job_async(
                    odd, [{"n": n} for n in range(10)], broker=Broker(redis_url, queue=queue)
                )
        finally:
            stop.set()
            await worker
        assert sorted(result.value for result in by_task(summary)) == list(range(10))
        assert caplog.text.count("could not announce the job") == 1
        assert await job_keys(redis_url) == []


@needs_server
async def test_a_job_that_fails_to_start_deletes_the_keys_it_made(redis_url: str) -> None:
    # The queue's list of jobs is of the wrong type: the transaction that creates the job's
    # keys fails on its last command, after the others were applied.
    queue = "tests-hostile-jobs-list"
    async with aioredis.Redis.from_url(redis_url) as client:
        await client.set(f"pcmodel:queue:{queue}:jobs", "not a set")
        try:
            with pytest.raises(ConnectionError, match="WRONGTYPE"):
                async with asyncio.timeout(60):
                    await pcmodel.run_job_async(odd, [{"n": 1}], broker=Broker(redis_url, queue=queue))
            assert await client.keys("pcmodel:job:*") == []
        finally:
            await client.delete(f"pcmodel:queue:{queue}:jobs")
