"""One job at a time writes a ledger: the lock a job holds in its ledger's `meta` table.

Two jobs writing one ledger at once would each run every item the other is running (each
read the ledger's keys before the other recorded anything), and their runs would interleave.
So a job takes the ledger's lock in the transaction that starts its run, and gives it back in
its last write. The lock (`meta` row `writer`) names the process that holds it: its pid, its
host, when it took the lock, and a random token; its writer thread refreshes a heartbeat
(`meta` row `writer_seen`, wall-clock time) at least every `HEARTBEAT` seconds.

A lock is stale, and the next job takes it over (logging a warning), when the job that held it
cannot be running any more:

- its process is gone: on the same host, no process has its pid (a `kill -9`, a dead
  kernel); that is seen at once;
- or its heartbeat is older than `STALE` seconds: a job on another machine (whose pid cannot
  be checked from here), a pid since reused by another program, or a job whose writer died.

Any other lock is a running job's: a new job is refused with a `LedgerError` that says whose.
A job that finds its own lock taken over (it was stalled past `STALE`) stops with one too.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Final

__all__ = ["HEARTBEAT", "STALE", "refresh_lock", "release_lock", "take_lock"]

logger = logging.getLogger("pcmodel")

HEARTBEAT: Final = 10.0
"""Seconds between two refreshes of a running job's heartbeat (at most)."""
STALE: Final = 60.0
"""Seconds without a heartbeat after which a lock is taken over from any host."""

_LOCK: Final = "writer"
_SEEN: Final = "writer_seen"


def take_lock(connection: sqlite3.Connection, path: Path, error: type[Exception]) -> str:
    """Take the ledger's lock, inside the caller's write transaction; return the lock's value.

    Raises:
        error: another job, still running, holds the lock (the caller rolls back).
    """
    now = time.time()
    held = _read(connection)
    if held is not None:
        holder, seen = held
        if not _stale(holder, seen, now):
            raise error(
                f"the ledger {str(path)!r} is being written by another job ({_who(holder, seen, now)}): "
                "one job at a time may write a ledger; wait for that one to end, or give this job "
                "a ledger of its own (a lock left by a job that died is taken over at once on its "
                f"machine, and after {STALE:.0f} s without its heartbeat from any other)"
            )
        logger.warning(
            "the ledger %r was locked by a job that is no longer running (%s): this job takes it over",
            str(path),
            _who(holder, seen, now),
        )
    value = json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "since": now, "token": secrets.token_hex(8)}
    )
    connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?), (?, ?)", (_LOCK, value, _SEEN, repr(now)))
    return value


def refresh_lock(connection: sqlite3.Connection, value: str) -> bool:
    """Refresh the heartbeat of the lock `value`, inside a transaction; False if it is not held."""
    if not _holds(connection, value):
        return False
    connection.execute("UPDATE meta SET value = ? WHERE name = ?", (repr(time.time()), _SEEN))
    return True


def release_lock(connection: sqlite3.Connection, value: str) -> None:
    """Give back the lock `value`, inside a transaction (nothing if another job holds it now)."""
    if _holds(connection, value):
        connection.execute("DELETE FROM meta WHERE name IN (?, ?)", (_LOCK, _SEEN))


def _holds(connection: sqlite3.Connection, value: str) -> bool:
    row = connection.execute("SELECT value FROM meta WHERE name = ?", (_LOCK,)).fetchone()
    return row is not None and row[0] == value


def _read(connection: sqlite3.Connection) -> tuple[dict[str, Any], float] | None:
    """The lock's holder and the time of its last heartbeat; None if the ledger is not locked."""
    found = dict(connection.execute("SELECT name, value FROM meta WHERE name IN (?, ?)", (_LOCK, _SEEN)))
    if _LOCK not in found:
        return None
    try:
        holder = json.loads(found[_LOCK])
        seen = float(found.get(_SEEN, "0"))
    except (ValueError, TypeError):  # edited by hand: a lock nobody can be holding
        return {}, 0.0
    return (holder if isinstance(holder, dict) else {}), seen


def _stale(holder: dict[str, Any], seen: float, now: float) -> bool:
    """True if the job that holds the lock cannot be running (see the module)."""
    if now - seen > STALE:
        return True
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def _alive(pid: int) -> bool:
    """True if a process with this pid runs on this host (or if that cannot be told)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process, alive
        return True
    return True


def _who(holder: dict[str, Any], seen: float, now: float) -> str:
    since = holder.get("since")
    taken = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else "?"
    )
    return (
        f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, since {taken}, "
        f"last seen {max(now - seen, 0.0):.0f} s ago"
    )
