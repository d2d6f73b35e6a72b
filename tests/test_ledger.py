"""The outcome ledger: resume a job, rerun its failures, read what it recorded, refuse bad files.

Every job here runs in virtual time; the ledger's writer thread is real, and every job closes
it (all its rows written) before it returns, so each test reads the file right after.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import pcmodel
from pcmodel import JobSummary, Ledger, Retry, TaskResult, run_job
from pcmodel._ledger_file import function_name
from pcmodel.ledger import LedgerError, RecordedError
from pcmodel.spec import make_spec
from pcmodel.sweeps import run_virtual


class Calls:
    """An async job function that counts its calls; items in `failing` raise ValueError."""

    def __init__(self, failing: set[Any] | None = None, seconds: float = 1.0) -> None:
        self.count: Counter[Any] = Counter()
        self.failing = failing or set()
        self.seconds = seconds

    async def __call__(self, params: Any) -> Any:
        self.count[_hashable(params)] += 1
        await asyncio.sleep(self.seconds)
        if _hashable(params) in self.failing:
            raise ValueError(f"item {params!r} failed")
        return params


def _hashable(params: Any) -> Any:
    return repr(params) if isinstance(params, dict | list) else params


async def double(n: int) -> int:
    await asyncio.sleep(1)
    return 2 * n


async def triple(n: int) -> int:
    await asyncio.sleep(1)
    return 3 * n


def _job(function: Any, params: Any, ledger: Any, **options: Any) -> JobSummary:
    options.setdefault("workers", 3)
    return run_job(function, params, clock="virtual", ledger=ledger, **options)


# -- resume and rerun --------------------------------------------------------------------------


def test_running_again_skips_every_recorded_item_and_runs_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    calls = Calls(failing={3})
    first = _job(calls, range(10), path)
    assert (first.tasks, first.failed, first.skipped) == (10, 1, 0)
    second = _job(calls, range(15), path)
    assert (second.tasks, second.failed, second.skipped) == (5, 0, 10)
    assert second.results is not None
    assert [result.params for result in second.results] == [10, 11, 12, 13, 14]
    assert set(calls.count.values()) == {1}  # no item ran twice, the failed one included
    assert "10 items skipped by the ledger" in str(second)
    assert Ledger(path).counts() == {"items": 15, "ok": 14, "failed": 1, "dead_letters": 1, "runs": 2}


def test_rerun_failed_runs_only_the_failures_and_records_their_new_outcome(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    _job(Calls(failing={2, 5}), range(8), path)
    calls = Calls()  # the API is back: nothing fails now
    summary = _job(calls, range(12), path, rerun="failed")
    assert (summary.tasks, summary.failed, summary.skipped) == (2, 0, 10)
    assert sorted(calls.count) == [2, 5]  # not the eight done, not the four never recorded
    ledger = Ledger(path)
    assert ledger.counts()["failed"] == 0
    assert ledger.results(status="failed") == []
    assert len(ledger.results()) == 8


def test_the_default_key_is_the_canonical_json_of_the_params(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    _job(Calls(), [{"b": 1, "a": [1, 2]}], path)
    calls = Calls()
    # The same item with its keys in another order, and a tuple where JSON has a list.
    summary = _job(calls, [{"a": (1, 2), "b": 1}, {"a": [1, 2], "b": 2}], path)
    assert (summary.tasks, summary.skipped) == (1, 1)
    [row] = Ledger(path).rows()[:1]
    assert row["key"] == '{"a":[1,2],"b":1}'
    assert row["params"] == {"a": [1, 2], "b": 1}


def test_a_custom_key_identifies_items_and_their_params_are_still_recorded(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    cars = [{"id": 1, "seen": {1, 2}}, {"id": 2, "seen": set()}]  # a set: not JSON

    def by_id(params: Any) -> str:
        return f"car-{params['id']}"

    summary = _job(Calls(), cars, path, key=by_id)
    assert (summary.tasks, summary.stop_reason) == (2, None)
    rows = Ledger(path).rows()
    assert [row["key"] for row in rows] == ["car-1", "car-2"]
    assert rows[0]["params"] == repr(cars[0])  # what JSON cannot carry is kept as its repr
    again = _job(Calls(), [*cars, {"id": 3}], path, key=by_id)
    assert (again.tasks, again.skipped) == (1, 2)


def test_an_async_source_and_several_producers_are_keyed_and_filtered(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    _job(Calls(), range(0, 20, 2), path)

    async def odd_and_even() -> AsyncIterator[int]:
        for n in range(20):
            await asyncio.sleep(0.1)
            yield n

    calls = Calls()
    summary = _job(calls, pcmodel.producers(odd_and_even(), range(20, 25)), path)
    assert (summary.tasks, summary.skipped) == (15, 10)
    assert sorted(calls.count) == [*range(1, 20, 2), *range(20, 25)]


def test_the_same_params_object_changed_between_items_is_recorded_under_each_key(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"

    def one_dict_changed() -> Iterator[dict[str, int]]:
        item = {"car": 0}
        for car in range(3):
            item["car"] = car  # the same object, a new key each time: all three in flight at once
            yield item

    summary = _job(Calls(), one_dict_changed(), path, workers=3)
    assert (summary.tasks, summary.skipped) == (3, 0)
    assert sorted(row["key"] for row in Ledger(path).rows()) == ['{"car":0}', '{"car":1}', '{"car":2}']


def test_an_item_whose_key_an_earlier_item_of_the_run_had_is_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "job.sqlite"
    calls = Calls()
    item = {"car": 7}
    summary = _job(calls, [item, {"car": 7}, [1, 2], (1, 2), item, {"car": 8}], path, workers=3)
    assert (summary.tasks, summary.skipped) == (3, 3)  # run once each; the repeats skipped
    assert sorted(calls.count.values()) == [1, 1, 1]
    assert sorted(row["key"] for row in Ledger(path).rows()) == ["[1,2]", '{"car":7}', '{"car":8}']
    assert "item 2 of the params, {'car': 7}, has the key '{\"car\":7}' of an earlier item" in caplog.text
    assert "3 items repeated the key of an earlier item of this job" in caplog.text


def test_a_key_two_items_share_runs_once_and_rerun_failed_runs_it_once(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    items = [{"car": "A", "fail": True}, {"car": "A", "fail": False}, {"car": "B", "fail": False}]
    calls = Calls(failing={repr(items[0])})
    summary = _job(calls, items, path, key=lambda params: params["car"])
    assert (summary.tasks, summary.failed, summary.skipped) == (2, 1, 1)
    assert [(row["key"], row["ok"], row["params"]) for row in Ledger(path).rows()] == [
        ("A", False, items[0]),  # the first item with the key is the one recorded
        ("B", True, items[2]),
    ]
    summary = _job(calls, items, path, key=lambda params: params["car"], rerun="failed")
    assert (summary.tasks, summary.skipped) == (1, 2)
    assert calls.count[repr(items[0])] == 2
    assert calls.count[repr(items[1])] == 0


def test_a_function_that_changes_its_params_keeps_the_key_they_had_when_produced(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"

    async def price(params: dict[str, Any]) -> None:
        await asyncio.sleep(1)
        params["price"] = 100  # the item changed under the ledger's feet

    _job(price, [{"car": 1}], path)
    assert [row["key"] for row in Ledger(path).rows()] == ['{"car":1}']
    assert _job(price, [{"car": 1}], path).skipped == 1


# -- keys that cannot be made --------------------------------------------------------------------


def test_params_the_default_key_cannot_key_stop_producing_with_an_error_naming_the_item(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.sqlite"
    summary = _job(Calls(), [1, 2, {3, 4}, 5], path, workers=1)
    assert summary.stop_reason == "source_error"
    assert isinstance(summary.error, TypeError)
    message = str(summary.error)
    assert "item 3 of the params, {3, 4}, has no key" in message
    assert "pass key= a function" in message
    assert summary.tasks == 2  # what came before was run and recorded
    assert Ledger(path).counts()["items"] == 2


def test_a_key_that_raises_or_returns_no_str_is_a_clear_source_error(tmp_path: Path) -> None:
    def broken(params: Any) -> str:
        raise LookupError("no id")

    summary = _job(Calls(), [1, 2], tmp_path / "a.sqlite", key=broken)
    assert isinstance(summary.error, ValueError)
    assert "key= raised on item 1 of the params, 1: LookupError('no id')" in str(summary.error)
    summary = _job(Calls(), [1, 2], tmp_path / "b.sqlite", key=lambda params: params)
    assert isinstance(summary.error, TypeError)
    assert "key= must return a str, got 1 (int) for item 1 of the params, 1" in str(summary.error)


def _names_with_an_undecodable_one(count: int, bad: int) -> list[str]:
    """File names, one of them with a byte that is not UTF-8 (a lone surrogate once decoded)."""
    names = [f"car{i}" for i in range(count)]
    names[bad] = os.fsdecode(b"car\xff")
    return names


def test_a_key_the_file_cannot_hold_is_refused_naming_the_item_and_the_rest_is_recorded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.sqlite"
    names = _names_with_an_undecodable_one(300, bad=150)
    summary = _job(Calls(seconds=0.001), names, path, key=str, workers=50)
    assert summary.stop_reason == "source_error"
    assert isinstance(summary.error, ValueError)
    assert "key= returned 'car\\udcff' for item 151 of the params" in str(summary.error)
    assert "lone surrogate" in str(summary.error)
    assert summary.tasks == 150
    assert sorted(row["key"] for row in Ledger(path).rows()) == sorted(names[:150])  # none lost


def test_an_error_message_the_file_cannot_hold_is_recorded_escaped(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    names = _names_with_an_undecodable_one(3, bad=1)

    async def open_it(name: str) -> str:
        await asyncio.sleep(1)
        if name.isascii():
            return name
        raise FileNotFoundError(f"no file {name}")

    summary = _job(open_it, names, path)
    assert (summary.tasks, summary.failed, summary.error) == (3, 1, None)
    [row] = Ledger(path).rows(status="failed")
    assert row["error_message"] == "no file car\\udcff"
    assert Ledger(path).counts()["items"] == 3


@pytest.mark.parametrize("items", [3, 300])
def test_a_row_the_file_refuses_costs_only_its_own_record_and_reaches_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items: int
) -> None:
    """The safeguard behind the key check: a row the file cannot take, whether in a batch
    written while the job runs (300 items) or in the last write, after the job ended (3)."""
    import pcmodel._ledger_job as ledger_job

    monkeypatch.setattr(ledger_job, "unstorable", lambda key: None)  # let the bad key through
    path = tmp_path / "job.sqlite"
    names = _names_with_an_undecodable_one(items, bad=1)
    summary = _job(Calls(seconds=0.01), names, path, key=str, workers=10)
    assert summary.stop_reason == "stop"
    assert isinstance(summary.error, LedgerError)
    assert "could not record the outcome of task 1 (key 'car\\udcff')" in str(summary.error)
    assert "every other outcome was recorded" in str(summary.error)
    recorded = {row["key"] for row in Ledger(path).rows()}
    assert "car0" in recorded
    assert len(recorded) == summary.tasks - 1  # every handled item but the bad one


def test_a_disk_that_fails_at_the_last_write_reaches_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pcmodel._ledger_writer as ledger_writer

    for statement in ("INSERT", "_INSERT_MANY"):
        monkeypatch.setattr(ledger_writer, statement, "INSERT INTO no_such_table VALUES (?)")
    # Three calls of 0.01 s: the job ends before its first hand-over (0.05 s), so every row
    # goes in the last write, after the job stopped listening for stops.
    summary = _job(Calls(seconds=0.01), range(3), tmp_path / "job.sqlite")
    assert (summary.tasks, summary.stop_reason) == (3, "stop")
    assert isinstance(summary.error, LedgerError)
    assert "could not record the job's outcomes" in str(summary.error)

    # A job that stopped with an error of its own keeps it; the ledger's is added as a note.
    summary = _job(Calls(failing={0}, seconds=0.01), range(3), tmp_path / "b.sqlite", fail_fast=True)
    assert (summary.stop_reason, type(summary.error)) == ("fail_fast", ValueError)
    assert summary.error is not None
    [note] = summary.error.__notes__
    assert "could not record the job's outcomes" in note


class Odd(BaseException):
    """Neither an Exception nor an interrupt."""


def test_an_odd_base_exception_from_key_stops_producing_and_keeps_the_summary(tmp_path: Path) -> None:
    def odd(params: int) -> str:
        if params == 2:
            raise Odd("odd")
        return str(params)

    summary = _job(Calls(), range(5), tmp_path / "job.sqlite", key=odd, workers=1)
    assert summary.stop_reason == "source_error"
    assert isinstance(summary.error, Odd)
    assert summary.tasks == 2


def test_keyboard_interrupt_from_key_stops_the_job_and_what_was_done_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"

    def interrupted(params: int) -> str:
        if params == 5:
            raise KeyboardInterrupt
        return str(params)

    with pytest.raises(KeyboardInterrupt):
        # queue_size=1: items 0-3 have run by the time the producer reads item 5.
        _job(Calls(seconds=0), range(10), path, key=interrupted, workers=1, queue_size=1)
    keys = {row["key"] for row in Ledger(path).rows()}
    assert keys <= {"0", "1", "2", "3", "4"}
    assert {"0", "1", "2"} <= keys


# -- dead letters and on_retry_exhausted ------------------------------------------------------------


class Flaky:
    """Fails `n` the first `fails[n]` times it is called."""

    def __init__(self, fails: dict[int, int]) -> None:
        self.fails = dict(fails)

    async def __call__(self, n: int) -> int:
        await asyncio.sleep(1)
        if self.fails.get(n, 0) > 0:
            self.fails[n] -= 1
            raise ConnectionError(f"item {n} lost")
        return n


def test_dead_letters_are_the_items_that_used_every_retry(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    seen: list[int] = []
    # 1 is saved by its retries, 2 uses them all, 3 fails with an error not worth retrying.
    retry = Retry(2, on=(ConnectionError,), backoff=0)

    async def fail_3(n: int) -> int:
        if n == 3:
            raise KeyError(n)
        return await flaky(n)

    flaky = Flaky({1: 2, 2: 5})
    summary = _job(fail_3, range(5), path, retries=retry, on_retry_exhausted=lambda r: seen.append(r.params))
    assert (summary.failed, summary.dead_letters, seen) == (2, 1, [2])
    ledger = Ledger(path)
    [dead] = ledger.results(status="dead_letter")
    assert (dead.params, dead.attempts) == (2, 3)
    assert isinstance(dead.error, RecordedError)
    assert (dead.error.error_type, dead.error.message) == ("ConnectionError", "item 2 lost")
    assert [row["params"] for row in ledger.rows(error_type="KeyError")] == [3]


def test_without_retries_every_failure_is_a_dead_letter_with_or_without_a_ledger() -> None:
    summary = run_job(Calls(failing={1, 4}), range(6), clock="virtual")
    assert (summary.failed, summary.dead_letters) == (2, 2)
    seen: list[pcmodel.TaskResult] = []
    summary = run_job(Calls(failing={1, 4}), range(6), clock="virtual", on_retry_exhausted=seen.append)
    assert summary.dead_letters == 2
    assert sorted(result.params for result in seen) == [1, 4]


def test_an_async_hook_is_awaited_after_on_task_complete() -> None:
    order: list[str] = []

    async def hook(result: pcmodel.TaskResult) -> None:
        await asyncio.sleep(0.5)
        order.append(f"hook {result.params}")

    summary = run_job(
        Calls(failing={1}),
        range(2),
        clock="virtual",
        on_task_complete=lambda result: order.append(f"done {result.params}"),
        on_retry_exhausted=hook,
    )
    assert summary.dead_letters == 1
    assert order == ["done 0", "done 1", "hook 1"]


@pytest.mark.parametrize("raised", [ValueError("hook"), Odd("odd"), asyncio.CancelledError()])
def test_a_failing_hook_is_counted_like_a_callback_error(raised: BaseException) -> None:
    def hook(result: pcmodel.TaskResult) -> None:
        raise raised

    summary = run_job(Calls(failing={0, 1, 2}), range(4), clock="virtual", on_retry_exhausted=hook)
    assert (summary.tasks, summary.dead_letters, summary.callback_errors) == (4, 3, 3)


def test_keyboard_interrupt_from_the_hook_stops_the_job(tmp_path: Path) -> None:
    def hook(result: pcmodel.TaskResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _job(Calls(failing={0}), range(50), tmp_path / "job.sqlite", on_retry_exhausted=hook, workers=1)
    # The failed item was recorded before its hook ran: resuming does not run it again.
    assert Ledger(tmp_path / "job.sqlite").counts()["dead_letters"] == 1


def test_calls_a_fail_fast_stop_cancels_are_neither_recorded_nor_dead(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    calls = Calls(failing={0})
    calls.seconds = 1
    summary = _job(calls, range(6), path, fail_fast=True, workers=3)
    assert (summary.cancelled, summary.dead_letters) == (2, 1)
    assert [row["key"] for row in Ledger(path).rows()] == ["0"]
    assert _job(Calls(), range(6), path).tasks == 5  # the cancelled ones run on resume


def _stopped_hard(path: Path, hooked: list[TaskResult], *, graceful: bool, retries: int = 0) -> JobSummary:
    """Ten 1 s items on 4 workers, stopped at 0.5 s by `JobHandle.stop(graceful=...)`."""

    async def main() -> JobSummary:
        handle = pcmodel.start_job(
            Calls(),
            range(10),
            workers=4,
            clock="virtual",
            ledger=path,
            on_retry_exhausted=hooked.append,
            retries=Retry(times=retries, backoff=0.1) if retries else 0,
        )
        await asyncio.sleep(0.5)
        handle.stop(graceful=graceful)
        return await handle

    return run_virtual(main())


@pytest.mark.parametrize("retries", [0, 2])
def test_calls_a_hard_stop_cancels_are_not_outcomes_and_run_on_resume(tmp_path: Path, retries: int) -> None:
    path = tmp_path / "job.sqlite"
    hooked: list[TaskResult] = []
    summary = _stopped_hard(path, hooked, graceful=False, retries=retries)
    assert (summary.stop_reason, summary.cancelled, summary.unprocessed) == ("stop", 4, 6)
    assert (summary.dead_letters, hooked) == (0, [])
    assert Ledger(path).counts()["items"] == 0  # nothing recorded: no outcome, no dead letter
    resumed = _job(Calls(), range(10), path)
    assert (resumed.tasks, resumed.skipped) == (10, 0)  # the four cancelled calls run again


def test_a_graceful_stop_records_the_calls_it_let_finish(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    summary = _stopped_hard(path, [], graceful=True)
    assert (summary.tasks, summary.cancelled, summary.unprocessed) == (4, 0, 6)
    assert Ledger(path).counts()["ok"] == 4


@pytest.mark.parametrize("fail_fast", [False, True])
def test_a_functions_own_cancelled_error_is_a_recorded_dead_letter(tmp_path: Path, fail_fast: bool) -> None:
    """Only a stop's cancels are not outcomes: a CancelledError the function raised of its own
    (it awaited something another task cancelled) is a failure, fail-fast or not."""
    path = tmp_path / "job.sqlite"
    hooked: list[TaskResult] = []

    async def call(n: int) -> int:
        await asyncio.sleep(1)
        if n == 0:
            raise asyncio.CancelledError
        return n

    summary = _job(call, range(5), path, workers=1, fail_fast=fail_fast, on_retry_exhausted=hooked.append)
    assert (summary.failed, summary.dead_letters, [r.params for r in hooked]) == (1, 1, [0])
    [row] = Ledger(path).rows(status="failed")
    assert (row["key"], row["error_type"], row["dead_letter"]) == (
        "0",
        "asyncio.exceptions.CancelledError",
        True,
    )


# -- reading a ledger ----------------------------------------------------------------------------


def test_rows_are_plain_and_results_are_task_results(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    _job(Calls(failing={1}), range(3), path, workers=1)
    ledger = Ledger(path)
    rows = ledger.rows()
    assert [row["params"] for row in rows] == [0, 1, 2]
    assert rows[1] == {
        "key": "1",
        "params": 1,
        "ok": False,
        "error_type": "ValueError",
        "error_message": "item 1 failed",
        "attempts": 1,
        "worker": 0,
        "enqueued_at": 0.0,
        "started_at": 1.0,
        "finished_at": 2.0,
        "duration": 1.0,
        "dead_letter": True,
        "run": 1,
        "task_id": 1,
    }
    result = ledger.results(status="failed")[0]
    assert (result.task_id, result.params, result.value, result.ok, result.duration) == (
        1,
        1,
        None,
        False,
        1.0,
    )
    assert str(result.error) == "ValueError: item 1 failed"
    assert [r.params for r in ledger.results(status="ok")] == [0, 2]
    assert ledger.results(error_type="TypeError") == []
    assert ledger.function == f"{__name__}:Calls"
    assert repr(ledger) == f"Ledger({str(path)!r})"


class PriceError(Exception):
    """An error of the user's own: recorded by its qualified name."""


def test_common_errors_by_type_and_the_slowest_items(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"

    async def slow_and_failing(n: int) -> int:
        await asyncio.sleep(n)
        if n % 3 == 0:
            raise TimeoutError(f"slow {n}")
        if n % 4 == 0:
            raise PriceError(f"bad {n}")
        return n

    _job(slow_and_failing, range(1, 10), path)
    ledger = Ledger(path)
    assert ledger.common_errors() == [
        ("TimeoutError", 3, "slow 9"),
        ("tests.test_ledger.PriceError", 2, "bad 8"),
    ]
    assert [row["params"] for row in ledger.rows(error_type="PriceError")] == [4, 8]
    assert [row["params"] for row in ledger.rows(error_type="tests.test_ledger.PriceError")] == [4, 8]
    assert ledger.rows(error_type="Error") == []  # a last part is a whole part, not a suffix
    assert [row["params"] for row in ledger.slowest(3)] == [9, 8, 7]
    assert ledger.slowest(0) == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"status": "done"},
            ValueError,
            "status must be one of 'ok', 'failed', 'dead_letter' or None, got 'done'",
        ),
        ({"error_type": ValueError}, TypeError, "error_type must be a str or None"),
    ],
)
def test_bad_filters_are_refused(
    tmp_path: Path, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    path = tmp_path / "job.sqlite"
    _job(Calls(), [1], path)
    with pytest.raises(error, match=message):
        Ledger(path).rows(**options)


# -- files that are not this job's ledger ---------------------------------------------------------


def test_a_ledger_of_another_function_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    _job(double, range(3), path)
    with pytest.raises(
        LedgerError,
        match=r"records the outcomes of tests\.test_ledger:double, not of tests\.test_ledger:triple",
    ):
        _job(triple, range(3), path)
    summary = _job(triple, range(5), Ledger(path, allow_other_function=True))
    assert (summary.tasks, summary.skipped) == (2, 3)


async def power(n: int, exponent: int, session: Any = None) -> int:
    await asyncio.sleep(1)
    return int(n**exponent)


class Session:
    """An argument whose repr (the default one) names its address: another one each run."""


def _any(*arguments: Any) -> None:
    """A function of any arguments, to name in partials."""


class HostileRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_lambdas_are_told_apart_by_their_line_and_partials_by_their_arguments(tmp_path: Path) -> None:
    square, cube = [  # on lines of their own (two lambdas on one line share a name)
        lambda n: n * n,
        lambda n: n**3,
    ]
    _job(square, range(3), tmp_path / "a.sqlite")
    with pytest.raises(
        LedgerError, match=r"<lambda> \(line \d+\), not of tests\.test_ledger:.*<lambda> \(line"
    ):
        _job(cube, range(6), tmp_path / "a.sqlite")
    assert _job(square, range(6), tmp_path / "a.sqlite").skipped == 3  # the same lambda resumes

    path = tmp_path / "b.sqlite"
    _job(functools.partial(power, exponent=2), range(3), path)
    assert Ledger(path).function == "tests.test_ledger:power(exponent=2)"
    with pytest.raises(LedgerError, match=r"outcomes of tests\.test_ledger:power\(exponent=2\), not of "):
        _job(functools.partial(power, exponent=3), range(6), path)
    assert _job(functools.partial(power, exponent=2), range(6), path).skipped == 3


def test_a_partials_argument_whose_repr_changes_each_run_is_named_by_its_type(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    _job(functools.partial(power, exponent=2, session=Session()), range(3), path)
    assert Ledger(path).function == "tests.test_ledger:power(exponent=2, session=<Session>)"
    # The next run has another session (another address): it is the same job.
    assert _job(functools.partial(power, exponent=2, session=Session()), range(5), path).skipped == 3
    named = function_name(functools.partial(_any, HostileRepr(), list(range(100))))
    assert named.startswith("tests.test_ledger:_any(arguments sha256 ")  # long: its digest
    assert named == function_name(functools.partial(_any, HostileRepr(), list(range(100))))
    assert function_name(functools.partial(_any, HostileRepr())) == "tests.test_ledger:_any(<HostileRepr>)"


def test_corrupt_and_foreign_files_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(LedgerError, match="it is not an SQLite file, or it is damaged"):
        _job(double, [1], garbage)
    with pytest.raises(LedgerError, match="it is not an SQLite file, or it is damaged"):
        Ledger(garbage).counts()

    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE prices (car TEXT, price REAL)")
    connection.close()
    with pytest.raises(
        LedgerError, match=r"an SQLite database but not a pcmodel ledger \(its tables: prices\)"
    ):
        _job(double, [1], foreign)

    newer = tmp_path / "newer.sqlite"
    _job(double, [1], newer)
    with sqlite3.connect(newer) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    connection.close()
    with pytest.raises(
        LedgerError, match="has schema version '99', and this pcmodel reads version 1: upgrade pcmodel"
    ):
        Ledger(newer).rows()

    with pytest.raises(LedgerError, match="there is no ledger at"):
        Ledger(tmp_path / "missing.sqlite").results()
    with pytest.raises(LedgerError, match="is a folder"):
        _job(double, [1], tmp_path)


def test_a_damaged_page_in_a_ledger_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    _job(Calls(seconds=0), range(3000), path, workers=50)
    data = bytearray(path.read_bytes())
    # Overwrite the middle of the file: pages of the items table.
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerError, match="cannot read the ledger"):
        Ledger(path).rows()
    calls = Calls(seconds=0)
    with pytest.raises(LedgerError, match="cannot read the ledger"):
        _job(calls, range(3000), path)
    assert not calls.count  # refused before anything ran


def test_reading_the_ledger_of_a_job_that_wrote_nothing_gives_empty_answers(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    _job(double, [], path)
    ledger = Ledger(path)
    assert (ledger.rows(), ledger.common_errors(), ledger.slowest()) == ([], [], [])
    assert ledger.counts() == {"items": 0, "ok": 0, "failed": 0, "dead_letters": 0, "runs": 1}


# -- the arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ledger": 3}, TypeError, "ledger must be a path, a pcmodel.Ledger or None, got 3"),
        ({"ledger": b"x.sqlite"}, TypeError, "ledger must be a path"),
        ({"ledger": "  "}, ValueError, "a ledger's path must name a file"),
        ({"key": str}, ValueError, "key= works with a ledger"),
        ({"rerun": "failed"}, ValueError, "rerun= works with a ledger"),
        ({"ledger": "x.sqlite", "rerun": "all"}, ValueError, "rerun must be 'failed' or None, got 'all'"),
        ({"ledger": "x.sqlite", "key": "id"}, TypeError, "key must be a callable or None"),
        ({"on_retry_exhausted": 1}, TypeError, "on_retry_exhausted must be a callable or None"),
    ],
)
def test_ledger_options_are_checked_before_anything_starts(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make_spec(double, [1], **options)


def test_a_path_makes_a_ledger_and_a_ledger_is_kept(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "a.sqlite", allow_other_function=True)
    assert make_spec(double, [1], ledger=ledger).ledger is ledger
    made = make_spec(double, [1], ledger=tmp_path / "b.sqlite").ledger
    assert made is not None
    assert made.path == tmp_path / "b.sqlite"
    assert not made.allow_other_function


def test_a_disk_that_fails_mid_job_stops_the_job_with_the_ledger_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pcmodel._ledger_writer as ledger_writer

    path = tmp_path / "job.sqlite"
    for statement in ("INSERT", "_INSERT_MANY"):  # every insert the writer makes fails
        monkeypatch.setattr(ledger_writer, statement, "INSERT INTO no_such_table VALUES (?)")

    async def slow(n: int) -> int:
        await asyncio.sleep(0.01)  # real time: the writer fails while the job runs
        return n

    summary = run_job(slow, range(10_000), ledger=path, workers=10)
    assert summary.stop_reason == "stop"
    assert isinstance(summary.error, LedgerError)
    assert "could not record the job's outcomes" in str(summary.error)
    assert summary.unprocessed > 0


def test_on_job_complete_finds_every_outcome_in_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    seen: list[dict[str, int]] = []
    summary = _job(
        Calls(failing={2}), range(7), path, on_job_complete=lambda _: seen.append(Ledger(path).counts())
    )
    assert summary.tasks == 7
    assert seen == [{"items": 7, "ok": 6, "failed": 1, "dead_letters": 1, "runs": 1}]


async def test_outcomes_reach_the_file_while_the_job_runs(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    release = asyncio.Event()

    async def wait_at_three(n: int) -> int:
        if n == 3:
            await release.wait()
        return n

    job = pcmodel.start_job(wait_at_three, range(4), ledger=path, workers=4)
    try:
        # Items 0-2 are done; the job waits on item 3. Their rows must reach the file without
        # the job ending (a bounded wait: the writer hands them over within 0.05 s).
        for _ in range(500):
            if path.exists() and len(Ledger(path).rows()) == 3:
                break
            await asyncio.sleep(0.01)
        assert sorted(row["params"] for row in Ledger(path).rows()) == [0, 1, 2]
    finally:
        release.set()
    summary = await job
    assert summary.tasks == 4
    assert len(Ledger(path).rows()) == 4


class Unprintable(Exception):
    """An error whose str() raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_an_error_whose_str_raises_is_recorded_all_the_same(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"

    async def unprintable(n: int) -> int:
        raise Unprintable

    summary = _job(unprintable, [1], path)
    assert (summary.failed, summary.callback_errors) == (1, 0)
    [row] = Ledger(path).rows()
    assert (row["error_type"], row["error_message"]) == (
        "tests.test_ledger.Unprintable",
        "<str() of this Unprintable raised>",
    )


@pytest.mark.parametrize("items", [1, 49, 50, 120, 1001])
def test_every_row_holds_its_results_fields(tmp_path: Path, items: int) -> None:
    # Sizes around the writer's 50 rows per statement and 1,000 rows per hand-over.
    path = tmp_path / "job.sqlite"
    summary = _job(
        Calls(failing={7, 60}, seconds=0.5), range(items), path, workers=7, retries=Retry(1, backoff=0)
    )
    assert summary.results is not None
    rows = {row["task_id"]: row for row in Ledger(path).rows()}
    assert len(rows) == items
    for result in summary.results:
        row = rows[result.task_id]
        assert (row["key"], row["params"], row["ok"]) == (str(result.params), result.params, result.ok)
        assert (row["attempts"], row["worker"], row["dead_letter"]) == (
            result.attempts,
            result.worker,
            not result.ok,
        )
        assert (row["enqueued_at"], row["started_at"], row["finished_at"]) == (
            result.enqueued_at,
            result.started_at,
            result.finished_at,
        )
        assert row["error_message"] == (None if result.ok else str(result.error))


def test_rerun_failed_with_no_failure_recorded_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "job.sqlite"
    _job(Calls(), range(3), path)
    summary = _job(Calls(), range(3), path, rerun="failed")
    assert (summary.tasks, summary.skipped) == (0, 3)
    assert "records no failed item, so nothing will run" in caplog.text


@pytest.mark.usefixtures("no_leftover_threads")
def test_a_cancelled_job_leaves_no_writer_thread_and_its_rows_written(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"

    async def cancel_midway() -> None:
        job = pcmodel.start_job(Calls(), range(100), ledger=path, workers=5, clock="virtual")
        await asyncio.sleep(4.5)
        job.cancel()
        await asyncio.wait([job])
        assert job.cancelled()

    with asyncio.Runner(loop_factory=pcmodel.VirtualTimeLoop) as runner:
        runner.run(cancel_midway())
    assert sorted(row["params"] for row in Ledger(path).rows()) == list(range(20))
