"""Knobs turned on a running broker job, and adaptive concurrency in each worker process.

A real redis-server; the worker process runs in the test's own loop (`serve_worker`), so the
function it calls can count its calls in flight, and the test can see the moment the process
applies a knob (it logs it). The job is started with `start_job`, whose `JobHandle` turns the
knobs through the broker transport (`RedisTransport.set_workers`, `set_rate`, `pause`, `resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")

import redis.asyncio as aioredis

import pcmodel
from pcmodel import Adaptive
from pcmodel._validate import MAX_WORKERS
from pcmodel.adaptive import AimdLimit
from pcmodel.broker import Broker, BrokerJobSummary, serve_worker
from pcmodel.broker._process import Job
from pcmodel.broker._redis import JobKeys
from pcmodel.broker._tuning import Knobs, ProcessGate, decode_knobs, encode_knobs, room
from pcmodel.broker.transport import RedisTransport
from pcmodel.controller import make_spec
from pcmodel.policies import Retry
from pcmodel.records import JobSummary
from tests.test_broker import REDIS_SERVER, current_job_id, job_keys, needs_server, redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: run .ci/redis-setup.sh (apt-get install -y redis-server)")
    folder: Path = tmp_path_factory.mktemp("redis-knobs")
    with redis_server(folder) as (url, _):
        yield url


class TooMany(Exception):
    """An API's "too many requests at once", known to the job only by its name."""


class Probe:
    """The worker's function: sleeps, and counts its calls in flight and started."""

    def __init__(self, *, capacity: int | None = None) -> None:
        self.active: set[int] = set()
        self.started = 0
        self.peak = 0
        self.capacity = capacity
        self.refused = 0

    async def __call__(self, params: dict[str, Any]) -> int:
        number: int = params["n"]
        self.active.add(number)
        self.started += 1
        self.peak = max(self.peak, len(self.active))
        try:
            if self.capacity is not None and len(self.active) > self.capacity:
                self.refused += 1
                raise TooMany(f"more than {self.capacity} calls at once")
            await asyncio.sleep(params["sleep"])
        finally:
            self.active.discard(number)
        return number


async def until(condition: Callable[[], bool]) -> None:
    """Wait (polling this loop's own state) until `condition()` holds."""
    while not condition():  # noqa: ASYNC110 - the state is plain attributes, nothing to await
        await asyncio.sleep(0.005)


class Knobbed:
    """What a test watches of a job on one in-loop worker process."""

    def __init__(self, url: str, queue: str, probe: Probe, caplog: pytest.LogCaptureFixture) -> None:
        self.url, self.queue, self.probe, self.caplog = url, queue, probe, caplog

    async def applied(self, count: int) -> None:
        """Wait until the worker process has applied the knobs `count` times."""
        await until(lambda: self.caplog.text.count("knobs now") >= count)

    async def past_calls_done(self) -> None:
        """Wait until every call that was in flight when this was called has finished."""
        before = set(self.probe.active)
        await until(lambda: not before & self.probe.active)


@contextlib.asynccontextmanager
async def knobbed_job(
    url: str, queue: str, probe: Probe, caplog: pytest.LogCaptureFixture, count: int, **options: Any
) -> Any:
    """Start a worker process of 4 slots and a job of `count` items; yield the job's handle."""
    slots = options.pop("slots", 4)
    sleep = options.pop("sleep", 0.05)
    worker = asyncio.create_task(serve_worker(url, probe, workers=slots, queue=queue, poll=0.02))
    handle = None
    try:
        with caplog.at_level(logging.INFO, logger="pcmodel.broker"):
            handle = pcmodel.start_job(
                probe,
                [{"n": n, "sleep": sleep} for n in range(count)],
                broker=Broker(url, queue=queue),
                **options,
            )
            yield handle, Knobbed(url, queue, probe, caplog)
    finally:
        if handle is not None:
            handle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handle
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


def exactly_once(summary: JobSummary, count: int) -> None:
    assert summary.results is not None
    assert Counter(result.task_id for result in summary.results) == Counter(range(count))
    assert sorted(result.value for result in summary.results) == list(range(count))


@needs_server
async def test_set_workers_shrinks_and_grows_each_process_between_items_losing_nothing(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe()
    async with (
        asyncio.timeout(60),
        knobbed_job(redis_url, "knobs-workers", probe, caplog, 80) as (handle, knobs),
    ):
        await until(lambda: len(probe.active) == 4)  # the process's 4 slots are busy
        handle.set_workers(1)
        await knobs.applied(1)
        await knobs.past_calls_done()  # the calls in flight are not cut short
        probe.peak, started = len(probe.active), probe.started
        await until(lambda: probe.started >= started + 5)
        assert probe.peak <= 1  # never more than the new size once those ended
        handle.set_workers(7)  # more than the process's --workers: it grows its slots
        await knobs.applied(2)
        await until(lambda: len(probe.active) == 7)
        summary = await handle
    assert isinstance(summary, BrokerJobSummary)
    exactly_once(summary, 80)
    assert summary.succeeded == 80
    assert await job_keys(redis_url) == []


class ThreadProbe:
    """A plain (blocking) function for the worker to run in threads, counting its calls at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def __call__(self, params: dict[str, Any]) -> int:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(params["sleep"])
        finally:
            with self.lock:
                self.active -= 1
        number: int = params["n"]
        return number


@needs_server
async def test_set_workers_grows_the_threads_of_a_plain_function_too(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe = ThreadProbe()
    queue = "knobs-threads"
    worker = asyncio.create_task(serve_worker(redis_url, probe, workers=2, queue=queue, poll=0.02))
    try:
        async with asyncio.timeout(60):
            with caplog.at_level(logging.INFO, logger="pcmodel.broker"):
                handle = pcmodel.start_job(
                    probe, [{"n": n, "sleep": 0.05} for n in range(60)], broker=Broker(redis_url, queue=queue)
                )
                await until(lambda: probe.active == 2)
                handle.set_workers(6)  # past the process's 2 slots, and its 2 threads
                await until(lambda: probe.peak == 6)
                summary = await handle
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    exactly_once(summary, 60)


@needs_server
async def test_a_paused_job_starts_no_call_until_resumed(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe()
    async with (
        asyncio.timeout(60),
        knobbed_job(redis_url, "knobs-pause", probe, caplog, 40) as (handle, knobs),
    ):
        await until(lambda: probe.started >= 4)
        handle.pause()
        await knobs.applied(1)
        await until(lambda: not probe.active)  # the calls in flight finish
        started = probe.started
        await asyncio.sleep(0.3)  # time enough for several calls, had the pause not held
        assert probe.started == started
        await until(lambda: handle.stats().done == started)  # every result came back
        stats = handle.stats()
        assert stats.paused
        assert (stats.done, stats.failed, stats.in_flight) == (started, 0, 40 - started)
        handle.resume()
        summary = await handle
    exactly_once(summary, 40)


@needs_server
async def test_set_rate_slows_every_call_and_lifting_it_releases_the_waiting_ones(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe()
    async with (
        asyncio.timeout(60),
        knobbed_job(redis_url, "knobs-rate", probe, caplog, 40, sleep=0.01) as (handle, knobs),
    ):
        await until(lambda: probe.started >= 4)
        handle.set_rate(0.001, burst=1)  # one call every 1,000 s
        await knobs.applied(1)
        await knobs.past_calls_done()
        started = probe.started
        await asyncio.sleep(0.3)
        assert probe.started <= started + 1  # the new schedule's one call, at most
        handle.set_rate(None)  # the calls waiting for a slot 1,000 s away go now
        await knobs.applied(2)
        summary = await handle
    exactly_once(summary, 40)
    assert await job_keys(redis_url) == []  # the schedules of both rates went with the job


@needs_server
async def test_each_process_finds_its_own_limit_with_an_adaptive_job(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The API takes 3 calls at once from this process and refuses more with TooMany, which
    # the job names as congestion: a fixed pool of 16 slots keeps being refused, an adaptive
    # one backs off to about 3.
    refused = {}
    for label, workers in (
        ("fixed", 16),
        ("adaptive", Adaptive(min=1, max=16, initial=16, congestion=(TooMany,))),
    ):
        probe = Probe(capacity=3)
        retry = Retry(10_000, on=(TooMany,), backoff=0.005, multiplier=1.0, jitter=0.0)
        async with (
            asyncio.timeout(120),
            knobbed_job(
                redis_url,
                f"knobs-{label}",
                probe,
                caplog,
                150,
                slots=16,
                workers=workers,
                retries=retry,
                sleep=0.01,
            ) as (handle, _),
        ):
            summary = await handle
        exactly_once(summary, 150)
        assert summary.succeeded == 150
        refused[label] = probe.refused
    assert refused["adaptive"] * 3 < refused["fixed"]


@needs_server
async def test_knobs_nobody_can_read_are_logged_once_and_the_job_goes_on(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe()
    async with (
        asyncio.timeout(60),
        knobbed_job(redis_url, "knobs-garbage", probe, caplog, 30) as (handle, _),
        aioredis.Redis.from_url(redis_url) as client,
    ):
        await until(lambda: probe.started >= 2)
        job_id = await current_job_id(client, "knobs-garbage")
        await client.hset(f"pcmodel:job:{{{job_id}}}:meta", "knobs", b'{"workers": "all of them"}')
        await until(lambda: "ignored knobs this worker cannot read" in caplog.text)
        summary = await handle
    exactly_once(summary, 30)
    assert caplog.text.count("ignored knobs this worker cannot read") == 1


def test_knobs_travel_as_json_and_odd_ones_are_refused() -> None:
    knobs = Knobs(workers=7, rate=(2.5, 3), paused=True, rate_changes=2)
    assert decode_knobs(encode_knobs(knobs)) == knobs
    assert decode_knobs(encode_knobs(Knobs())) == Knobs()
    for raw, problem in (
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"workers": 0}', "workers knob"),
        (b'{"workers": true}', "workers knob"),
        (b'{"paused": "yes"}', "paused knob"),
        (b'{"rate": {"max_per_second": -1, "burst": 1, "generation": 1}}', "max_per_second knob"),
        (b'{"rate": {"max_per_second": 1, "burst": 0, "generation": 1}}', "burst knob"),
        (b'{"rate": {"max_per_second": 1, "burst": 1}}', "generation"),
    ):
        with pytest.raises((ValueError, TypeError), match=problem):
            decode_knobs(raw)


async def test_knob_values_are_checked_on_the_controllers_side() -> None:
    spec = make_spec(Probe(), [], workers=Adaptive(min=2, max=8))
    transport = RedisTransport(spec, Broker("redis://127.0.0.1:1/0", queue="knobs-checks"))
    try:
        with pytest.raises(ValueError, match=r"between its min \(2\) and max \(8\), got 9"):
            transport.set_workers(9)
        with pytest.raises(TypeError, match="workers must be an int"):
            transport.set_workers(2.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_per_second must be a finite number"):
            transport.set_rate(0.0)
        with pytest.raises(ValueError, match="burst must be >= 1"):
            transport.set_rate(5, burst=0)
        transport.set_rate(5)
        assert transport.knobs.rate == (5.0, 1)
    finally:
        await transport.client.aclose()


# -- one job's gate in one worker process, without Redis -------------------------------


class RetryLater(Exception):
    status = 429
    retry_after = 0.2


async def test_the_gate_lets_at_most_limit_attempts_in_first_come_first_served() -> None:
    loop = asyncio.get_running_loop()
    gate = ProcessGate(2, None, None, loop)
    order: list[int] = []

    async def attempt(number: int, release: asyncio.Event) -> None:
        started = await gate.enter()
        order.append(number)
        try:
            await release.wait()
        finally:
            gate.leave(started, None)

    releases = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.create_task(attempt(number, releases[number])) for number in range(5)]
    await until(lambda: len(order) == 2)
    await asyncio.sleep(0.01)
    assert order == [0, 1]
    assert gate.in_flight == 2
    gate.set_limit(3)
    await until(lambda: len(order) == 3)
    releases[0].set()
    await until(lambda: len(order) == 4)
    assert order == [0, 1, 2, 3]  # in the order they came
    for release in releases:
        release.set()
    await asyncio.gather(*tasks)
    assert gate.in_flight == 0


async def test_a_paused_gate_starts_nothing_and_a_cancelled_wait_gives_its_turn_away() -> None:
    gate = ProcessGate(1, None, None, asyncio.get_running_loop())
    gate.pause()
    waiting = asyncio.create_task(gate.enter())
    later = asyncio.create_task(gate.enter())
    await asyncio.sleep(0.01)
    assert (waiting.done(), later.done(), gate.in_flight) == (False, False, 0)
    waiting.cancel()  # a call cancelled (a fail-fast stop) while it waited
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    gate.resume()
    started = await later
    assert gate.in_flight == 1
    gate.leave(started, ValueError("a plain failure"))
    assert gate.in_flight == 0


async def test_an_adaptive_gate_cuts_its_limit_once_per_episode_and_honours_retry_after() -> None:
    loop = asyncio.get_running_loop()
    aimd = AimdLimit(
        Adaptive(min=1, max=10, initial=10, backoff=0.5, max_pause=0.05), loop.time, record=False
    )
    gate = ProcessGate(10, aimd, None, loop)
    starts = [await gate.enter() for _ in range(4)]
    for started in starts:  # four 429s from attempts that all started before the first cut
        gate.leave(started, RetryLater())
    assert gate.limit == 5  # one cut, not four
    assert gate.held  # the Retry-After (0.2 s, cut to max_pause 0.05 s) holds every start
    entering = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    assert not entering.done()  # waits out the hold...
    started = await entering  # ...and starts when it is over
    assert gate.in_flight == 1
    gate.leave(started, None)
    assert gate.in_flight == 0
    gate.close()


def test_a_gated_jobs_room_counts_the_items_still_to_run_not_those_waiting_for_the_writer() -> None:
    job = Job(JobKeys("job", "knobs"), None, None)
    assert room(job) is None  # no gate: as many as the process has free slots
    job.gate = ProcessGate(3, None, None, asyncio.new_event_loop())
    try:
        job.inflight.update({b"1-0", b"2-0", b"3-0"})
        assert room(job) == 0
        job.written_soon = 2  # two ran; their results wait for the writer
        assert room(job) == 2
        job.gate.pause()
        assert room(job) == 0
    finally:
        job.gate.loop.close()


def slot_tasks() -> int:
    """The worker slots running in this loop (the in-loop worker process's)."""
    return sum(1 for task in asyncio.all_tasks() if task.get_name().startswith("pcmodel-broker-slot-"))


@needs_server
async def test_a_worker_process_caps_the_slots_a_knob_asks_for_and_ends_the_idle_extra_ones(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The controller refuses set_workers above MAX_WORKERS; a knobs field written by other
    # means once made each process build a task per slot asked for (10**9: a MemoryError loop,
    # the job hung). Here 20,000 is asked: the process runs 10,000 slots, and gives them back
    # (not just the busy ones, after their item: the idle ones at once) when asked for 1.
    probe = Probe()
    async with (
        asyncio.timeout(120),
        knobbed_job(redis_url, "knobs-cap", probe, caplog, 60, sleep=0.02) as (handle, knobs),
        aioredis.Redis.from_url(redis_url) as client,
    ):
        with pytest.raises(ValueError, match=r"workers must be <= 10000, got 1000000000"):
            handle.set_workers(10**9)
        await until(lambda: probe.started >= 2)
        job_id = await current_job_id(client, "knobs-cap")
        meta = f"pcmodel:job:{{{job_id}}}:meta"
        await client.hset(meta, "knobs", encode_knobs(Knobs(workers=2 * MAX_WORKERS)))
        await knobs.applied(1)
        assert "ask for 20000 calls at once; this process runs at most 10000" in caplog.text
        await until(lambda: slot_tasks() == MAX_WORKERS)
        await client.hset(meta, "knobs", encode_knobs(Knobs(workers=1)))
        await knobs.applied(2)
        await until(lambda: slot_tasks() == 4)  # its --workers: the 9,996 others ended
        summary = await handle
    exactly_once(summary, 60)
    assert summary.succeeded == 60


@needs_server
async def test_a_worker_process_that_hears_of_a_job_late_honours_its_pause_and_size_from_the_start(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The job is paused and turned down to one call at once before any worker process serves
    # the queue: a process starting then used to take and run items at once, until its keeper
    # read the knobs a poll interval later (200 calls started while paused).
    probe = Probe()
    queue = "knobs-late"
    with caplog.at_level(logging.INFO, logger="pcmodel.broker"):
        handle = pcmodel.start_job(
            probe, [{"n": n, "sleep": 0.01} for n in range(30)], broker=Broker(redis_url, queue=queue)
        )
        worker = None
        try:
            async with asyncio.timeout(60), aioredis.Redis.from_url(redis_url) as client:
                handle.pause()
                handle.set_workers(1)
                while not await client.smembers(f"pcmodel:queue:{queue}:jobs"):  # noqa: ASYNC110 - polling Redis
                    await asyncio.sleep(0.01)
                job_id = await current_job_id(client, queue)
                meta = f"pcmodel:job:{{{job_id}}}:meta"
                wanted = Knobs(workers=1, paused=True)
                while decode_knobs(await client.hget(meta, "knobs") or b"{}") != wanted:  # noqa: ASYNC110 - polling Redis
                    await asyncio.sleep(0.01)
                worker = asyncio.create_task(serve_worker(redis_url, probe, workers=4, queue=queue, poll=0.5))
                await until(lambda: f"serving job {job_id}" in caplog.text)
                await asyncio.sleep(0.3)  # several calls' time, had the pause not held
                assert probe.started == 0
                handle.resume()
                summary = await handle
        finally:
            handle.cancel()
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
    exactly_once(summary, 30)
    assert probe.peak == 1  # set_workers(1) held from the first item on
