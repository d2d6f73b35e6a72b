"""The broker path when the network or the server misbehaves: silence, loss, unix sockets.

Each test bounds itself (`asyncio.timeout`), so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")

import pcmodel
import pcmodel.broker.worker
from pcmodel.broker import Broker, BrokerJobSummary, serve_worker
from pcmodel.broker._redis import connect
from pcmodel.records import TaskResult
from tests.test_broker import REDIS_SERVER, ROOT, act, items, job_keys, needs_server, redis_server


@contextlib.asynccontextmanager
async def silent_listener() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers: a frozen server, or not Redis."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing, keep it open

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


async def test_a_broker_that_never_answers_fails_the_job_with_a_connection_error() -> None:
    async with silent_listener() as port, asyncio.timeout(30):
        url = f"redis://user:s3cret@127.0.0.1:{port}/0"
        with pytest.raises(ConnectionError) as error_info:
            await pcmodel.run_job_async(act, items(3), broker=Broker(url, queue="q", round_trip_timeout=0.3))
    message = str(error_info.value)
    assert f"cannot reach the broker at redis://user:***@127.0.0.1:{port}/0" in message
    assert ": it did not answer within 0.3 s (Broker.round_trip_timeout)" in message
    assert "s3cret" not in message


async def test_a_blocking_read_that_gets_no_answer_names_the_configured_timeout() -> None:
    # The bound of a blocking read is its BLOCK time plus the round trip timeout; the message
    # once named the sum (3 s for a timeout of 2), not the setting the user can change.
    async with silent_listener() as port, asyncio.timeout(30):
        client = connect(f"redis://127.0.0.1:{port}/0", 0.3)
        try:
            with pytest.raises(ConnectionError) as error_info:
                await client.xread({"stream": "0"}, block=200)
        finally:
            await client.aclose()
    assert "did not answer within 0.3 s (Broker.round_trip_timeout) beyond its 0.2 s blocking read" in str(
        error_info.value
    )


async def test_a_worker_facing_a_broker_that_never_answers_stops_with_a_connection_error() -> None:
    async with silent_listener() as port, asyncio.timeout(30):
        url = f"redis://127.0.0.1:{port}/0"
        with pytest.raises(ConnectionError, match=r"did not answer within 0\.3 s"):
            await serve_worker(url, act, queue="q", round_trip_timeout=0.3)


async def test_the_worker_command_gives_up_on_a_broker_that_never_answers() -> None:
    async with silent_listener() as port, asyncio.timeout(60):
        url = f"redis://127.0.0.1:{port}/0"
        command = ["-m", "pcmodel", "worker", "--broker", url, "--function", "tests.test_broker:act"]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            "--round-trip-timeout",
            "0.3",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
    assert process.returncode == 1
    assert f"cannot reach the broker at {url}: it did not answer within 0.3 s" in stderr.decode()
    assert "Traceback" not in stderr.decode()


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "round_trip_timeout must be a finite number > 0, got 0"),
        (math.inf, ValueError, "round_trip_timeout must be a finite number > 0, got inf"),
        ("10", TypeError, "round_trip_timeout must be a number of seconds, got '10'"),
    ],
)
def test_round_trip_timeout_is_checked(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Broker("redis://127.0.0.1:6379/0", round_trip_timeout=value)  # type: ignore[arg-type]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A redis-server this test may kill."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: run .ci/redis-setup.sh (apt-get install -y redis-server)")
    with redis_server(tmp_path) as started:
        yield started


@needs_server
async def test_losing_redis_mid_job_is_a_connection_error_and_workers_back_off(
    own_server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url, server = own_server
    pauses: list[tuple[str, float]] = []
    fetcher_failed = asyncio.Event()

    async def count_pause(seconds: float) -> None:
        # Pauses are counted, not waited: the test needs no clock.
        task = asyncio.current_task()
        name = task.get_name() if task is not None else "?"
        pauses.append((name, seconds))
        if sum(1 for who, _ in pauses if who == "pcmodel-broker-fetcher") >= 30:
            fetcher_failed.set()
        await asyncio.sleep(0.001)

    monkeypatch.setattr(pcmodel.broker.worker, "_pause", count_pause)

    def kill_the_server(result: TaskResult) -> None:
        if server.poll() is None:
            server.kill()
            server.wait()

    worker = asyncio.create_task(serve_worker(url, act, workers=2, queue="lost", poll=0.05))
    try:
        with caplog.at_level(logging.WARNING, logger="pcmodel.broker"):
            async with asyncio.timeout(60):
                with pytest.raises(ConnectionError) as error_info:
                    await pcmodel.run_job_async(
                        act,
                        items(20, sleep=0.2),
                        on_task_complete=kill_the_server,
                        broker=Broker(url, queue="lost", round_trip_timeout=2),
                    )
                await fetcher_failed.wait()
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    # The documented builtins error, naming the URL, not one of redis-py's own.
    assert type(error_info.value) is ConnectionError
    assert url.rpartition("/")[0] in str(error_info.value)
    # The fetcher's pauses double from 0.1 s up to 5 s; the first failure and one in twelve
    # after are logged, not every try.
    fetched = [seconds for who, seconds in pauses if who == "pcmodel-broker-fetcher"][:30]
    assert fetched[:8] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert set(fetched[6:]) == {5.0}
    warnings = [record for record in caplog.records if "cannot read items from Redis" in record.getMessage()]
    assert len(warnings) == 3  # tries 1, 13 and 25 of 30


@needs_server
async def test_a_job_without_results_for_stall_after_logs_one_warning(
    own_server: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = own_server
    stop = asyncio.Event()
    worker = asyncio.create_task(serve_worker(url, act, workers=1, queue="stalled", stop=stop, poll=0.05))
    try:
        with caplog.at_level(logging.WARNING, logger="pcmodel.broker"):
            async with asyncio.timeout(60):
                summary = await pcmodel.run_job_async(
                    act,
                    [{"n": 0, "sleep": 2.0}, {"n": 1}],
                    broker=Broker(url, queue="stalled", lease=1.0),
                    stall_after=0.5,
                )
    finally:
        stop.set()
        await worker
    assert summary.succeeded == 2
    stalls = [
        record.getMessage() for record in caplog.records if "has had no result for" in record.getMessage()
    ]
    assert len(stalls) == 1
    assert "2 items unfinished (tasks 0, 1)" in stalls[0]
    assert "1 worker processes serve queue 'stalled'" in stalls[0]


@needs_server
async def test_a_unix_socket_url_works(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    with redis_server(tmp_path, "--port", "0", "--unixsocket", str(socket_path)) as (url, _):
        assert url.startswith("unix://")
        stop = asyncio.Event()
        worker = asyncio.create_task(serve_worker(url, act, workers=3, queue="unix", stop=stop, poll=0.05))
        try:
            async with asyncio.timeout(60):
                summary = await pcmodel.run_job_async(act, items(10), broker=Broker(url, queue="unix"))
        finally:
            stop.set()
            await worker
        assert isinstance(summary, BrokerJobSummary)
        assert (summary.tasks, summary.succeeded) == (10, 10)
        assert await job_keys(url) == []


async def test_waiting_for_workers_on_a_broker_that_is_not_up_says_so() -> None:
    import socket

    from pcmodel.broker import wait_for_workers

    with socket.socket() as probe:  # a port nobody listens on: a Redis server not started yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with asyncio.timeout(30):
        with pytest.raises(TimeoutError) as error_info:
            await wait_for_workers(f"redis://:pw@127.0.0.1:{port}/0", "q", timeout=0.5)
    message = str(error_info.value)
    assert message.startswith("0 of the 1 worker processes expected on queue 'q' showed up within 0.5 s")
    assert "; the broker did not answer: " in message
    assert f"redis://***@127.0.0.1:{port}/0" in message
    assert ":pw@" not in message


@needs_server
async def test_waiting_for_workers_asks_a_broker_again_until_it_is_up(tmp_path: Path) -> None:
    import socket

    from pcmodel.broker import wait_for_workers

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    assert REDIS_SERVER is not None
    started = asyncio.Event()
    stop = asyncio.Event()
    servers: list[asyncio.subprocess.Process] = []

    async def start_late() -> None:
        await asyncio.sleep(0.5)  # the first asks find nobody
        servers.append(
            await asyncio.create_subprocess_exec(
                REDIS_SERVER, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
                stdout=asyncio.subprocess.DEVNULL,
            )
        )  # fmt: skip
        started.set()

    async def a_worker() -> None:
        await started.wait()
        for _ in range(200):  # until the server takes connections, then serve
            try:
                await serve_worker(url, act, queue="late", workers=1, stop=stop)
                return
            except ConnectionError:
                await asyncio.sleep(0.05)

    try:
        async with asyncio.timeout(30), asyncio.TaskGroup() as group:
            group.create_task(start_late())
            worker = group.create_task(a_worker())
            found = await wait_for_workers(url, "late", timeout=20)
            stop.set()
            await worker
        assert [info.queue for info in found] == ["late"]
    finally:
        stop.set()
        for server in servers:
            server.terminate()
            await server.wait()
