"""Fuzz: random bytes and random JSON written into a running broker job's streams.

Whatever lands in the work stream or the result stream mid-job, every real item gets exactly
one outcome, every injected entry is counted once as malformed (never as a task), no worker
process dies, and the job ends. Few examples, each job under a time limit: a regression fails
instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")
pytest.importorskip("hypothesis")

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcmodel
from pcmodel.broker import Broker, BrokerJobSummary
from pcmodel.records import TaskResult
from tests.test_broker import Workers, act, current_job_id, job_keys, needs_server, redis_url

__all__ = ["redis_url"]

QUEUE = "tests-fuzz"

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _not_a_message(value: Any) -> bool:
    # A JSON object that names a task or an entry could pass for a real message (a copy of a
    # real item is run, or reported, as that item): keep only what cannot.
    return not (isinstance(value, dict) and ("task" in value or "entry" in value))


_field_value = st.binary(max_size=64) | _json.filter(_not_a_message).map(
    lambda value: json.dumps(value).encode()
)
_entry = st.dictionaries(
    st.sampled_from([b"m", b"r"]) | st.binary(min_size=1, max_size=8), _field_value, min_size=1, max_size=3
)
_injections = st.lists(st.tuples(st.sampled_from(["work", "results"]), _entry), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def processes(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    started = Workers(redis_url, tmp_path_factory.mktemp("fuzz"))
    try:
        started.start(QUEUE, 2, workers=3)
        yield started
    finally:
        started.stop_all()


async def _run_with(url: str, injections: list[tuple[str, dict[bytes, bytes]]]) -> BrokerJobSummary:
    seen: list[TaskResult] = []
    async with aioredis.Redis.from_url(url) as client:

        async def inject(result: TaskResult) -> None:
            seen.append(result)
            if len(seen) != 1:
                return
            job_id = await current_job_id(client, QUEUE)
            for stream, fields in injections:
                await client.xadd(f"pcmodel:job:{{{job_id}}}:{stream}", fields)  # type: ignore[arg-type]

        async with asyncio.timeout(60):
            # queue_size=2: the injected work entries are read before the last real items are
            # even sent, so the job cannot end before the workers report them.
            summary = await pcmodel.run_job_async(
                act,
                [{"n": n, "sleep": 0.01} for n in range(12)],
                on_task_complete=inject,
                queue_size=2,
                broker=Broker(url, queue=QUEUE),
            )
    assert isinstance(summary, BrokerJobSummary)
    assert Counter(result.task_id for result in seen) == Counter(range(12))
    return summary


@needs_server
@settings(
    max_examples=8,
    deadline=60_000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(injections=_injections)
def test_random_entries_in_a_running_jobs_streams_are_counted_and_harm_nothing(
    redis_url: str, processes: Workers, injections: list[tuple[str, dict[bytes, bytes]]]
) -> None:
    summary = asyncio.run(_run_with(redis_url, injections))
    assert summary.results is not None
    assert [result.value for result in summary.results] == list(range(12))
    assert (summary.tasks, summary.failed) == (12, 0)
    # Each injected entry is counted once; a work entry a worker reported after the job's
    # last result may go uncounted (the job does not wait for what it never sent).
    work_entries = sum(1 for stream, _ in injections if stream == "work")
    assert len(injections) - work_entries <= summary.malformed <= len(injections)
    assert all(process.poll() is None for process in processes.processes)
    assert asyncio.run(job_keys(redis_url)) == []
