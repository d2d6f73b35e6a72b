"""The worker process's pieces driven directly, without a Redis server.

The broker suites run whole worker processes against Redis; these drive one piece at a time
over a `ProcessState` whose client refuses every use, so each test also shows that the piece
under test never talks to Redis: the growing pause of `Backoff`, the slot's `run_item`
(which turns an item into its result message) and the `slot` loop around it. The writer's
test records the commands it would send instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, NoReturn, cast

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")

from pcmodel._queues import STOP
from pcmodel.broker._process import Backoff, Item, Job, ProcessState
from pcmodel.broker._redis import JobKeys, Redis
from pcmodel.broker._slots import run_item, slot
from pcmodel.broker._writer import _entries, write
from pcmodel.broker.messages import (
    JobSettings,
    MalformedMessageError,
    ResultMessage,
    decode_error,
    decode_result,
    decode_results,
    encode_results,
    encode_work,
)


class _NoRedis:
    """A client that fails the test if a piece uses it."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"this piece must not use Redis, but it used {name!r}")


async def _no_pause(seconds: float) -> None:
    raise AssertionError(f"this piece must not pause, but it paused {seconds} s")


def _process(function: Any, *, workers: int = 2) -> ProcessState:
    return ProcessState(
        cast(Redis, _NoRedis()),
        function,
        queue="pieces",
        workers=workers,
        name="host:123:abcdef",
        poll=0.2,
        pause=_no_pause,
    )


def _job(*, max_deliveries: int = 3) -> Job:
    settings = JobSettings(
        timeout=None,
        retry=None,
        max_per_second=None,
        burst=1,
        visibility_timeout=30.0,
        max_deliveries=max_deliveries,
    )
    return Job(JobKeys("job1", "pieces"), settings, None)


def _item(job: Job, fields: Any, *, deliveries: int = 1) -> Item:
    return Item(job, b"1-0", fields, deliveries)


def _work(task_id: int, params: Any) -> dict[bytes, bytes]:
    return {b"m": encode_work(task_id, params)}


def _read(payload: bytes | None) -> ResultMessage:
    assert payload is not None
    return decode_result({b"r": payload})


async def double(params: int) -> int:
    return params * 2


# -- Backoff ----------------------------------------------------------------------------


async def test_backoff_doubles_from_a_tenth_of_a_second_up_to_five_and_logs_one_failure_in_twelve(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waited: list[float] = []

    async def pause(seconds: float) -> None:
        waited.append(seconds)

    backoff = Backoff("read items from Redis", pause)
    with caplog.at_level(logging.WARNING, logger="pcmodel.broker"):
        for _ in range(25):
            await backoff.pause(ConnectionError("refused"))
    assert waited[:8] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert set(waited[6:]) == {5.0}
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 3  # tries 1, 13 and 25
    assert warnings[0] == "cannot read items from Redis (refused); retrying (1 failed tries, next in 0.1 s)"
    assert "13 failed tries" in warnings[1]


async def test_backoff_after_a_success_logs_the_recovery_and_starts_again_from_the_shortest_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waited: list[float] = []

    async def pause(seconds: float) -> None:
        waited.append(seconds)

    backoff = Backoff("write 3 results to Redis", pause)
    with caplog.at_level(logging.WARNING, logger="pcmodel.broker"):
        backoff.succeeded()  # nothing failed yet: nothing to say
        for _ in range(3):
            await backoff.pause(OSError("down"))
        backoff.succeeded()
        await backoff.pause(OSError("down again"))
    assert waited == pytest.approx([0.1, 0.2, 0.4, 0.1])
    messages = [record.getMessage() for record in caplog.records]
    assert messages[1] == "can write 3 results to Redis again, after 3 failed tries"
    assert messages[2].startswith("cannot write 3 results to Redis (down again)")  # a new outage is logged


# -- run_item ---------------------------------------------------------------------------


async def test_run_item_returns_the_value_with_the_task_its_slot_and_its_deliveries() -> None:
    process = _process(double, workers=4)
    result = _read(await run_item(process, 3, _item(_job(), _work(7, 21), deliveries=2)))
    assert (result.task, result.value, result.error, result.cancelled) == (7, 42, None, False)
    assert (result.entry, result.process, result.slot, result.slots) == ("1-0", "host:123:abcdef", 3, 4)
    assert (result.deliveries, result.attempts) == (2, 1)
    assert result.started <= result.finished
    assert (process.stats.failed, process.stats.malformed) == (0, 0)


async def test_run_item_refuses_an_item_delivered_too_often_without_reading_it() -> None:
    called: list[Any] = []

    async def function(params: Any) -> None:
        called.append(params)

    process = _process(function)
    # Fields that would be malformed if read: the refusal must come first, because an entry
    # that kills whoever reads it must not be read again.
    result = _read(await run_item(process, 0, _item(_job(max_deliveries=3), {b"x": b"?"}, deliveries=4)))
    assert result.task is None
    assert result.error is not None
    assert result.error["type"] == "pcmodel.broker.messages.WorkerLostError"
    assert "delivered 4 times" in result.error["message"]
    assert "max_deliveries=3" in result.error["message"]
    assert called == []
    assert (process.stats.failed, process.stats.malformed) == (1, 0)


@pytest.mark.parametrize(
    "fields",
    [{b"x": b"1"}, {b"m": b"not json"}, {b"m": b"[1, 2]"}, {b"m": b'{"task": -1, "params": 1}'}, "text"],
)
async def test_run_item_fails_a_malformed_message_and_counts_it(fields: Any) -> None:
    process = _process(double)
    result = _read(await run_item(process, 0, _item(_job(), fields)))
    assert result.task is None
    assert result.error is not None
    assert type(decode_error(result.error, "w")) is MalformedMessageError
    assert (process.stats.failed, process.stats.malformed) == (1, 1)


async def test_run_item_fails_every_item_of_a_job_whose_settings_are_unreadable() -> None:
    process = _process(double)
    job = Job(JobKeys("job1", "pieces"), None, "format version 99")
    result = _read(await run_item(process, 0, _item(job, _work(5, 1))))
    assert result.task == 5  # the message itself was readable
    assert result.error is not None
    assert "the job's settings are unreadable: format version 99" in result.error["message"]
    assert process.stats.malformed == 0


@pytest.mark.parametrize("escape", [SystemExit(3), KeyboardInterrupt()])
async def test_run_item_reports_a_function_that_exits_as_its_item_failure(escape: BaseException) -> None:
    async def function(params: Any) -> NoReturn:
        raise escape

    process = _process(function)
    result = _read(await run_item(process, 0, _item(_job(), _work(1, None))))
    assert result.error is not None
    assert result.error["type"] == "builtins.RuntimeError"
    assert f"the function raised {type(escape).__name__}" in result.error["message"]
    assert process.stats.failed == 1


async def test_run_item_fails_a_call_that_raises_a_cancelled_error_of_its_own_as_not_cancelled() -> None:
    async def function(params: Any) -> NoReturn:
        raise asyncio.CancelledError

    result = _read(await run_item(_process(function), 0, _item(_job(), _work(1, None))))
    assert result.error is not None
    assert result.error["type"] == "asyncio.exceptions.CancelledError"
    assert result.cancelled is False  # nobody cancelled it: a plain failure


async def test_run_item_does_not_start_the_call_of_a_halted_job() -> None:
    called: list[Any] = []

    async def function(params: Any) -> None:
        called.append(params)

    job = _job()
    job.halted = True
    result = _read(await run_item(_process(function), 0, _item(job, _work(2, "p"))))
    assert (result.task, result.cancelled) == (2, True)
    assert called == []


async def test_run_item_drops_the_item_of_a_job_that_ends_while_its_call_runs() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def function(params: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    process = _process(function)
    job = _job()
    process.jobs["job1"] = job
    async with asyncio.timeout(10):
        running = asyncio.create_task(run_item(process, 0, _item(job, _work(1, None))))
        await started.wait()
        process.forget("job1")  # what the fetcher and the keeper do when the job's keys are gone
        assert await running is None  # dropped unanswered: nothing to write
    assert cancelled.is_set()
    assert job.running == set()
    assert process.stats.failed == 0


# -- slot -------------------------------------------------------------------------------


async def test_a_slot_hands_each_result_to_the_writer_drops_an_ended_jobs_item_and_stops_on_stop() -> None:
    ran: list[int] = []

    async def function(params: int) -> int:
        ran.append(params)
        return params + 1

    process = _process(function)
    live, ended = _job(), _job()
    ended.gone = True
    process.take(live, b"1-0", _work(1, 10), 1)
    process.take(ended, b"2-0", _work(2, 20), 1)
    process.buffer.put_nowait(STOP)
    assert process.outstanding == 2
    async with asyncio.timeout(10):
        await slot(process, 0)
    assert ran == [10]  # the ended job's item never ran
    assert process.outstanding == 0
    assert process.wake.is_set()
    assert ended.inflight == set()  # dropped, so nothing keeps it claimed
    assert live.inflight == {b"1-0"}  # held until the writer acknowledges it
    job, entry_id, payload = process.outbox.get_nowait()
    assert (job, entry_id, _read(payload).value) == (live, b"1-0", 11)
    assert process.outbox.empty()


# -- the writer and the result entries ---------------------------------------------------


class _RecordingPipeline:
    """A transaction that records its commands; `execute` answers as Redis would, all fine."""

    def __init__(self, log: list[list[tuple[Any, ...]]]) -> None:
        self.commands: list[tuple[Any, ...]] = []
        log.append(self.commands)

    def xadd(self, key: str, fields: dict[bytes, bytes], *, nomkstream: bool) -> None:
        assert nomkstream  # a job that ended must not get its result stream back
        self.commands.append(("XADD", key, fields[b"r"]))

    def xack(self, key: str, group: str, *ids: bytes) -> None:
        self.commands.append(("XACK", key, *ids))

    def xdel(self, key: str, *ids: bytes) -> None:
        self.commands.append(("XDEL", key, *ids))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return [1] * len(self.commands)


class _RecordingRedis:
    def __init__(self) -> None:
        self.transactions: list[list[tuple[Any, ...]]] = []

    def pipeline(self, transaction: bool = True) -> _RecordingPipeline:
        assert transaction  # results and acknowledgements are written together or not at all
        return _RecordingPipeline(self.transactions)


def _result(task_id: int, value: Any) -> bytes:
    """A result message as a worker writes it."""
    return json.dumps(
        {
            "task": task_id,
            "entry": f"{task_id}-0",
            "process": "h:1:a",
            "slot": 0,
            "slots": 1,
            "started": 1.0,
            "finished": 2.0,
            "attempts": 1,
            "deliveries": 1,
            "value": value,
        },
        separators=(",", ":"),
    ).encode()


async def test_the_writer_writes_each_jobs_results_in_one_entry_and_acknowledges_them_in_one_command() -> (
    None
):
    redis = _RecordingRedis()
    process = _process(double)
    process.client = cast(Redis, redis)
    first, second, ended = _job(), _job(), _job()
    second.keys = JobKeys("job2", "pieces")
    ended.gone = True
    for job, entry_id in ((first, b"1-0"), (second, b"2-0"), (first, b"3-0"), (ended, b"4-0")):
        job.inflight.add(entry_id)
        process.outbox.put_nowait((job, entry_id, _result(int(entry_id[:1]), "x\ny")))
    process.outbox.put_nowait(STOP)
    async with asyncio.timeout(10):
        await write(process)
    [transaction] = redis.transactions
    results = [command for command in transaction if command[0] == "XADD"]
    assert [command[1] for command in results] == [first.keys.results, second.keys.results]
    read = [[message.task for message in decode_results({b"r": command[2]})] for command in results]
    assert read == [[1, 3], [2]]
    assert decode_results({b"r": results[0][2]})[0].value == "x\ny"  # type: ignore[union-attr]
    assert ("XACK", first.keys.work, b"1-0", b"3-0") in transaction
    assert ("XDEL", first.keys.work, b"1-0", b"3-0") in transaction
    assert ("XDEL", second.keys.work, b"2-0") in transaction
    assert len(transaction) == 6  # nothing for the job that ended
    assert (first.inflight, second.inflight) == (set(), set())
    assert process.stats.items == 4


def test_a_result_entry_holds_one_message_per_line_and_a_bad_line_spoils_only_itself() -> None:
    entry = encode_results([_result(1, [1, "a\nb"]), b"not json", _result(2, None)])
    first, bad, second = decode_results({b"r": entry})
    assert isinstance(first, ResultMessage)
    assert (first.task, first.value) == (1, [1, "a\nb"])
    assert isinstance(bad, MalformedMessageError)
    assert isinstance(second, ResultMessage)
    assert second.task == 2
    [missing] = decode_results({b"other": b"field"})
    assert isinstance(missing, MalformedMessageError)


def test_large_results_travel_in_several_entries() -> None:
    big = [_result(task_id, "v" * 100_000) for task_id in range(6)]
    entries = _entries(big)
    assert 1 < len(entries) < len(big)
    tasks = [message.task for entry in entries for message in decode_results({b"r": entry})]
    assert tasks == list(range(6))
