"""Export a job's timeline for the tools engineers already use: Perfetto, chrome://tracing, CSV.

A timeline plot (`pcmodel.plot_timeline`) shows a job in a notebook; a job of 10,000 items
needs a viewer that zooms. Perfetto (ui.perfetto.dev) and Chrome's `chrome://tracing` both
open the Trace Event Format, a JSON object with a list of events, so `write_trace` writes
one:

- one track per worker ("worker 0", "worker 1", ...), with a slice per task window, from the
  moment the worker took the item to the end of its last attempt; the slice's arguments give
  the task id, the params (their `repr`), how it ended, the attempts and the exact times in
  seconds (a job run on worker processes shows each process, `host:pid`, with a track per
  worker slot);
- an instant event on the worker's track where a task failed, named after the error;
- counters: the work queue's depth over time (`JobSummary.queue_depth`), the workers busy and,
  when it moved, the concurrency limit (`JobSummary.limit_changes`: an adaptive pool, or one
  resized while it ran);
- an instant event on the worker's track for each attempt dropped by congestion
  (`JobSummary.drops`: "429" for a rate-limited attempt, "timeout" for one that timed out);
- a track for the periods a producer was blocked on a full queue (backpressure).

Times are microseconds since the job started, as the format wants: `ts` is exactly
`started_at * 1e6`. `write_csv` writes the task windows as a table, one row per task, for a
spreadsheet or `pandas.read_csv`.

A source is a `JobSummary` of a job run with `trace=True`, a `pcmodel.Ledger` (every run
that used it), or any iterable of `TaskResult`s (a filtered list of `summary.results`, say). The only user code an export runs is what turns
params and errors into text (`repr`, `str`, JSON); when that raises, the text says so and the
export goes on.
"""

from __future__ import annotations

import csv
import json
import math
import operator
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pcmodel.broker.messages import RemoteError
from pcmodel.broker.records import BrokerJobSummary, WorkerProcess
from pcmodel.ledger import Ledger, RecordedError
from pcmodel.records import DepthSample, Drop, JobSummary, LimitChange, TaskResult, queue_depth

__all__ = ["CSV_COLUMNS", "LEDGER_CSV_COLUMNS", "trace_events", "write_csv", "write_trace"]

CSV_COLUMNS = (
    "task_id",
    "worker",
    "enqueued_at",
    "started_at",
    "finished_at",
    "wait",
    "duration",
    "ok",
    "error_type",
    "error",
    "attempts",
    "params",
)
"""The columns of `write_csv`, in order."""

LEDGER_CSV_COLUMNS = ("run", "key", "dead_letter")
"""The columns `write_csv` adds after `CSV_COLUMNS` for a ledger: the run that recorded each
item (each run's times count from its own start), the item's key, and whether it failed
after every retry."""

_MICROSECONDS = 1_000_000
_MAX_TEXT = 500  # characters of a repr or message kept in a slice's arguments
_CANCELLED = frozenset({"CancelledError", "asyncio.exceptions.CancelledError"})
_QUEUE_COUNTER = "work queue"
_BUSY_COUNTER = "workers"
_LIMIT_COUNTER = "concurrency limit"
_DROP_NAMES = {"rate_limited": "429", "timeout": "timeout"}
_BLOCKED_TRACK = "producers blocked"


@dataclass(frozen=True, slots=True)
class _Task:
    """A task's fields checked and made plain JSON-ready values, its error made text once."""

    task_id: int
    worker: int
    enqueued_at: float
    started_at: float
    finished_at: float
    attempts: int
    params: Any
    error_type: str | None
    """None if the task succeeded; else its error's type, named as a ledger names it."""
    error: str
    """The error's message, whole ("" if the task succeeded)."""
    run: int | None = None
    """From a ledger: the run (1 for the first job that used it) that recorded the task."""
    key: str | None = None
    """From a ledger: the item's key."""
    dead_letter: bool | None = None
    """From a ledger: whether the item failed after every retry."""

    @property
    def cancelled(self) -> bool:
        """True if a fail-fast stop cancelled the call."""
        return self.error_type in _CANCELLED


@dataclass(frozen=True, slots=True)
class _Part:
    """One job's share of a trace: its own process, tracks and counters."""

    title: str
    """The process's name in the viewer."""
    tasks: list[_Task]
    depth: Sequence[DepthSample]
    """The work queue's depth over time."""
    blocked: Sequence[tuple[float, float]] = ()
    """(start, end) of each period a producer was blocked on a full queue."""
    workers: int = 0
    """Lanes 0 to workers - 1 get a track even if they ran nothing."""
    processes: Sequence[WorkerProcess] = ()
    """The worker processes that own lanes, for a job run through a broker."""
    limits: Sequence[LimitChange] = ()
    """Each change of the concurrency limit; drawn only if the limit moved."""
    drops: Sequence[Drop] = ()
    """The attempts dropped by congestion (429s, timeouts)."""


def trace_events(source: JobSummary | Ledger | Iterable[TaskResult]) -> dict[str, Any]:
    """A job's timeline in the Trace Event Format, ready for `json.dump`.

    Perfetto and chrome://tracing show it with a track per worker and a slice per task; see
    the module's docstring for every event. A job run on worker processes (a
    `BrokerJobSummary`) shows each process as a process of the trace, with a track per
    worker slot, named `host:pid` as on the timeline. On one track, slices never overlap:
    should two tasks of one worker overlap in time (records built by hand, say), the later
    one goes to a track of its own, "worker 3 (overlap 1)", rather than a slice the viewer
    would misdraw.

    A ledger shows each run that used it as a process of its own ("run 1", "run 2", ...),
    each on its own clock (seconds since that run started). A ledger keeps each item's latest
    outcome, so a run shows the items whose latest outcome it recorded: after a
    `rerun="failed"`, the items that failed before appear in the last run only.

    Args:
        source: the `JobSummary` of a job run with `trace=True`, a `pcmodel.Ledger`, or an
            iterable of `TaskResult`s.

    Returns:
        A dict with "traceEvents" (the events, metadata first, then in time order),
        "displayTimeUnit" ("ms") and "otherData" (the job's figures, for the viewer's
        metadata panel).

    Raises:
        TypeError: `source` is none of those, or holds something that is not a `TaskResult`.
        ValueError: the summary's job ran with `trace=False`, or a result's times are not
            finite or not in order (enqueued, started, finished).
        pcmodel.ledger.LedgerError: the ledger's file is missing, damaged or not a ledger.
    """
    origin, tasks = _read_source(source)
    other: dict[str, Any]
    if isinstance(origin, Ledger):
        runs: dict[int, list[_Task]] = {}
        for task in tasks:
            runs.setdefault(task.run or 0, []).append(task)
        parts = [
            _Part(f"run {run}", run_tasks, queue_depth(_as_results(run_tasks)))
            for run, run_tasks in sorted(runs.items())
        ]
        other = {"ledger": str(origin.path), "function": origin.function, **origin.counts()}
        other["time"] = "microseconds since the start of each run"
    elif isinstance(origin, JobSummary):
        parts = [
            _Part(
                "pcmodel job",
                tasks,
                origin.queue_depth or (),
                blocked=origin.producer_blocked or (),
                workers=origin.workers,
                processes=origin.processes if isinstance(origin, BrokerJobSummary) else (),
                limits=origin.limit_changes or (),
                drops=origin.drops or (),
            )
        ]
        other = _figures(origin)
        other["time"] = "microseconds since the job started"
    else:
        parts = [_Part("pcmodel job", tasks, queue_depth(_as_results(tasks)))]
        other = {"tasks": len(tasks), "time": "microseconds since the job started"}
    other["source"] = "pcmodel"
    tracks = _Tracks()
    timed = [event for part in parts for event in _part_events(part, tracks)]
    # Time order; at one instant a longer slice first, so a viewer reads nesting right.
    timed.sort(key=lambda event: (event["ts"], -event.get("dur", 0.0)))
    return {
        "traceEvents": tracks.metadata() + timed,
        "displayTimeUnit": "ms",
        "otherData": other,
    }


def write_trace(source: JobSummary | Ledger | Iterable[TaskResult], path: str | os.PathLike[str]) -> Path:
    """Write a job's timeline as a Trace Event Format JSON file; open it in Perfetto.

    Drag the file onto ui.perfetto.dev (it stays in the browser: nothing is uploaded), or
    load it in Chrome's chrome://tracing. See `trace_events` for what it holds.

    Args:
        source: the `JobSummary` of a job run with `trace=True`, a `pcmodel.Ledger`, or an
            iterable of `TaskResult`s.
        path: the file to write (replaced if it exists); `.json` by convention.

    Returns:
        The path written, as a `Path`.

    Raises:
        TypeError, ValueError, LedgerError: as `trace_events`.
    """
    events = trace_events(source)
    target = Path(path)
    # allow_nan=False: the format is strict JSON, and trace_events already refused NaN times.
    text = json.dumps(events, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    target.write_text(text, encoding="utf-8")
    return target


def write_csv(source: JobSummary | Ledger | Iterable[TaskResult], path: str | os.PathLike[str]) -> Path:
    """Write a job's task windows as CSV: one row per task, the columns of `CSV_COLUMNS`.

    Times are seconds since the job started, written exactly (`repr` of the float), so
    `float()` of a cell gives back the job's time. `ok` is `True` or `False`; `error_type`
    (qualified unless built-in, as a ledger names it) and `error` (its message) are empty for
    a task that succeeded. `params` is JSON where the params can be written as JSON (a
    tuple becomes a list), and their Python `repr` otherwise. The file is UTF-8;
    `csv.DictReader` or `pandas.read_csv` reads it back. For a ledger, the columns of
    `LEDGER_CSV_COLUMNS` follow: each item's run, key and whether it is a dead letter.

    Args:
        source: the `JobSummary` of a job run with `trace=True`, a `pcmodel.Ledger`, or an
            iterable of `TaskResult`s.
        path: the file to write (replaced if it exists).

    Returns:
        The path written, as a `Path`.

    Raises:
        TypeError, ValueError, LedgerError: as `trace_events`.
    """
    origin, tasks = _read_source(source)
    from_ledger = isinstance(origin, Ledger)
    target = Path(path)
    with target.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(
            file, fieldnames=CSV_COLUMNS + LEDGER_CSV_COLUMNS if from_ledger else CSV_COLUMNS
        )
        writer.writeheader()
        for task in tasks:
            row = {
                "task_id": task.task_id,
                "worker": task.worker,
                "enqueued_at": repr(task.enqueued_at),
                "started_at": repr(task.started_at),
                "finished_at": repr(task.finished_at),
                "wait": repr(task.started_at - task.enqueued_at),
                "duration": repr(task.finished_at - task.started_at),
                "ok": task.error_type is None,
                "error_type": task.error_type or "",
                "error": task.error,
                "attempts": task.attempts,
                "params": _params_json(task.params),
            }
            if from_ledger:
                row.update(run=task.run, key=_clean(task.key or "", limit=None), dead_letter=task.dead_letter)
            writer.writerow(row)
    return target


# -- reading a source ---------------------------------------------------------------------


_SOURCES = "a JobSummary, a pcmodel.Ledger or an iterable of TaskResult"


def _read_source(source: object) -> tuple[JobSummary | Ledger | None, list[_Task]]:
    """The summary or ledger (if the source is one) and its tasks, each checked."""
    if isinstance(source, JobSummary):
        if source.results is None:
            raise ValueError(
                "this job ran with trace=False, so it kept no task to export: run it again with "
                "trace=True, or give it a ledger= and export the ledger"
            )
        return source, [_from_result(index, result) for index, result in enumerate(source.results)]
    if isinstance(source, Ledger):
        # Rows, not results(): a row says which run recorded it, and each run has its own clock.
        return source, [_from_row(row) for row in source.rows()]
    if isinstance(source, str | bytes | os.PathLike):
        raise TypeError(
            f"source must be {_SOURCES}, got the path {source!r}: for a ledger's file, give "
            "pcmodel.Ledger(path)"
        )
    if not isinstance(source, Iterable):
        raise TypeError(f"source must be {_SOURCES}, got {type(source).__name__}")
    return None, [_from_result(index, result) for index, result in enumerate(source)]


def _from_result(index: int, result: object) -> _Task:
    """One `TaskResult`, checked."""
    if not isinstance(result, TaskResult):
        raise TypeError(f"source item {index} must be a TaskResult, got {type(result).__name__}")
    error_type, message = (None, "") if result.error is None else _error_text(result.error, limit=None)
    fields = (result.task_id, result.worker, result.enqueued_at, result.started_at, result.finished_at)
    return _checked(f"source item {index}", fields, result.attempts, result.params, error_type, message)


def _from_row(row: dict[str, Any]) -> _Task:
    """One row of a ledger, checked; its error is the text the ledger recorded."""
    error_type = None if row["ok"] else (row["error_type"] or "")
    fields = (row["task_id"], row["worker"], row["enqueued_at"], row["started_at"], row["finished_at"])
    task = _checked(
        f"the ledger's item {row['key']!r}",
        fields,
        row["attempts"],
        row["params"],
        error_type,
        row["error_message"] or "",
    )
    return replace(task, run=row["run"], key=row["key"], dead_letter=row["dead_letter"])


def _checked(
    where: str,
    fields: tuple[Any, Any, Any, Any, Any],
    attempts: Any,
    params: Any,
    error_type: str | None,
    message: str,
) -> _Task:
    """A task's numbers made plain ints and floats; refuse what no viewer could draw."""
    task_id, worker, enqueued_at, started_at, finished_at = fields
    try:
        task = _Task(
            task_id=operator.index(task_id),
            worker=operator.index(worker),
            enqueued_at=float(enqueued_at),
            started_at=float(started_at),
            finished_at=float(finished_at),
            attempts=operator.index(attempts),
            params=params,
            error_type=error_type,
            error=_clean(message, limit=None),
        )
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{where} has a field of the wrong type ({error}): task_id, worker and attempts must "
            "be integers, the times numbers"
        ) from None
    times = (task.enqueued_at, task.started_at, task.finished_at)
    if not all(math.isfinite(time) for time in times):
        raise ValueError(f"{where} (task {task.task_id}) has a time that is not finite: {times}")
    if not task.enqueued_at <= task.started_at <= task.finished_at:
        raise ValueError(
            f"{where} (task {task.task_id}) has its times out of order: enqueued_at "
            f"{task.enqueued_at}, started_at {task.started_at}, finished_at {task.finished_at}; a "
            "task is enqueued, then started, then finished"
        )
    return task


def _as_results(tasks: list[_Task]) -> list[TaskResult]:
    """The checked tasks as `TaskResult`s again, for `records.queue_depth`."""
    return [
        TaskResult(t.task_id, t.params, None, None, t.worker, t.enqueued_at, t.started_at, t.finished_at)
        for t in tasks
    ]


def _figures(summary: JobSummary) -> dict[str, Any]:
    """The summary's scalar figures, with the error as safe text (its repr may raise)."""
    error = summary.error
    # scalars() takes the error's repr, which may raise: it gets the summary without it.
    figures = replace(summary, error=None).scalars()
    figures["error"] = None if error is None else ": ".join(_error_text(error))
    return figures


# -- events ---------------------------------------------------------------------------------


class _Tracks:
    """The viewer's processes and threads: names, ids, and the end of the last slice on each.

    Invariant: on one track, the slices placed are disjoint in the units the file holds
    (`ts + dur` of one is at most `ts` of the next), so no viewer sees a bad nesting.
    """

    def __init__(self) -> None:
        self._processes: dict[int, str] = {}
        self._tids: dict[tuple[int, str, int], int] = {}  # (pid, track name, overlap) -> tid
        self._threads: dict[int, tuple[int, str, int]] = {}  # tid -> (pid, name, sort index)
        self._ends: dict[int, float] = {}

    def process(self, name: str) -> int:
        """A new process of the trace, named `name`; its pid."""
        pid = len(self._processes) + 1
        self._processes[pid] = name
        return pid

    def track(self, pid: int, name: str, order: int, overlap: int = 0) -> int:
        """The tid of a track of process `pid`, made on first use; `order` sorts it."""
        key = (pid, name, overlap)
        if key not in self._tids:
            tid = len(self._tids) + 1  # tid 0 of each process carries its counters
            self._tids[key] = tid
            self._threads[tid] = (pid, name if overlap == 0 else f"{name} (overlap {overlap})", order)
            self._ends[tid] = -math.inf
        return self._tids[key]

    def place(self, pid: int, name: str, order: int, ts: float, dur: float) -> int:
        """The tid of the first track of that name free at `ts`; note the slice's end there."""
        overlap = 0
        while True:
            tid = self.track(pid, name, order, overlap)
            if self._ends[tid] <= ts:
                self._ends[tid] = ts + dur
                return tid
            overlap += 1

    def metadata(self) -> list[dict[str, Any]]:
        """The "M" events that name and sort the processes and the tracks."""
        events: list[dict[str, Any]] = []
        for pid, name in self._processes.items():
            events.append(_meta("process_name", pid, 0, {"name": name}))
            events.append(_meta("process_sort_index", pid, 0, {"sort_index": pid}))
        for tid, (pid, name, order) in self._threads.items():
            events.append(_meta("thread_name", pid, tid, {"name": name}))
            events.append(_meta("thread_sort_index", pid, tid, {"sort_index": order}))
        return events


def _part_events(part: _Part, tracks: _Tracks) -> list[dict[str, Any]]:
    """The events of one job: its slices, instants and counters, its tracks noted in `tracks`."""
    pid = tracks.process(part.title)
    homes: dict[int, tuple[int, str]] = {}  # lane -> (pid, track name)
    for process in part.processes:
        process_pid = tracks.process(f"worker process {process.label}")
        for slot, lane in enumerate(process.lanes):
            homes[lane] = (process_pid, f"slot {slot} (lane {lane})")
    lanes = sorted({task.worker for task in part.tasks} | set(range(part.workers)))
    for lane in lanes:  # every lane gets its track, idle or not, in order
        lane_pid, name = homes.setdefault(lane, (pid, _lane_name(lane)))
        tracks.track(lane_pid, name, lane)
    events: list[dict[str, Any]] = []
    for task in sorted(part.tasks, key=lambda t: (t.started_at, -t.finished_at, t.task_id)):
        events.extend(_task_events(task, tracks, *homes[task.worker]))
    for start, end in sorted(part.blocked):
        ts, dur = _span(start, end)
        events.append(
            {
                "name": "blocked: work queue full",
                "cat": "producer",
                "ph": "X",
                "ts": ts,
                "dur": dur,
                "pid": pid,
                "tid": tracks.place(pid, _BLOCKED_TRACK, len(lanes), ts, dur),
                "args": {"start": start, "end": end},
            }
        )
    for sample in part.depth:
        events.append(_counter(_QUEUE_COUNTER, pid, sample.time, "depth", sample.depth))
    for time, busy in _busy(part.tasks):
        events.append(_counter(_BUSY_COUNTER, pid, time, "busy", busy))
    if len({change.limit for change in part.limits}) > 1:  # a fixed pool's one value says nothing
        for change in part.limits:
            events.append(_counter(_LIMIT_COUNTER, pid, change.time, "limit", change.limit))
    for drop in part.drops:
        drop_pid, name = homes.setdefault(drop.worker, (pid, _lane_name(drop.worker)))
        events.append(
            {
                "name": _DROP_NAMES.get(drop.kind, drop.kind),
                "cat": "drop",
                "ph": "i",
                "s": "t",
                "ts": drop.time * _MICROSECONDS,
                "pid": drop_pid,
                "tid": tracks.track(drop_pid, name, drop.worker),
                "args": {"task_id": drop.task_id, "worker": drop.worker, "kind": drop.kind},
            }
        )
    return events


def _meta(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": args}


def _counter(name: str, pid: int, time: float, key: str, value: int) -> dict[str, Any]:
    return {"name": name, "ph": "C", "ts": time * _MICROSECONDS, "pid": pid, "tid": 0, "args": {key: value}}


def _span(start: float, end: float) -> tuple[float, float]:
    """`ts` and `dur` in microseconds, with `ts + dur` never past `end`'s microseconds.

    `ts` is exact (`start * 1e6`); `dur` is the difference of the two, lowered by a unit in
    the last place if rounding put `ts + dur` past the end, where the next slice may begin.
    """
    ts, end_us = start * _MICROSECONDS, end * _MICROSECONDS
    dur = end_us - ts
    while dur > 0 and ts + dur > end_us:
        dur = math.nextafter(dur, 0.0)
    return ts, dur


def _task_events(task: _Task, tracks: _Tracks, pid: int, track: str) -> list[dict[str, Any]]:
    """The slice of one task window on its lane's track, and an instant where it failed."""
    ts, dur = _span(task.started_at, task.finished_at)
    tid = tracks.place(pid, track, task.worker, ts, dur)
    failed = task.error_type is not None
    args: dict[str, Any] = {
        "task_id": task.task_id,
        "worker": task.worker,
        "params": _safe_repr(task.params),
        "ok": not failed,
        "attempts": task.attempts,
        "enqueued_at": task.enqueued_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "wait": task.started_at - task.enqueued_at,
    }
    if task.error_type is not None:
        args["error_type"] = task.error_type
        args["error"] = _clean(task.error)
    slice_ = {
        "name": f"task {task.task_id}",
        "cat": "task,failed" if failed else "task",
        "ph": "X",
        "ts": ts,
        "dur": dur,
        "pid": pid,
        "tid": tid,
        "args": args,
    }
    if task.error_type is None:
        return [slice_]
    ending = "cancelled" if task.cancelled else "failed"
    instant = {
        "name": f"{ending}: {task.error_type.rpartition('.')[2]}",
        "cat": "failure",
        "ph": "i",
        "s": "t",  # the instant belongs to its worker's track
        "ts": ts + dur,
        "pid": pid,
        "tid": tid,
        "args": {"task_id": task.task_id, "error": args["error"]},
    }
    return [slice_, instant]


def _busy(tasks: list[_Task]) -> list[tuple[float, int]]:
    """How many tasks were running, at each instant it changed (ends before starts)."""
    changes: dict[float, int] = {}
    for task in tasks:
        changes[task.started_at] = changes.get(task.started_at, 0) + 1
        changes[task.finished_at] = changes.get(task.finished_at, 0) - 1
    running = 0
    samples = []
    for time in sorted(changes):
        running += changes[time]
        samples.append((time, running))
    return samples


def _lane_name(worker: int) -> str:
    # A negative lane holds the tasks that failed before any worker took them (a broker job's
    # params that JSON cannot carry, say).
    return f"worker {worker}" if worker >= 0 else "failed before a worker"


# -- text from user objects -----------------------------------------------------------------


def _clean(text: str, limit: int | None = _MAX_TEXT) -> str:
    """Text safe to write as UTF-8 (a lone surrogate escaped), cut to `limit` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return text


def _safe_repr(value: object, limit: int | None = _MAX_TEXT) -> str:
    try:
        text = repr(value)
    except Exception as error:  # noqa: BLE001 - a repr that raises must not stop the export
        return f"<{type(value).__name__} object: its repr raised {type(error).__name__}>"
    return _clean(text, limit)


def _error_text(error: BaseException, limit: int | None = _MAX_TEXT) -> tuple[str, str]:
    """The error's type name and message, named as a ledger names them.

    The type is qualified unless built-in (`ValueError`, `pcmodel.workloads.PriceAPIError`);
    an error from a worker process (`RemoteError`) or read from a ledger (`RecordedError`)
    gives its original type's name.
    """
    if isinstance(error, RemoteError):
        return error.type_name, _clean(error.message, limit)
    if isinstance(error, RecordedError):  # from Ledger.results(): the type as it was recorded
        return error.error_type, _clean(error.message, limit)
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    try:
        message = str(error)
    except Exception as failure:  # noqa: BLE001 - an error's str that raises is still an error
        return name, f"<its str raised {type(failure).__name__}>"
    return name, _clean(message, limit)


def _params_json(params: object) -> str:
    """The params as JSON if they can be written as JSON, else their repr."""
    try:
        text = json.dumps(params, ensure_ascii=False, allow_nan=False)
    except Exception:  # noqa: BLE001 - not JSON (a set, NaN, a cycle, a subclass that raises)
        return _safe_repr(params, limit=None)
    return _clean(text, limit=None)
