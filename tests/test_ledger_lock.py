"""One job at a time writes a ledger: a second one is refused; a dead job's lock is taken over.

Locks are planted by hand (the `meta` rows a job writes) to stand for a job in another
process, alive or dead, on this machine or another; see `pcmodel._ledger_lock`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import pcmodel
from pcmodel import JobSummary, Ledger
from pcmodel._ledger_lock import STALE
from pcmodel.ledger import LedgerError
from pcmodel.sweeps import run_virtual


async def wait(n: int) -> int:
    await asyncio.sleep(1)
    return n


def _job(path: Path, items: int = 5) -> JobSummary:
    return pcmodel.run_job(wait, range(items), workers=5, clock="virtual", ledger=path)


def _lock_rows(path: Path) -> dict[str, str]:
    connection = sqlite3.connect(path)
    try:
        return dict(connection.execute("SELECT name, value FROM meta WHERE name LIKE 'writer%'"))
    finally:
        connection.close()


def _plant_lock(path: Path, *, pid: int, host: str, seen_ago: float) -> None:
    """Make the ledger look locked by a job of process `pid` on `host`, last seen `seen_ago` s ago."""
    now = time.time()
    holder = json.dumps({"pid": pid, "host": host, "since": now - 3600, "token": "planted"})
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(
                "INSERT OR REPLACE INTO meta VALUES ('writer', ?), ('writer_seen', ?)",
                (holder, repr(now - seen_ago)),
            )
    finally:
        connection.close()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_second_job_on_a_ledger_being_written_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    calls: list[int] = []

    async def call(n: int) -> int:
        calls.append(n)
        await asyncio.sleep(1)
        return n

    async def main() -> tuple[JobSummary, BaseException | None]:
        first = pcmodel.start_job(call, range(20), workers=4, clock="virtual", ledger=path)
        await asyncio.sleep(0.5)  # the first job holds the ledger
        second = pcmodel.start_job(call, range(20), workers=4, clock="virtual", ledger=path)
        await asyncio.wait([second])
        return await first, second.exception()

    summary, refused = run_virtual(main())
    assert isinstance(refused, LedgerError)
    assert "is being written by another job (process" in str(refused)
    assert "one job at a time may write a ledger" in str(refused)
    assert summary.tasks == 20
    assert sorted(calls) == list(range(20))  # the refused job ran nothing
    assert Ledger(path).counts()["runs"] == 1
    assert _lock_rows(path) == {}  # the first job gave the lock back at its end
    assert pcmodel.run_job(call, range(25), clock="virtual", ledger=path).tasks == 5  # the next may


@pytest.mark.skipif(sys.platform == "win32", reason="a pid is checked on POSIX only")
def test_the_lock_of_a_process_that_is_gone_is_taken_over_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "job.sqlite"
    _job(path)
    _plant_lock(path, pid=_dead_pid(), host=socket.gethostname(), seen_ago=1)
    assert _job(path, 8).tasks == 3
    assert "was locked by a job that is no longer running" in caplog.text
    assert _lock_rows(path) == {}


@pytest.mark.parametrize(
    ("holder", "seen_ago", "taken_over"),
    [
        ("this process", 1, False),  # another job of this process, running
        ("this process", STALE + 5, True),  # its heartbeat stopped: the job is gone
        ("another host", 1, False),  # cannot be checked from here: its heartbeat says it runs
        ("another host", STALE + 5, True),
    ],
)
def test_a_lock_is_stale_when_its_heartbeat_stopped(
    tmp_path: Path, holder: str, seen_ago: float, taken_over: bool
) -> None:
    path = tmp_path / "job.sqlite"
    _job(path)
    if holder == "this process":
        _plant_lock(path, pid=os.getpid(), host=socket.gethostname(), seen_ago=seen_ago)
    else:
        _plant_lock(path, pid=_dead_pid(), host="another-host.example", seen_ago=seen_ago)
    if taken_over:
        assert _job(path, 8).tasks == 3
        assert _lock_rows(path) == {}
    else:
        with pytest.raises(LedgerError, match="is being written by another job"):
            _job(path, 8)
        assert _lock_rows(path)["writer"].endswith('"token": "planted"}')  # left as it was
        assert Ledger(path).counts()["runs"] == 1


def test_a_job_whose_lock_was_taken_over_stops_with_a_ledger_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pcmodel._ledger_writer as ledger_writer

    monkeypatch.setattr(ledger_writer, "HEARTBEAT", 0.0)  # refresh the lock at every write
    path = tmp_path / "job.sqlite"

    async def call(n: int) -> int:
        await asyncio.sleep(0.005)  # real time: the writer writes while the job runs
        return n

    def steal(result: Any) -> None:
        if result.task_id == 20:  # as a job that found this one's lock stale would
            _plant_lock(path, pid=1, host="another-host.example", seen_ago=0)

    summary = pcmodel.run_job(call, range(2000), workers=4, ledger=path, on_task_complete=steal)
    assert summary.stop_reason == "stop"
    assert isinstance(summary.error, LedgerError)
    assert "another job took the ledger" in str(summary.error)
    assert _lock_rows(path)["writer"].endswith('"token": "planted"}')  # not released: not its own
