"""A ledger's SQLite file: its schema, and the checks made on opening it.

The file holds three tables. `meta` says what the file is (`format`), which schema it follows
(`schema_version`) and which job function first wrote it (`function`, as `module:qualname`);
`runs` has one row per job that used it; `items` one row per item, keyed by the item's key:
its latest outcome. While a job writes the file, `meta` also holds its lock (see
`pcmodel._ledger_lock`): one job at a time. The file is in WAL mode with `synchronous=NORMAL`: a commit is atomic and
costs no fsync, and a reader (`pcmodel.Ledger`) never blocks the writer.

A job's outcomes reach the file through `pcmodel._ledger_writer.LedgerWriter`, a thread of
its own that commits them in batches: the event loop never waits on the disk.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import sqlite3
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from pcmodel._ledger_keys import storable
from pcmodel._ledger_lock import take_lock

__all__ = [
    "COLUMNS",
    "INSERT",
    "SCHEMA_VERSION",
    "LedgerError",
    "begin_run",
    "connect",
    "function_name",
    "load_keys",
    "reading",
]


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

INSERT: Final = f"INSERT OR REPLACE INTO items VALUES ({', '.join('?' * len(COLUMNS))})"


class LedgerError(Exception):
    """A ledger file cannot be used: missing, not SQLite, damaged, not a ledger, another job's,
    or written by a newer pcmodel. The message names the file and what to do."""


def function_name(function: object) -> str:
    """What a ledger records of a job's function, and checks on resume: `module:qualname`.

    Names alone would not tell apart functions that share one, so two more things are said:

    - a lambda's line: `module:<lambda> (line 12)` (every lambda is called `<lambda>`);
    - a `functools.partial`'s arguments: `module:power(n=2)`, each argument by its repr, or
      by its type's name where the repr changes from one run to the next (a default repr names
      the object's address: `<Session>`), and the arguments' SHA-256 past 200 characters.

    A function renamed or moved, or a lambda moved to another line, is then another function:
    resume with `Ledger(path, allow_other_function=True)`.
    """
    if isinstance(function, functools.partial):
        arguments = [_stable_repr(argument) for argument in function.args]
        arguments += [f"{name}={_stable_repr(value)}" for name, value in function.keywords.items()]
        shown = ", ".join(arguments)
        if len(shown) > 200:
            shown = (
                "arguments sha256 "
                + hashlib.sha256(shown.encode("utf-8", "backslashreplace")).hexdigest()[:16]
            )
        return f"{function_name(function.func)}({shown})"
    named = function if hasattr(function, "__qualname__") else type(function)
    module = getattr(named, "__module__", None) or "?"
    qualname = getattr(named, "__qualname__", type(named).__qualname__)
    name = f"{module}:{qualname}"
    code = getattr(function, "__code__", None)
    if "<lambda>" in str(qualname) and isinstance(code, types.CodeType):
        name += f" (line {code.co_firstlineno})"
    return storable(name)


def _stable_repr(value: object) -> str:
    """`repr(value)`, or `<TypeName>` where it would differ from run to run (or raises)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile repr: the type's name will do
        return f"<{type(value).__qualname__}>"
    return f"<{type(value).__qualname__}>" if _ADDRESS.search(text) else storable(text)


_ADDRESS: Final = re.compile(r" at 0x[0-9a-fA-F]+")
"""How a default repr names an object's address (`<Session object at 0x7f3a...>`)."""


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
) -> tuple[int, str]:
    """Check the ledger is this function's (or record it, if new), take its lock, add a run.

    Returns:
        The run's number, and the lock's value (for `refresh_lock` and `release_lock`).

    Raises:
        LedgerError: the ledger records another function's outcomes, and that is not allowed;
            or another job, still running, writes it (see `pcmodel._ledger_lock`).
    """
    with reading(path):
        connection.execute("BEGIN IMMEDIATE")  # one transaction: the checks, the lock, the run
        try:
            row = connection.execute("SELECT value FROM meta WHERE name = 'function'").fetchone()
            if row is None:
                connection.execute("INSERT INTO meta VALUES ('function', ?)", (function,))
            elif row[0] != function and not allow_other_function:
                raise LedgerError(
                    f"the ledger {str(path)!r} records the outcomes of {row[0]}, not of {function}: "
                    f"give this job a ledger of its own, or pass ledger=pcmodel.Ledger({str(path)!r}, "
                    "allow_other_function=True) to resume it with this function"
                )
            lock = take_lock(connection, path, LedgerError)
            cursor = connection.execute(
                "INSERT INTO runs (function, clock, rerun, started) VALUES (?, ?, ?, ?)",
                (function, clock, rerun, time.time()),
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise
        assert cursor.lastrowid is not None
        return cursor.lastrowid, lock


def load_keys(connection: sqlite3.Connection, path: Path, *, failed_only: bool) -> set[str]:
    """The keys of the items recorded (or only of those recorded as failed)."""
    query = "SELECT key FROM items WHERE ok = 0" if failed_only else "SELECT key FROM items"
    with reading(path):
        return {key for (key,) in connection.execute(query)}
