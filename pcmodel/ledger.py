"""The outcome ledger: a job's record of every item's outcome, to resume it and rerun failures.

Give a job a ledger and it records each item's outcome as it is handled, in an SQLite file:

    >>> summary = pcmodel.run_job(fetch_price, cars, ledger="prices.sqlite")   # doctest: +SKIP

Run the same job again with the same ledger and the items already recorded are skipped
(`JobSummary.skipped` counts them): after a crash, a dead kernel or a Ctrl-C, the job goes on
where it stopped. With `rerun="failed"` only the items recorded as failed run again.

Each item is known by its key: by default its params' canonical JSON,
`json.dumps(params, sort_keys=True, separators=(",", ":"))` (so a tuple and a list with the
same items are the same item, and so are `{1: x}` and `{"1": x}`); `key=` takes a function of
the params that returns a str, for params JSON cannot carry or for a shorter key. A key must
be the same for the same item, run after run, and text the file can hold: a str with a lone
surrogate (`os.fsdecode` makes one of a file name's undecodable byte) is refused, naming the
item, before the item runs. The ledger keeps one outcome per key: an item whose key an earlier
item of the same run had is that item again, and is skipped (counted in `JobSummary.skipped`;
the first one is named in a warning, since two different items sharing a key means `key=`
tells them apart too little).

If an outcome cannot be written (a full disk, a removed file), the job stops, and its summary
says so even when that was its last write: `stop_reason == "stop"`, `error` the
`LedgerError`.

What a crash costs: an item is recorded once it is handled (after its `on_task_complete`
returned), and records reach the file in batches, at least every 0.05 s of the job's clock.
A job killed outright (`kill -9`, a dead kernel) therefore runs again, on resume, the items
it had in flight and those handled in its last fraction of a second (they are done at least
once: make the function safe to repeat, or check in it what was done): each item runs at
least once, and an item is never skipped unless its outcome and its callback are behind it. Every commit is atomic
(SQLite's write-ahead log): nothing recorded is ever corrupted. A job cancelled or interrupted
(Ctrl-C) writes everything handled before it stops. A call that a stop cancelled
(`fail_fast=True`, `JobHandle.stop(graceful=False)`) has no outcome: it is not recorded, is no
dead letter, and runs again on resume; a CancelledError the function raised of its own is a
failure, recorded like any other.

Read a ledger with `Ledger(path)`: `results()` as `TaskResult`s (their `error` a
`RecordedError` that keeps the type's name and the message; `value` is not kept: save values
in `on_task_complete`), `rows()` as plain dicts for `pandas.DataFrame(rows)`, `counts()`,
`common_errors()`, `slowest()`; or `pcmodel ledger PATH` on the command line.

One job at a time may write a ledger (a reader may look at it meanwhile): a job holds a lock
in the file while it runs, and a second job is refused with a `LedgerError` naming the first
one's process. A lock left by a job that died is taken over: at once if its process is gone
from this machine (`kill -9`, a dead kernel), after 60 s without its heartbeat otherwise (a
job on another machine).

A ledger records its job's function (`module:qualname`; a lambda with its line, a
`functools.partial` with its arguments: see `pcmodel._ledger_file.function_name`) and refuses
another's, unless given as `Ledger(path, allow_other_function=True)`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from pcmodel._ledger_file import COLUMNS, LedgerError, connect, reading
from pcmodel.records import TaskResult

__all__ = ["ErrorCount", "Ledger", "LedgerError", "RecordedError", "Status"]

Status = Literal["ok", "failed", "dead_letter"]

_STATUSES: Final[dict[str, str]] = {"ok": "ok = 1", "failed": "ok = 0", "dead_letter": "dead_letter = 1"}


class RecordedError(Exception):
    """A failed item's error as a ledger keeps it: its type's name and its message.

    The ledger cannot keep the exception itself; `str()` gives `"TypeName: message"`.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}" if message else error_type)
        self.error_type = error_type
        """The type's name: `ValueError` for a built-in, `module.Qualname` for another."""
        self.message = message
        """`str()` of the original exception."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error_type, self.message))


class ErrorCount(NamedTuple):
    """How often one type of error failed an item, with one of its messages."""

    error_type: str
    """The type's name, as `RecordedError.error_type`."""
    items: int
    """Failed items with that type of error."""
    example: str
    """One of their messages."""


class Ledger:
    """A ledger file: pass it as `ledger=` to a job, or read what it holds.

    `Ledger(path)` touches nothing: a job creates the file if it is missing; reading one that
    is missing, not SQLite, damaged or not a ledger raises a `LedgerError` that says so.

    Example:
        >>> ledger = pcmodel.Ledger("prices.sqlite")               # doctest: +SKIP
        >>> ledger.counts()                                         # doctest: +SKIP
        {'items': 10000, 'ok': 9400, 'failed': 600, 'dead_letters': 600, 'runs': 2}
        >>> failed = ledger.results(status="failed", error_type="TimeoutError")  # doctest: +SKIP
        >>> pandas.DataFrame(ledger.rows())                         # doctest: +SKIP

    Args:
        path: the SQLite file.
        allow_other_function: let a job whose function differs from the one the ledger
            recorded use it (a renamed function, say); by default that is refused.
    """

    __slots__ = ("allow_other_function", "path")

    def __init__(self, path: str | os.PathLike[str], *, allow_other_function: bool = False) -> None:
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise TypeError(f"a ledger's path must be a str or a path, got {path!r} ({type(path).__name__})")
        if isinstance(path, str) and not path.strip():
            raise ValueError(f"a ledger's path must name a file, got {path!r}")
        if not isinstance(allow_other_function, bool):
            raise TypeError(f"allow_other_function must be True or False, got {allow_other_function!r}")
        self.path = Path(path)
        """The SQLite file."""
        self.allow_other_function = allow_other_function
        """Whether a job with another function may use this ledger."""

    def __repr__(self) -> str:
        extra = ", allow_other_function=True" if self.allow_other_function else ""
        return f"Ledger({str(self.path)!r}{extra})"

    def _query(self, sql: str, arguments: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        connection = connect(self.path, create=False)
        try:
            with reading(self.path):
                return connection.execute(sql, arguments).fetchall()
        finally:
            connection.close()

    @property
    def function(self) -> str | None:
        """The function (`module:qualname`) whose outcomes the ledger records."""
        rows = self._query("SELECT value FROM meta WHERE name = 'function'")
        return rows[0][0] if rows else None

    def rows(self, status: Status | None = None, error_type: str | None = None) -> list[dict[str, Any]]:
        """The recorded items as plain dicts, ready for `pandas.DataFrame(rows)`.

        Each has the columns `key`, `params` (decoded from JSON), `ok`, `error_type`,
        `error_message`, `attempts`, `worker`, `enqueued_at`, `started_at`, `finished_at`
        (seconds since the start of the run that recorded it), `duration`, `dead_letter`,
        `run` (1 for the first job that used the ledger) and `task_id` (in that run), in
        the order the runs handled them.

        Args:
            status: "ok", "failed" or "dead_letter" (failed after every retry) to keep only
                those; None for all.
            error_type: keep only the items failed by this type of error: its name as
                recorded (`module.Qualname`), or its last part (`"PriceAPIError"`).
        """
        where, arguments = _where(status, error_type)
        found = self._query(f"SELECT {', '.join(COLUMNS)} FROM items{where} ORDER BY run, task_id", arguments)
        return [_row(values) for values in found]

    def results(self, status: Status | None = None, error_type: str | None = None) -> list[TaskResult]:
        """The recorded items as `TaskResult`s (filtered as `rows` filters them).

        `value` is None (a ledger keeps outcomes, not values), `error` a `RecordedError`, and
        the times are seconds since the start of the run that recorded each item.
        """
        return [
            TaskResult(
                task_id=row["task_id"],
                params=row["params"],
                value=None,
                error=None
                if row["ok"]
                else RecordedError(row["error_type"] or "", row["error_message"] or ""),
                worker=row["worker"],
                enqueued_at=row["enqueued_at"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                attempts=row["attempts"],
            )
            for row in self.rows(status, error_type)
        ]

    def counts(self) -> dict[str, int]:
        """Items recorded, ok, failed and dead letters, and the runs that used the ledger."""
        [(items, ok, dead, runs)] = self._query(
            "SELECT count(*), coalesce(sum(ok), 0), coalesce(sum(dead_letter), 0), "
            "(SELECT count(*) FROM runs) FROM items"
        )
        return {"items": items, "ok": ok, "failed": items - ok, "dead_letters": dead, "runs": runs}

    def common_errors(self, limit: int = 5) -> list[ErrorCount]:
        """The commonest types of error among the failed items, commonest first."""
        found = self._query(
            "SELECT error_type, count(*), max(error_message) FROM items WHERE ok = 0 "
            "GROUP BY error_type ORDER BY count(*) DESC, error_type LIMIT ?",
            (_limit(limit),),
        )
        return [ErrorCount(error_type or "", count, example or "") for error_type, count, example in found]

    def slowest(self, limit: int = 5) -> list[dict[str, Any]]:
        """The items whose calls took longest (retries and their waits included), as `rows`."""
        found = self._query(
            f"SELECT {', '.join(COLUMNS)} FROM items ORDER BY finished_at - started_at DESC, key LIMIT ?",
            (_limit(limit),),
        )
        return [_row(values) for values in found]


def _limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, got {limit!r} ({type(limit).__name__})")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit!r}")
    return limit


def _where(status: object, error_type: object) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) of `rows`' filters."""
    clauses = []
    arguments: list[Any] = []
    if status is not None:
        if not isinstance(status, str) or status not in _STATUSES:
            raise ValueError(
                f"status must be one of {', '.join(map(repr, _STATUSES))} or None, got {status!r}"
            )
        clauses.append(_STATUSES[status])
    if error_type is not None:
        if not isinstance(error_type, str):
            raise TypeError(
                f"error_type must be a str or None, got {error_type!r} ({type(error_type).__name__})"
            )
        # The whole recorded name, or its last part after a dot.
        clauses.append("(error_type = ? OR substr(error_type, -length(?) - 1) = '.' || ?)")
        arguments += [error_type] * 3
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), arguments


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(COLUMNS, values, strict=True))
    with contextlib.suppress(ValueError, TypeError):  # not JSON (edited by hand): the text as it is
        row["params"] = json.loads(row["params"])
    row["ok"] = bool(row["ok"])
    row["dead_letter"] = bool(row["dead_letter"])
    row["duration"] = row["finished_at"] - row["started_at"]
    return row
