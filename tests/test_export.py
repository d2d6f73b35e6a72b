"""The exported timeline: a Trace Event Format file Perfetto opens, and a CSV of the task windows.

No Perfetto UI can be loaded here (it is a web app served from the internet), so the trace is
checked against the format itself: the fields each phase requires, slices that nest or are
disjoint on every track, counters that match the job's own figures, and times that are the
job's virtual-clock times in microseconds.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import itertools
import json
import math
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcmodel
from pcmodel import export, workloads
from pcmodel.broker.messages import RemoteError
from pcmodel.broker.records import BrokerJobSummary, WorkerProcess
from pcmodel.ledger import LedgerError
from pcmodel.records import JobSummary, TaskResult
from pcmodel.timeline import peak_concurrency

MICRO = 1_000_000
PHASES = {"X", "i", "C", "M"}


def check_trace(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """Check a trace against the Trace Event Format; return its events.

    The rules a viewer relies on: the JSON object form with `traceEvents`; every event has
    name, ph, ts, pid and tid; a complete slice ("X") has a non-negative `dur`; a counter ("C")
    has numeric args; an instant ("i") a scope; every track an event lands on is named; and on
    one track, slices nest or are disjoint.
    """
    assert json.loads(json.dumps(trace, allow_nan=False)) == trace, "not strict JSON"
    assert trace["displayTimeUnit"] in {"ms", "ns"}
    events = trace["traceEvents"]
    assert isinstance(events, list)
    named: set[tuple[int, int]] = set()
    slices: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for event in events:
        for field in ("name", "ph", "ts", "pid", "tid"):
            assert field in event, f"{field} missing from {event}"
        assert isinstance(event["name"], str)
        assert event["ph"] in PHASES, event
        assert isinstance(event["ts"], int | float), event
        assert event["ts"] >= 0, event
        assert isinstance(event["pid"], int), event
        assert isinstance(event["tid"], int), event
        if event["ph"] == "M":
            if event["name"] == "thread_name":
                named.add((event["pid"], event["tid"]))
                assert isinstance(event["args"]["name"], str)
        elif event["ph"] == "C":
            assert event["args"], event
            assert all(isinstance(v, int | float) and v >= 0 for v in event["args"].values()), event
        else:
            assert (event["pid"], event["tid"]) in named, f"unnamed track for {event}"
            if event["ph"] == "X":
                assert isinstance(event["dur"], int | float), event
                assert event["dur"] >= 0, event
                slices.setdefault((event["pid"], event["tid"]), []).append((event["ts"], event["dur"]))
            else:
                assert event["s"] in {"g", "p", "t"}, event
    for track, spans in slices.items():
        open_ends: list[float] = []
        for ts, dur in sorted(spans, key=lambda span: (span[0], -span[1])):
            while open_ends and open_ends[-1] <= ts:
                open_ends.pop()
            if open_ends:
                assert ts + dur <= open_ends[-1], f"slices overlap without nesting on {track}"
            open_ends.append(ts + dur)
    return events


def _of(events: Iterable[dict[str, Any]], ph: str, name: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["ph"] == ph and (name is None or e["name"] == name)]


def _track_names(events: list[dict[str, Any]]) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in _of(events, "M", "thread_name")}


def _cars(tasks: int = 24, **kwargs: Any) -> JobSummary:
    job = workloads.car_prices(tasks, seed=4, failure_rate=0.25)
    options: dict[str, Any] = {"workers": 4, "clock": "virtual", **kwargs}
    return pcmodel.run_job(job.function, job.params, **options)


def _qualified(error: BaseException | None) -> str:
    """The name a ledger gives an error's type: qualified unless built-in."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _result(task_id: int, worker: int, start: float, end: float, **fields: Any) -> TaskResult:
    values: dict[str, Any] = {"params": task_id, "value": None, "error": None, "enqueued_at": 0.0}
    values.update(fields)
    return TaskResult(
        task_id,
        values["params"],
        values["value"],
        values["error"],
        worker,
        values["enqueued_at"],
        start,
        end,
    )


# -- the trace of a job ----------------------------------------------------------------------


def test_trace_has_a_named_track_per_worker_and_a_slice_per_task_at_the_jobs_exact_times() -> None:
    summary = _cars()
    results = summary.results or ()
    trace = pcmodel.export.trace_events(summary)
    events = check_trace(trace)
    names = _track_names(events)
    assert sorted(v for v in names.values() if v.startswith("worker")) == [f"worker {w}" for w in range(4)]
    slices = {e["args"]["task_id"]: e for e in _of(events, "X") if e["cat"].startswith("task")}
    assert sorted(slices) == [r.task_id for r in results]
    for result in results:
        event = slices[result.task_id]
        assert names[event["tid"]] == f"worker {result.worker}"
        assert event["name"] == f"task {result.task_id}"
        assert event["ts"] == result.started_at * MICRO  # exactly the virtual time
        end = result.finished_at * MICRO
        assert event["ts"] + event["dur"] <= end
        assert end - (event["ts"] + event["dur"]) <= 2 * math.ulp(end)
        args = event["args"]
        assert (args["enqueued_at"], args["started_at"], args["finished_at"]) == (
            result.enqueued_at,
            result.started_at,
            result.finished_at,
        )
        assert args["params"] == repr(result.params)
        assert args["ok"] is result.ok
        assert args["attempts"] == result.attempts
        if result.ok:
            assert "error" not in args
        else:
            assert args["error_type"] == _qualified(result.error)
            assert args["error"] == str(result.error)
    assert trace["otherData"]["tasks"] == summary.tasks
    assert trace["otherData"]["elapsed"] == summary.elapsed


def test_slices_on_a_worker_track_are_disjoint_and_follow_each_other() -> None:
    summary = _cars(60, workers=7)
    events = check_trace(export.trace_events(summary))
    by_track: dict[int, list[dict[str, Any]]] = {}
    for event in _of(events, "X"):
        by_track.setdefault(event["tid"], []).append(event)
    for spans in by_track.values():
        spans.sort(key=lambda e: e["ts"])
        for before, after in itertools.pairwise(spans):
            assert before["ts"] + before["dur"] <= after["ts"]
    assert "overlap" not in " ".join(_track_names(events).values())


def test_queue_depth_counter_is_the_summarys_queue_depth() -> None:
    summary = _cars(40, workers=3, queue_size=4)
    events = check_trace(export.trace_events(summary))
    depth = [(e["ts"], e["args"]["depth"]) for e in _of(events, "C", "work queue")]
    assert depth == [(s.time * MICRO, s.depth) for s in summary.queue_depth or ()]
    assert max(d for _, d in depth) == summary.max_queue_depth == 4
    assert depth[-1][1] == 0


def test_busy_counter_peaks_at_the_jobs_peak_concurrency_and_ends_at_zero() -> None:
    summary = _cars(40, workers=3, queue_size=4)
    events = check_trace(export.trace_events(summary))
    busy = [e["args"]["busy"] for e in _of(events, "C", "workers")]
    assert max(busy) == peak_concurrency(summary) == 3
    assert busy[-1] == 0


def test_producer_blocked_periods_are_slices_on_their_own_track() -> None:
    summary = _cars(40, workers=3, queue_size=4)
    assert summary.producer_blocked, "the job should make its producer wait"
    events = check_trace(export.trace_events(summary))
    names = _track_names(events)
    blocked = [e for e in _of(events, "X") if e["cat"] == "producer"]
    assert {names[e["tid"]] for e in blocked} == {"producers blocked"}
    assert [(e["args"]["start"], e["args"]["end"]) for e in blocked] == sorted(summary.producer_blocked)
    assert [e["ts"] for e in blocked] == [start * MICRO for start, _ in sorted(summary.producer_blocked)]


def test_each_failure_is_an_instant_on_its_workers_track_where_the_task_ended() -> None:
    summary = _cars(24, retries=1)
    failed = [r for r in summary.results or () if not r.ok]
    assert failed, "the seed should give failures"
    events = check_trace(export.trace_events(summary))
    instants = _of(events, "i")
    assert sorted(e["args"]["task_id"] for e in instants) == [r.task_id for r in failed]
    slices = {e["args"]["task_id"]: e for e in _of(events, "X")}
    for instant in instants:
        task = slices[instant["args"]["task_id"]]
        assert instant["tid"] == task["tid"]
        assert instant["ts"] == task["ts"] + task["dur"]
        assert instant["name"] == f"failed: {type(failed[0].error).__name__}"
        assert task["args"]["error_type"].endswith(instant["name"].removeprefix("failed: "))
        assert instant["s"] == "t"
    assert any(e["args"]["attempts"] == 2 for e in slices.values()), "retries should show"


def test_a_fail_fast_stop_shows_its_cancelled_calls_as_cancelled() -> None:
    async def call(n: int) -> int:
        await asyncio.sleep(1 + n / 10)
        if n == 0:
            raise ValueError("first")
        return n

    summary = pcmodel.run_job(call, range(6), workers=3, clock="virtual", fail_fast=True)
    assert summary.cancelled == 2
    events = check_trace(export.trace_events(summary))
    names = sorted(e["name"] for e in _of(events, "i"))
    assert names == ["cancelled: CancelledError", "cancelled: CancelledError", "failed: ValueError"]
    assert export.trace_events(summary)["otherData"]["error"] == "ValueError: first"


def test_an_empty_job_gives_named_worker_tracks_and_nothing_else() -> None:
    async def call(n: int) -> int:
        return n

    summary = pcmodel.run_job(call, [], workers=2, clock="virtual")
    events = check_trace(export.trace_events(summary))
    assert {e["ph"] for e in events} == {"M"}
    assert sorted(_track_names(events).values()) == ["worker 0", "worker 1"]
    assert export.trace_events([])["traceEvents"][0]["name"] == "process_name"


def test_write_trace_writes_the_events_as_strict_json(tmp_path: Path) -> None:
    summary = _cars()
    path = export.write_trace(summary, tmp_path / "job.json")
    assert path == tmp_path / "job.json"
    assert json.loads(path.read_text(encoding="utf-8")) == export.trace_events(summary)


# -- other sources ---------------------------------------------------------------------------


def test_an_iterable_of_results_exports_only_those_and_the_workers_they_ran_on() -> None:
    summary = _cars(24)
    failed = [r for r in summary.results or () if not r.ok]
    events = check_trace(export.trace_events(r for r in failed))
    assert sorted(e["args"]["task_id"] for e in _of(events, "X")) == [r.task_id for r in failed]
    assert sorted(_track_names(events).values()) == sorted({f"worker {r.worker}" for r in failed})
    depth = [(e["ts"], e["args"]["depth"]) for e in _of(events, "C", "work queue")]
    assert depth == [(s.time * MICRO, s.depth) for s in pcmodel.records.queue_depth(failed)]


def test_overlapping_tasks_of_one_worker_go_to_an_overlap_track() -> None:
    results = [
        _result(0, 0, 0.0, 2.0),
        _result(1, 0, 1.0, 3.0),  # overlaps task 0 without nesting in it
        _result(2, 0, 2.0, 2.5),  # starts when task 0 ends: back on the worker's track
        _result(3, 0, 0.5, 1.5),  # overlaps both
    ]
    events = check_trace(export.trace_events(results))
    names = _track_names(events)
    track = {e["args"]["task_id"]: names[e["tid"]] for e in _of(events, "X")}
    assert track == {0: "worker 0", 1: "worker 0 (overlap 2)", 2: "worker 0", 3: "worker 0 (overlap 1)"}


def test_a_task_that_failed_before_any_worker_gets_a_track_of_its_own() -> None:
    results = [_result(0, -1, 1.0, 1.0, error=TypeError("params JSON cannot carry")), _result(1, 0, 0.0, 1.0)]
    events = check_trace(export.trace_events(results))
    names = _track_names(events)
    assert sorted(names.values()) == ["failed before a worker", "worker 0"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), min_size=1, max_size=8),
        min_size=1,
        max_size=4,
    ),
    st.floats(min_value=0.0, max_value=1e5),
)
def test_back_to_back_tasks_never_overlap_after_rounding_to_microseconds(
    durations: list[list[float]], offset: float
) -> None:
    """A task that starts when the previous one ends must not overlap it in the file, even
    where `start * 1e6 + (end * 1e6 - start * 1e6)` rounds past `end * 1e6`."""
    results: list[TaskResult] = []
    for worker, lane in enumerate(durations):
        time = offset
        for duration in lane:
            results.append(_result(len(results), worker, time, time + duration))
            time += duration
    events = check_trace(export.trace_events(results))
    for event in _of(events, "X"):
        assert event["ts"] == event["args"]["started_at"] * MICRO
        assert event["ts"] + event["dur"] <= event["args"]["finished_at"] * MICRO


# -- refused sources -------------------------------------------------------------------------


def test_a_summary_without_trace_is_refused_with_the_remedy() -> None:
    summary = _cars(trace=False)
    with pytest.raises(ValueError, match=r"trace=False.*run it again with trace=True"):
        export.trace_events(summary)
    with pytest.raises(ValueError, match="trace=False"):
        export.write_csv(summary, "never-written.csv")
    assert not Path("never-written.csv").exists()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (42, "got int"),
        ("job.sqlite", "got the path 'job.sqlite'"),
        ([(0, 1, 2)], "source item 0 must be a TaskResult, got tuple"),
        ([_result(0, 0, 0.0, 1.0), None], "source item 1 must be a TaskResult, got NoneType"),
        ([_result("zero", 0, 0.0, 1.0)], "source item 0 has a field of the wrong type"),  # type: ignore[arg-type]
    ],
)
def test_what_is_not_a_source_is_refused_with_a_type_error(source: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        export.trace_events(source)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (_result(0, 0, 0.0, math.nan), "not finite"),
        (_result(0, 0, 0.0, math.inf), "not finite"),
        (_result(0, 0, 2.0, 1.0), "out of order"),
        (_result(0, 0, 1.0, 2.0, enqueued_at=1.5), "out of order"),
    ],
)
def test_times_no_viewer_could_draw_are_refused_with_a_value_error(result: TaskResult, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        export.trace_events([result])


# -- hostile params and errors ---------------------------------------------------------------


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _SilentError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def _hostile_results() -> list[TaskResult]:
    cycle: list[Any] = []
    cycle.append(cycle)
    return [
        _result(0, 0, 0.0, 1.0, params=_Unprintable(), error=_SilentError()),
        _result(1, 1, 0.0, 1.0, params={1, 2}),  # a set: not JSON
        _result(2, 2, 0.0, 1.0, params={"price": math.nan}),  # NaN: not strict JSON
        _result(3, 0, 1.0, 2.0, params=cycle, error=ValueError("\N{SNOWMAN} prix 3\u00a0€\nligne 2")),
        _result(4, 1, 1.0, 2.0, params="\ud800 lone surrogate", error=KeyError("\ud83d")),
        _result(5, 2, 1.0, 2.0, params={"ville": "Zürich", "emoji": "\N{AUTOMOBILE}"}),
        _result(6, 0, 2.0, 3.0, params="x" * 10_000),
    ]


def test_hostile_params_and_errors_still_export_a_valid_trace(tmp_path: Path) -> None:
    path = export.write_trace(_hostile_results(), tmp_path / "hostile.json")
    trace = json.loads(path.read_text(encoding="utf-8"))
    events = check_trace(trace)
    args = {e["args"]["task_id"]: e["args"] for e in _of(events, "X")}
    assert args[0]["params"] == "<_Unprintable object: its repr raised RuntimeError>"
    assert args[0]["error_type"] == "tests.test_export._SilentError"
    assert args[0]["error"] == "<its str raised RuntimeError>"
    assert args[3]["error"] == "\N{SNOWMAN} prix 3\u00a0€\nligne 2"
    assert args[4]["params"] == "'\\ud800 lone surrogate'"
    assert args[5]["params"] == repr({"ville": "Zürich", "emoji": "\N{AUTOMOBILE}"})
    assert len(args[6]["params"]) == 500
    assert args[6]["params"].endswith("\N{HORIZONTAL ELLIPSIS}")


def test_a_summary_whose_error_cannot_be_printed_still_exports() -> None:
    class Loud(Exception):
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def __str__(self) -> str:
            raise RuntimeError("no str")

    async def call(n: int) -> int:
        raise Loud

    summary = pcmodel.run_job(call, range(2), workers=1, clock="virtual", fail_fast=True)
    trace = export.trace_events(summary)
    check_trace(trace)
    assert trace["otherData"]["error"] == (
        f"{__name__}.test_a_summary_whose_error_cannot_be_printed_still_exports.<locals>.Loud: "
        "<its str raised RuntimeError>"
    )


# -- CSV -------------------------------------------------------------------------------------


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames or ()) == export.CSV_COLUMNS
        return list(reader)


def test_csv_round_trips_every_task_window_exactly(tmp_path: Path) -> None:
    summary = _cars(24, retries=1)
    results = summary.results or ()
    rows = _read_csv(export.write_csv(summary, tmp_path / "job.csv"))
    assert len(rows) == len(results)
    for row, result in zip(rows, results, strict=True):
        assert int(row["task_id"]) == result.task_id
        assert int(row["worker"]) == result.worker
        assert float(row["enqueued_at"]) == result.enqueued_at
        assert float(row["started_at"]) == result.started_at
        assert float(row["finished_at"]) == result.finished_at
        assert float(row["wait"]) == result.wait
        assert float(row["duration"]) == result.duration
        assert row["ok"] == str(result.ok)
        assert int(row["attempts"]) == result.attempts
        assert row["error_type"] == ("" if result.error is None else _qualified(result.error))
        assert row["error"] == ("" if result.ok else str(result.error))
        assert json.loads(row["params"]) == json.loads(json.dumps(result.params))


def test_csv_of_hostile_params_and_errors_reads_back(tmp_path: Path) -> None:
    rows = _read_csv(export.write_csv(_hostile_results(), tmp_path / "hostile.csv"))
    by_id = {int(row["task_id"]): row for row in rows}
    assert by_id[0]["params"] == "<_Unprintable object: its repr raised RuntimeError>"
    assert by_id[0]["error"] == "<its str raised RuntimeError>"
    assert by_id[1]["params"] == "{1, 2}"  # not JSON: the repr
    assert by_id[2]["params"] == "{'price': nan}"
    assert by_id[3]["params"] == "[[...]]"
    assert by_id[3]["error"] == "\N{SNOWMAN} prix 3\u00a0€\nligne 2"  # the newline survives quoting
    assert by_id[4]["params"] == '"\\ud800 lone surrogate"'
    assert by_id[4]["error_type"] == "KeyError"
    assert json.loads(by_id[5]["params"]) == {"ville": "Zürich", "emoji": "\N{AUTOMOBILE}"}
    assert json.loads(by_id[6]["params"]) == "x" * 10_000  # the CSV keeps the whole params


def test_csv_of_an_empty_job_has_only_its_header(tmp_path: Path) -> None:
    path = export.write_csv([], tmp_path / "empty.csv")
    assert path.read_text(encoding="utf-8").splitlines() == [",".join(export.CSV_COLUMNS)]


def test_a_broker_jobs_worker_processes_are_processes_of_the_trace_with_a_track_per_slot() -> None:
    local = _cars(24, workers=4)
    processes = (
        WorkerProcess("hostA:11:x", "hostA", 11, first_lane=0, workers=2, tasks=0),
        WorkerProcess("hostB:22:y", "hostB", 22, first_lane=2, workers=2, tasks=0),
    )
    fields = {field.name: getattr(local, field.name) for field in dataclasses.fields(JobSummary)}
    summary = BrokerJobSummary(**fields, job_id="j", queue="q", processes=processes)
    events = check_trace(export.trace_events(summary))
    processes_named = {e["pid"]: e["args"]["name"] for e in _of(events, "M", "process_name")}
    assert sorted(processes_named.values()) == [
        "pcmodel job",
        "worker process hostA:11",
        "worker process hostB:22",
    ]
    names = _track_names(events)
    for event in _of(events, "X"):
        lane = event["args"]["worker"]
        process = processes[lane // 2]
        assert processes_named[event["pid"]] == f"worker process {process.label}"
        assert names[event["tid"]] == f"slot {lane - process.first_lane} (lane {lane})"
    counters = {processes_named[e["pid"]] for e in _of(events, "C")}
    assert counters == {"pcmodel job"}, "the queue belongs to the job, not to a worker process"


def test_an_error_from_a_worker_process_keeps_its_original_type_name(tmp_path: Path) -> None:
    remote = RemoteError("mypackage.errors.QuotaError", "quota \N{EM DASH} 0 left")
    results = [_result(0, 0, 0.0, 1.0, error=remote)]
    events = check_trace(export.trace_events(results))
    [instant] = _of(events, "i")
    assert instant["name"] == "failed: QuotaError"
    assert _of(events, "X")[0]["args"]["error_type"] == "mypackage.errors.QuotaError"
    assert _of(events, "X")[0]["args"]["error"] == "quota \N{EM DASH} 0 left"
    [row] = _read_csv(export.write_csv(results, tmp_path / "remote.csv"))
    assert (row["error_type"], row["error"]) == ("mypackage.errors.QuotaError", "quota \N{EM DASH} 0 left")


# -- from a ledger ---------------------------------------------------------------------------

API_DOWN = {"down": True}


async def _price(car: int) -> int:
    """A price API that is down for every fifth car while API_DOWN says so."""
    await asyncio.sleep(0.5 + (car % 3) / 10)
    if API_DOWN["down"] and car % 5 == 2:
        raise ConnectionError(f"price API unavailable for car {car}")
    return 1000 + car


def _three_runs(path: Path) -> list[JobSummary]:
    """A job stopped part way, resumed, then its failures rerun once the API is back."""
    stop = pcmodel.StopSignal()

    def stop_at_1_s(result: TaskResult) -> None:
        if result.finished_at >= 1.0:
            stop.set()

    API_DOWN["down"] = True
    options: dict[str, Any] = {"workers": 3, "clock": "virtual", "ledger": path}
    first = pcmodel.run_job(_price, range(20), stop=stop, on_task_complete=stop_at_1_s, **options)
    second = pcmodel.run_job(_price, range(20), **options)
    API_DOWN["down"] = False
    third = pcmodel.run_job(_price, range(20), rerun="failed", **options)
    return [first, second, third]


def test_a_ledger_shows_each_run_as_a_process_with_the_items_it_recorded_last(tmp_path: Path) -> None:
    path = tmp_path / "prices.sqlite"
    first, second, third = _three_runs(path)
    assert (first.stop_reason, second.skipped, third.skipped) == ("stop", first.tasks, 20 - third.tasks)
    ledger = pcmodel.Ledger(path)
    rows = ledger.rows()
    trace = export.trace_events(ledger)
    events = check_trace(trace)
    processes = {e["pid"]: e["args"]["name"] for e in _of(events, "M", "process_name")}
    assert sorted(processes.values()) == ["run 1", "run 2", "run 3"]
    slices = _of(events, "X")
    assert len(slices) == len(rows) == 20
    by_item = {(processes[e["pid"]], e["args"]["task_id"]): e for e in slices}
    for row in rows:
        event = by_item[(f"run {row['run']}", row["task_id"])]
        assert event["ts"] == row["started_at"] * MICRO  # each run on its own clock
        assert event["args"]["params"] == repr(row["params"])
        assert event["args"]["ok"] is row["ok"] is True  # the failures were rerun in run 3
    rerun = {row["key"] for row in rows if row["run"] == 3}
    assert rerun == {"2", "7", "12", "17"}, "run 3 reran the failures of runs 1 and 2"
    assert sum(processes[e["pid"]] == "run 3" for e in slices) == third.tasks == 4
    assert trace["otherData"]["items"] == 20
    assert trace["otherData"]["runs"] == 3
    for run in (1, 2, 3):
        pid = next(p for p, name in processes.items() if name == f"run {run}")
        depth = [(e["ts"], e["args"]["depth"]) for e in _of(events, "C", "work queue") if e["pid"] == pid]
        run_results = [r for r, row in zip(ledger.results(), rows, strict=True) if row["run"] == run]
        assert depth == [(s.time * MICRO, s.depth) for s in pcmodel.records.queue_depth(run_results)]


def test_a_ledgers_failures_keep_the_error_type_it_recorded(tmp_path: Path) -> None:
    path = tmp_path / "prices.sqlite"
    API_DOWN["down"] = True
    pcmodel.run_job(_price, range(10), workers=3, clock="virtual", ledger=path)
    ledger = pcmodel.Ledger(path)
    failed = ledger.results(status="failed")
    assert len(failed) == 2
    for source in (ledger, failed):  # the ledger itself, or its results (RecordedError)
        events = check_trace(export.trace_events(source))
        failures = [e["args"] for e in _of(events, "X") if not e["args"]["ok"]]
        assert [(a["error_type"], a["error"]) for a in failures] == [
            ("ConnectionError", "price API unavailable for car 2"),
            ("ConnectionError", "price API unavailable for car 7"),
        ]
        assert [e["name"] for e in _of(events, "i")] == ["failed: ConnectionError"] * 2


def test_csv_of_a_ledger_adds_each_items_run_key_and_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "prices.sqlite"
    _three_runs(path)
    ledger = pcmodel.Ledger(path)
    table = export.write_csv(ledger, tmp_path / "prices.csv")
    with table.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames or ()) == export.CSV_COLUMNS + export.LEDGER_CSV_COLUMNS
        read = list(reader)
    rows = ledger.rows()
    assert len(read) == len(rows)
    for line, row in zip(read, rows, strict=True):
        assert (int(line["run"]), line["key"], line["dead_letter"]) == (row["run"], row["key"], "False")
        assert float(line["started_at"]) == row["started_at"]
        assert json.loads(line["params"]) == row["params"]
        assert line["ok"] == "True"


def test_a_ledger_with_times_out_of_order_is_refused_naming_the_item(tmp_path: Path) -> None:
    path = tmp_path / "prices.sqlite"
    API_DOWN["down"] = False
    pcmodel.run_job(_price, range(3), workers=3, clock="virtual", ledger=path)
    with sqlite3.connect(path) as connection:  # a hand edit
        connection.execute("UPDATE items SET finished_at = -1 WHERE key = '1'")
    connection.close()
    with pytest.raises(ValueError, match=r"the ledger's item '1' \(task 1\) has its times out of order"):
        export.trace_events(pcmodel.Ledger(path))


def test_a_missing_ledger_is_a_ledger_error_and_its_bare_path_a_type_error(tmp_path: Path) -> None:
    path = tmp_path / "none.sqlite"
    with pytest.raises(LedgerError, match="there is no ledger"):
        export.write_trace(pcmodel.Ledger(path), tmp_path / "none.json")
    assert not (tmp_path / "none.json").exists()
    with pytest.raises(TypeError, match=r"give pcmodel\.Ledger\(path\)"):
        export.trace_events(path)  # type: ignore[arg-type]


def test_a_ledger_whose_job_had_no_items_exports_an_empty_trace_and_a_header(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    pcmodel.run_job(_price, [], workers=2, clock="virtual", ledger=path)
    ledger = pcmodel.Ledger(path)
    assert check_trace(export.trace_events(ledger)) == []
    table = export.write_csv(ledger, tmp_path / "empty.csv")
    assert table.read_text(encoding="utf-8").splitlines() == [
        ",".join(export.CSV_COLUMNS + export.LEDGER_CSV_COLUMNS)
    ]


def test_an_adaptive_jobs_limit_is_a_counter_and_each_drop_an_instant_on_its_workers_track() -> None:
    api = workloads.SimulatedCarAPI(seed=1, capacity=4)
    retry = pcmodel.Retry(1000, on=workloads.RETRYABLE_ERRORS, backoff=0.05, multiplier=1, seed=1)
    summary = pcmodel.run_job(
        api, range(200), workers=pcmodel.Adaptive(max=20), retries=retry, clock="virtual"
    )
    assert summary.limit_changes, "the limit should move"
    assert summary.drops, "the job should meet the API's capacity"
    events = check_trace(export.trace_events(summary))
    limits = [(e["ts"], e["args"]["limit"]) for e in _of(events, "C", "concurrency limit")]
    assert limits == [(change.time * MICRO, change.limit) for change in summary.limit_changes]
    instants = [e for e in _of(events, "i") if e["cat"] == "drop"]
    assert [(e["ts"], e["args"]["task_id"], e["name"]) for e in instants] == sorted(
        (drop.time * MICRO, drop.task_id, "429") for drop in summary.drops
    )
    names = _track_names(events)
    assert all(names[e["tid"]] == f"worker {e['args']['worker']}" for e in instants)


def test_a_fixed_pools_limit_that_never_moved_is_no_counter() -> None:
    summary = _cars(20, workers=3)
    assert summary.limit_changes is not None
    assert len(summary.limit_changes) == 1
    events = check_trace(export.trace_events(summary))
    assert _of(events, "C", "concurrency limit") == []
