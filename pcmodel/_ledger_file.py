"""A ledger's SQLite file: its schema, the checks made on opening it, and its writer thread.

The file holds three tables. `meta` says what the file is (`format`), which schema it follows
(`schema_version`) and which job function first wrote it (`function`, as `module:qualname`);
`runs` has one row per job that used it; `items` one row per item, keyed by the item's key:
its latest outcome. The file is in WAL mode with `synchronous=NORMAL`: a commit is atomic and
costs no fsync, and a reader (`pcmodel.Ledger`) never blocks the writer.

A job's outcomes reach the file through `LedgerWriter`, a thread fed by a queue, which commits
them in batches: the event loop only puts a tuple on the queue, and never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "LedgerError",
    "LedgerWriter",
    "begin_run",
    "connect",
    "function_name",
    "load_keys",
    "reading",
]

logger = logging.getLogger("pcmodel")

FORMAT: Final = "pcmodel-ledger"
SCHEMA_VERSION: Final = 1

COLUMNS: Final = (
    "key",
    "params",
    "ok",
    "error_type",
    "error_message",
    "attempts",
    "worker",
    "enqueued_at",
    "started_at",
    "finished_at",
    "dead_letter",
    "run",
    "task_id",
)
"""The `items` table's columns, in the order a recorded row gives them."""

_SCHEMA: Final = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE runs (
    run INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    clock TEXT NOT NULL,
    rerun TEXT,
    started REAL NOT NULL,
    finished REAL,
    skipped INTEGER
);
CREATE TABLE items (
    key TEXT PRIMARY KEY,
    params TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error_type TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL,
    worker INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    dead_letter INTEGER NOT NULL,
    run INTEGER NOT NULL,
    task_id INTEGER NOT NULL
) WITHOUT ROWID;
"""

_INSERT: Final = f"INSERT OR REPLACE INTO items VALUES ({', '.join('?' * len(COLUMNS))})"

_BATCH: Final = 1000
"""Rows the loop gathers before it hands them to the writer thread."""
_INTERVAL: Final = 0.05
"""The longest a row waits on the loop's side before it is handed over (on the job's clock):
what a `kill -9` can lose beyond the items in flight, and at most about 20 hand-overs a
second however slow the job."""


class LedgerError(Exception):
    """A ledger file cannot be used: missing, not SQLite, damaged, not a ledger, another job's,
    or written by a newer pcmodel. The message names the file and what to do."""


def function_name(function: object) -> str:
    """`module:qualname` of a job's function: what a ledger records and checks on resume."""
    while isinstance(function, functools.partial):
        function = function.func
    named = function if hasattr(function, "__qualname__") else type(function)
    module = getattr(named, "__module__", None) or "?"
    return f"{module}:{getattr(named, '__qualname__', type(named).__qualname__)}"


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open the ledger at `path`, checked; with `create`, make a new (or empty) file a ledger.

    Raises:
        LedgerError: see the class; the connection is closed first.
    """
    if path.is_dir():
        raise LedgerError(f"the ledger {str(path)!r} is a folder: give the path of a file")
    if not create and not path.exists():
        raise LedgerError(f"there is no ledger at {str(path)!r}: check the path")
    try:
        connection = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise LedgerError(f"cannot open the ledger {str(path)!r}: {error}") from None
    try:
        if create:
            # In WAL mode a commit at NORMAL is still atomic and survives a crash of the
            # process; it costs no fsync (only a checkpoint syncs). At FULL, creating a ledger
            # and starting a run took 20-90 ms of fsyncs on the machine of RESULTS.md.
            with reading(path):
                connection.execute("PRAGMA synchronous=NORMAL")
        _check(connection, path, create=create)
    except BaseException:
        connection.close()
        raise
    return connection


def _check(connection: sqlite3.Connection, path: Path, *, create: bool) -> None:
    """Raise a `LedgerError` unless `connection` holds a ledger this pcmodel reads."""
    with reading(path):
        tables = {
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            if not create:
                raise LedgerError(
                    f"{str(path)!r} is an empty SQLite file, not a ledger: no job has written it"
                )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(
                f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES ('format', '{FORMAT}'), "
                f"('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            )
            return
        meta = dict(connection.execute("SELECT name, value FROM meta")) if "meta" in tables else {}
        if meta.get("format") != FORMAT:
            raise LedgerError(
                f"{str(path)!r} is an SQLite database but not a pcmodel ledger (its tables: "
                f"{', '.join(sorted(tables))}): give a new path, or that of a ledger a job wrote"
            )
        version = meta.get("schema_version", "")
        if version != str(SCHEMA_VERSION):
            newer = version.isdigit() and int(version) > SCHEMA_VERSION
            remedy = "upgrade pcmodel to read it" if newer else "the file is damaged: give a new path"
            raise LedgerError(
                f"the ledger {str(path)!r} has schema version {version!r}, and this pcmodel reads "
                f"version {SCHEMA_VERSION}: {remedy}"
            )
        missing = {"runs", "items"} - tables
        if missing:
            raise LedgerError(
                f"the ledger {str(path)!r} is damaged: its table(s) {', '.join(sorted(missing))} are "
                "missing; give a new path"
            )
        if create:
            connection.execute("PRAGMA journal_mode=WAL")


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """A context in which an SQLite error on the file at `path` becomes a `LedgerError` saying so."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        raise LedgerError(
            f"cannot read the ledger {str(path)!r}: {error} (it is not an SQLite file, or it is "
            "damaged): give a new path, or restore the file"
        ) from error
    except sqlite3.Error as error:
        raise LedgerError(f"cannot use the ledger {str(path)!r}: {error}") from error


def begin_run(
    connection: sqlite3.Connection,
    path: Path,
    function: str,
    clock: str,
    rerun: str | None,
    *,
    allow_other_function: bool,
) -> int:
    """Check the ledger is this function's (or record it, if new); add a run; return its number.

    Raises:
        LedgerError: the ledger records another function's outcomes, and that is not allowed.
    """
    with reading(path):
        connection.execute("BEGIN IMMEDIATE")  # one transaction: the check and the new run
        row = connection.execute("SELECT value FROM meta WHERE name = 'function'").fetchone()
        if row is None:
            connection.execute("INSERT INTO meta VALUES ('function', ?)", (function,))
        elif row[0] != function and not allow_other_function:
            connection.execute("ROLLBACK")
            raise LedgerError(
                f"the ledger {str(path)!r} records the outcomes of {row[0]}, not of {function}: "
                f"give this job a ledger of its own, or pass ledger=pcmodel.Ledger({str(path)!r}, "
                "allow_other_function=True) to resume it with this function"
            )
        cursor = connection.execute(
            "INSERT INTO runs (function, clock, rerun, started) VALUES (?, ?, ?, ?)",
            (function, clock, rerun, time.time()),
        )
        connection.execute("COMMIT")
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def load_keys(connection: sqlite3.Connection, path: Path, *, failed_only: bool) -> set[str]:
    """The keys of the items recorded (or only of those recorded as failed)."""
    query = "SELECT key FROM items WHERE ok = 0" if failed_only else "SELECT key FROM items"
    with reading(path):
        return {key for (key,) in connection.execute(query)}


_CLOSE: Final = object()


class LedgerWriter:
    """Writes a job's recorded rows to its ledger from a thread of its own, in batches.

    On the event loop, `put(row)` appends the row to a list: the loop's only work per item.
    The list goes to the writer thread (through a `queue.SimpleQueue`) once it holds `_BATCH`
    rows, or `_INTERVAL` s after its first row (a timer on the job's loop). The thread writes
    each list with one `executemany` in one transaction. `close()` hands over what is left,
    waits for the thread to write it and note the run's end, and closes the file.

    A list rather than a thread-safe queue per row: a `SimpleQueue.put` cost the loop 0.6 us a
    row while the thread wrote, a list's append 0.05 us (benchmarks/ledger.py). And the row of
    an item that succeeded, keyed by its canonical JSON, may come as `(key, result)`: the
    thread makes the row (`rows`), while the loop waits on its timers, instead of the loop.

    If the disk fails (full, removed, read-only), the thread logs the error, calls `on_failure`
    once with a `LedgerError` (the job then stops, see `pcmodel._ledger_job`) and drops what
    comes after.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        run: int,
        loop: asyncio.AbstractEventLoop,
        on_failure: Callable[[LedgerError], None],
    ) -> None:
        self._connection = connection
        self._path = path
        self._run = run
        self._loop = loop
        self._on_failure = on_failure
        self._batches: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._rows: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.failed: LedgerError | None = None
        self.skipped = 0
        """Items the job skipped, noted in the run's row at the end."""
        self._thread = threading.Thread(target=self._main, name="pcmodel-ledger-writer", daemon=True)
        self._thread.start()

    def put(self, row: tuple[Any, ...]) -> None:
        """Queue one row of `COLUMNS`, or `(key, result)` for a success whose params' JSON is
        its key, to be written soon (on the loop's thread only)."""
        rows = self._rows
        rows.append(row)
        if len(rows) >= _BATCH:
            self._hand_over()
        elif self._timer is None:
            self._timer = self._loop.call_later(_INTERVAL, self._hand_over)

    def _hand_over(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._rows:
            self._batches.put(self._rows)
            self._rows = []

    def _main(self) -> None:
        closing = False
        while not closing:
            batches = [self._batches.get()]
            with contextlib.suppress(queue.Empty):
                while len(batches) < 20:  # what has gathered meanwhile, in one transaction
                    batches.append(self._batches.get_nowait())
            closing = batches[-1] is _CLOSE
            if closing:
                batches.pop()
            if self.failed is None:
                self._write(batches, closing)
        self._connection.close()

    def _write(self, batches: list[list[tuple[Any, ...]]], closing: bool) -> None:
        connection = self._connection
        try:
            connection.execute("BEGIN")
            for rows in batches:
                connection.executemany(_INSERT, self.rows(rows))
            if closing:
                connection.execute(
                    "UPDATE runs SET finished = ?, skipped = ? WHERE run = ?",
                    (time.time(), self.skipped, self._run),
                )
            connection.execute("COMMIT")
        except Exception as error:  # noqa: BLE001 - any failure to write ends the recording, loudly
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            self.failed = LedgerError(
                f"the ledger {str(self._path)!r} could not record the job's outcomes ({error}); the "
                "job stopped: free the disk or fix the file, then run it again to resume"
            )
            logger.error("%s", self.failed)
            self._on_failure(self.failed)

    def rows(self, entries: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """The rows of `entries`, made here for each `(key, result)` of a success.

        `executemany` draws them one at a time and lets go of the GIL for each insert, so
        making them here never holds the job's loop for long.
        """
        run = self._run
        for entry in entries:
            if len(entry) == 2:
                key, result = entry
                task_id, _, _, _, worker, enqueued_at, started_at, finished_at, attempts = result
                yield (
                    key, key, True, None, None, attempts, worker, enqueued_at, started_at, finished_at,
                    False, run, task_id,
                )  # fmt: skip
            else:
                yield entry

    def close(self) -> None:
        """Write every row queued, note the run's end, close the file; wait for all of it."""
        self._hand_over()
        self._batches.put(_CLOSE)
        self._thread.join()
