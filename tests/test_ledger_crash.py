"""Crash a job with a ledger, then resume it: every item is done, once unless it was in flight.

Two kinds of crash. In virtual time, a job cancelled at random moments (hypothesis picks the
moments, the durations, the failures and the settings), resumed until it ends: the hard stop
a dead kernel or a Ctrl-C gives, where the job still writes what it handled. And for real, a
process killed with SIGKILL mid-job, which writes nothing more: the ledger it leaves must be
whole, and resuming must run every item it did not record, and none it did.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcmodel
from pcmodel import Ledger
from pcmodel.clock import VirtualTimeLoop

ROOT = Path(__file__).resolve().parent.parent


def _recorded(path: Path) -> set[Any]:
    return {row["params"] for row in Ledger(path).rows()} if path.exists() else set()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    durations=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    failing=st.sets(st.integers(0, 39), max_size=8),
    crashes=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    workers=st.integers(1, 6),
    queue_size=st.integers(0, 5),
    result_queue_size=st.integers(0, 3),
)
def test_resuming_after_crashes_does_every_item_once_except_those_in_flight(
    durations: list[int],
    failing: set[int],
    crashes: list[int],
    workers: int,
    queue_size: int,
    result_queue_size: int,
) -> None:
    items = range(len(durations))
    executions: Counter[int] = Counter()
    started: set[int] = set()

    async def call(n: int) -> int:
        executions[n] += 1
        started.add(n)
        await asyncio.sleep(durations[n] / 2)
        if n in failing:
            raise ValueError(n)
        return n

    options: dict[str, Any] = {
        "workers": workers,
        "queue_size": queue_size,
        "result_queue_size": result_queue_size,
        "clock": "virtual",
    }
    in_flight_at: list[set[int]] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.sqlite"

        async def crash_at(moment: float) -> None:
            job = pcmodel.start_job(call, items, ledger=path, **options)
            await asyncio.sleep(moment)
            job.cancel()
            await asyncio.wait([job])

        for moment in crashes:
            started.clear()
            before = _recorded(path)
            with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
                runner.run(crash_at(moment / 2))
            after = _recorded(path)
            assert before <= after  # nothing recorded is ever lost
            assert not started & before  # nothing recorded ran again
            # Started, and not recorded when the job was cancelled: in a worker's hands, or
            # done with its outcome still on the result queue.
            in_flight = started - after
            if result_queue_size:  # bounded: each worker's item, the queue's, the handler's
                assert len(in_flight) <= workers + result_queue_size + 1
            in_flight_at.append(in_flight)

        started.clear()
        before = _recorded(path)
        summary = pcmodel.run_job(call, items, ledger=path, **options)
        assert started == set(items) - before  # the last run ran exactly what was left
        ledger = Ledger(path)
        rows = ledger.rows()
        assert sorted(row["params"] for row in rows) == list(items)  # each item once in the ledger
        assert {row["params"] for row in rows if not row["ok"]} == failing & set(items)
        assert summary.skipped + summary.tasks == len(items)

    for n in items:
        reruns = sum(n in in_flight for in_flight in in_flight_at)
        assert executions[n] == 1 + reruns, (n, executions[n], in_flight_at)


_KILLED_JOB = """
import asyncio, sys
import pcmodel

calls = open(sys.argv[2], "a", buffering=1)

async def price(n):
    calls.write(f"{n}\\n")
    await asyncio.sleep(0.002)
    if n % 50 == 7:
        raise ConnectionError(n)
    return n

def progress(result):
    if result.task_id % 100 == 0:
        print(result.task_id, flush=True)

summary = pcmodel.run_job(price, range(3000), workers=20, ledger=sys.argv[1], on_task_complete=progress)
print("done", summary.tasks, summary.skipped, flush=True)
"""


def _job(tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / "job.py"
    script.write_text(_KILLED_JOB)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "job.sqlite"), str(tmp_path / "calls.txt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _calls(tmp_path: Path) -> Counter[int]:
    return Counter(int(line) for line in (tmp_path / "calls.txt").read_text().split())


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_job_killed_outright_resumes_without_redoing_what_it_recorded(tmp_path: Path) -> None:
    job = _job(tmp_path)
    assert job.stdout is not None
    try:
        # Let it handle a good part of the job, then kill it without warning.
        while True:
            line = job.stdout.readline()
            assert line, f"the job ended early: {job.stderr.read() if job.stderr else ''}"
            if int(line) >= 1200:
                break
        killed = job.pid
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=60)
        job.stdout.close()
        if job.stderr is not None:
            job.stderr.close()
    assert job.returncode == -signal.SIGKILL

    path = tmp_path / "job.sqlite"
    with sqlite3.connect(path) as connection:  # the write-ahead log replays on opening
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # The killed job's lock is left behind, naming its process...
        [(lock,)] = connection.execute("SELECT value FROM meta WHERE name = 'writer'")
    connection.close()
    assert json.loads(lock)["pid"] == killed
    recorded = _recorded(path)
    ran_before = set(_calls(tmp_path))
    assert 0 < len(recorded) < 3000
    assert recorded <= ran_before
    lost = ran_before - recorded  # in flight, or handled in the last batch not yet written
    assert len(lost) < 3000 - len(recorded)

    job = _job(tmp_path)
    out, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    assert out.splitlines()[-1] == f"done {3000 - len(recorded)} {len(recorded)}"
    calls = _calls(tmp_path)
    assert set(calls) == set(range(3000))
    twice = {n for n, count in calls.items() if count > 1}
    assert twice == lost  # what ran twice is exactly what the killed job had not recorded
    assert max(calls.values()) == 2
    counts = Ledger(path).counts()
    assert (counts["items"], counts["failed"], counts["runs"]) == (3000, 60, 2)
    # ... and the resume took it over at once (that process is gone), then gave it back.
    assert "was locked by a job that is no longer running (process " + str(killed) in err
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM meta WHERE name LIKE 'writer%'").fetchone() == (0,)
    connection.close()
