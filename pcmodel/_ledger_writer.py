"""The writer thread of a job's ledger: the job's outcomes reach the file in batches, off its loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from pcmodel._ledger_file import COLUMNS, INSERT, LedgerError
from pcmodel._ledger_keys import shown
from pcmodel._ledger_lock import HEARTBEAT, STALE, refresh_lock, release_lock

__all__ = ["LedgerWriter"]

logger = logging.getLogger("pcmodel")

_BATCH: Final = 1000
"""Rows the loop gathers before it hands them to the writer thread."""
_INTERVAL: Final = 0.05
"""The longest a row waits on the loop's side before it is handed over (on the job's clock):
what a `kill -9` can lose beyond the items in flight, and at most about 20 hand-overs a
second however slow the job."""


_ROWS_PER_INSERT: Final = 50
_INSERT_MANY: Final = "INSERT OR REPLACE INTO items VALUES " + ", ".join(
    [f"({', '.join('?' * len(COLUMNS))})"] * _ROWS_PER_INSERT
)
"""One statement that inserts `_ROWS_PER_INSERT` rows: the thread lets go of the GIL once per
statement, not once per row, so the job's loop and the thread hand it back and forth 50 times
less often. Measured in the job of benchmarks/ledger.py: the thread's CPU time 6.1 us a row
with `executemany` alone, 3.5 us with this (2.9 and 2.4 us without a job beside it). The rows
are the same either way (`tests/test_ledger.py` checks every row against its result)."""

_CLOSE: Final = object()

_ROW_ERRORS: Final = (ValueError, TypeError, OverflowError, sqlite3.InterfaceError, sqlite3.ProgrammingError)
"""What binding a row's own values raises (text the file cannot encode, a number too large for
it), as against a failing disk or file (`sqlite3.OperationalError`, `sqlite3.DatabaseError`)."""


class LedgerWriter:
    """Writes a job's recorded rows to its ledger from a thread of its own, in batches.

    On the event loop, `put(row)` appends the row to a list: the loop's only work per item.
    The list goes to the writer thread (through a `queue.SimpleQueue`) once it holds `_BATCH`
    rows, or `_INTERVAL` s after its first row (a timer on the job's loop). The thread writes
    what has gathered in one transaction, `_ROWS_PER_INSERT` rows per statement. `close()`
    hands over what is left,
    waits for the thread to write it and note the run's end, and closes the file.

    A list rather than a thread-safe queue per row: a `SimpleQueue.put` cost the loop 0.6 us a
    row while the thread wrote, a list's append 0.05 us (benchmarks/ledger.py). And the row of
    an item that succeeded, keyed by its canonical JSON, may come as `(key, result)`: the
    thread makes the row (`rows`), while the loop waits on its timers, instead of the loop.

    If the disk fails (full, removed, read-only), the thread logs the error, calls `on_failure`
    once with a `LedgerError` (the job then stops, see `pcmodel._ledger_job`) and drops what
    comes after. A row the file cannot take (a safeguard: the job checks keys and messages
    before) costs only its own record: its batch is written again row by row, `on_failure`
    is called with a `LedgerError` naming it, and the writer goes on. `close()` returns the
    first failure of either kind, so that a failure of the last write reaches the summary.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        run: int,
        loop: asyncio.AbstractEventLoop,
        on_failure: Callable[[LedgerError], None],
        lock: str,
    ) -> None:
        self._connection = connection
        self._path = path
        self._run = run
        self._lock = lock
        self._refreshed = time.monotonic()
        self._loop = loop
        self._on_failure = on_failure
        self._batches: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._rows: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.failed: LedgerError | None = None
        """Why the writer stopped writing (the disk failed), if it did."""
        self.row_failed: LedgerError | None = None
        """Why the first row that could not be written was refused; the others were written."""
        self.rows_lost = 0
        """Rows that could not be written."""
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
            try:
                batches = [self._batches.get(timeout=HEARTBEAT)]
            except queue.Empty:  # nothing to write for a while: refresh the lock's heartbeat
                batches = []
            with contextlib.suppress(queue.Empty):
                while len(batches) < 20:  # what has gathered meanwhile, in one transaction
                    batches.append(self._batches.get_nowait())
            closing = bool(batches) and batches[-1] is _CLOSE
            if closing:
                batches.pop()
            if self.failed is None:
                self._write(batches, closing)
        if self.failed is not None:  # the last write did not happen: give the lock back all the same
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("BEGIN IMMEDIATE")
                release_lock(self._connection, self._lock)
                self._connection.execute("COMMIT")
            self._rollback()
        self._connection.close()

    def _write(self, batches: list[list[tuple[Any, ...]]], closing: bool) -> None:
        try:
            try:
                self._transaction(batches, closing, one_by_one=False)
            except _ROW_ERRORS:
                # A row whose values the file cannot take (the job checks keys and messages
                # first, so this is a safeguard): write the batch again row by row, so that
                # one bad row costs only its own record.
                self._rollback()
                self._transaction(batches, closing, one_by_one=True)
        except Exception as error:  # noqa: BLE001 - any failure to write ends the recording, loudly
            self._rollback()
            self.failed = (
                error
                if isinstance(error, LedgerError)
                else LedgerError(
                    f"the ledger {str(self._path)!r} could not record the job's outcomes ({error}); "
                    "the job stopped: free the disk or fix the file, then run it again to resume"
                )
            )
            logger.error("%s", self.failed)
            self._on_failure(self.failed)

    def _transaction(self, batches: list[list[tuple[Any, ...]]], closing: bool, *, one_by_one: bool) -> None:
        """Write `batches` in one transaction (and, if `closing`, the run's end)."""
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")  # the write lock first: the lock row is read, then written
        for rows in batches:
            made = self.rows(rows)
            if one_by_one:
                for row in made:
                    try:
                        connection.execute(INSERT, row)
                    except _ROW_ERRORS as error:
                        self._row_failed(row, error)
                continue
            while chunk := list(itertools.islice(made, _ROWS_PER_INSERT)):
                if len(chunk) == _ROWS_PER_INSERT:
                    connection.execute(_INSERT_MANY, [value for row in chunk for value in row])
                else:
                    connection.executemany(INSERT, chunk)
        if closing:
            connection.execute(
                "UPDATE runs SET finished = ?, skipped = ? WHERE run = ?",
                (time.time(), self.skipped, self._run),
            )
            release_lock(connection, self._lock)
        elif time.monotonic() - self._refreshed >= HEARTBEAT:
            if not refresh_lock(connection, self._lock):
                raise LedgerError(
                    f"another job took the ledger {str(self._path)!r} over: this job's writer had "
                    f"not refreshed its lock for {STALE:.0f} s (the process was stalled), so its "
                    "lock looked stale; this job stopped: let the other one end, then resume"
                )
            self._refreshed = time.monotonic()
        connection.execute("COMMIT")

    def _rollback(self) -> None:
        if self._connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("ROLLBACK")

    def _row_failed(self, row: tuple[Any, ...], error: Exception) -> None:
        """One row could not be written: the job stops (gracefully), the other rows are written."""
        self.rows_lost += 1
        if self.row_failed is not None:
            return
        self.row_failed = LedgerError(
            f"the ledger {str(self._path)!r} could not record the outcome of task {row[-1]} (key "
            f"{shown(row[0])}): {error!r}; the job stopped, every other outcome was recorded, and "
            "this item runs again on resume"
        )
        logger.error("%s", self.row_failed)
        self._on_failure(self.row_failed)

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

    def close(self) -> LedgerError | None:
        """Write every row queued, note the run's end, close the file; wait for all of it.

        Returns:
            What kept an outcome from the file (the disk's failure first), or None.
        """
        self._hand_over()
        self._batches.put(_CLOSE)
        self._thread.join()
        return self.failed or self.row_failed
