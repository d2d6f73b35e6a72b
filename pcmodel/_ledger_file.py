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

_BATCH: Final = 2000
"""Most rows one commit writes."""
_INTERVAL: Final = 0.05
"""Seconds the writer lets rows gather after a commit that emptied its queue: at most about 20
commits a second however fast the job, and at most this much of a job's outcomes lost to a
`kill -9` beyond the items in flight."""


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
            connection.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
            connection.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION))],
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
        row = connection.execute("SELECT value FROM meta WHERE name = 'function'").fetchone()
        if row is None:
            connection.execute("INSERT INTO meta VALUES ('function', ?)", (function,))
        elif row[0] != function and not allow_other_function:
            raise LedgerError(
                f"the ledger {str(path)!r} records the outcomes of {row[0]}, not of {function}: "
                f"give this job a ledger of its own, or pass ledger=pcmodel.Ledger({str(path)!r}, "
                "allow_other_function=True) to resume it with this function"
            )
        cursor = connection.execute(
            "INSERT INTO runs (function, clock, rerun, started) VALUES (?, ?, ?, ?)",
            (function, clock, rerun, time.time()),
        )
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

    `put(row)` is all the event loop does per item (a `queue.SimpleQueue` put, thread-safe and
    without a lock in Python). The thread takes what has gathered, up to `_BATCH` rows, writes
    them with one `executemany` in one transaction, then lets rows gather for `_INTERVAL` s.
    `close()` writes what is left, notes the run's end, and closes the file.

    If the disk fails (full, removed, read-only), the thread logs the error, calls `on_failure`
    once with a `LedgerError` (the job then stops, see `pcmodel._ledger_job`) and drops what
    comes after.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        run: int,
        on_failure: Callable[[LedgerError], None],
    ) -> None:
        self._connection = connection
        self._path = path
        self._run = run
        self._on_failure = on_failure
        self._rows: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.put = self._rows.put
        """Queue one row of `COLUMNS`, to be written soon."""
        self._closing = threading.Event()
        self.failed: LedgerError | None = None
        self.skipped = 0
        """Items the job skipped, noted in the run's row at the end."""
        connection.execute("PRAGMA synchronous=NORMAL")
        self._thread = threading.Thread(target=self._main, name="pcmodel-ledger-writer", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        closing = False
        while not closing:
            rows = []
            item = self._rows.get()
            while True:
                if item is _CLOSE:
                    closing = True
                    break
                rows.append(item)
                if len(rows) >= _BATCH:
                    break
                try:
                    item = self._rows.get_nowait()
                except queue.Empty:
                    break
            if self.failed is None:
                self._write(rows, closing)
            if not closing and len(rows) < _BATCH:
                self._closing.wait(_INTERVAL)  # let rows gather; a close ends the wait at once
        self._connection.close()

    def _write(self, rows: list[Any], closing: bool) -> None:
        connection = self._connection
        try:
            connection.execute("BEGIN")
            connection.executemany(_INSERT, rows)
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

    def close(self) -> None:
        """Write every row queued, note the run's end, close the file; wait for all of it."""
        self._rows.put(_CLOSE)
        self._closing.set()
        self._thread.join()
