"""Ctrl-C on a script that runs a job: one press stops it, briefly, and leaves no thread behind.

Each test runs a script in a subprocess, waits until its first task has started (the script
prints a line), sends SIGINT once, and waits a bounded time for the process to end.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

BOUND = 60.0
"""Seconds to wait for a line or for the end of the process: far more than it needs."""

PRELUDE = """
import asyncio, atexit, threading, time
import pcmodel

@atexit.register
def report_threads():
    # After the traceback is printed: which pcmodel threads still run?
    alive = [t.name for t in threading.enumerate() if t.name.startswith("pcmodel") and t.is_alive()]
    print("threads", len(alive), flush=True)

async def sleeps(n):
    print("started", flush=True)
    await asyncio.sleep(60)

def stuck(n):
    print("started", flush=True)
    time.sleep(60)
"""

SCRIPTS = {
    "run_job": "pcmodel.run_job(sleeps, range(10), workers=2)",
    # One worker where a call gets stuck: exactly one call is then abandoned.
    "run_job, plain function stuck in time.sleep": "pcmodel.run_job(stuck, range(10), workers=1)",
    "run_job, virtual clock, plain function stuck": (
        "pcmodel.run_job(stuck, range(10), workers=1, clock='virtual')"
    ),
    "run_job inside asyncio.run": """
        async def main():
            pcmodel.run_job(sleeps, range(10), workers=2)  # blocks the loop's thread
        asyncio.run(main())
    """,
    "run_job_async inside asyncio.run": """
        async def main():
            await pcmodel.run_job_async(sleeps, range(10), workers=2)
        asyncio.run(main())
    """,
    "run_job_async inside asyncio.run, plain function stuck": """
        async def main():
            await pcmodel.run_job_async(stuck, range(10), workers=1)
        asyncio.run(main())
    """,
    "run_job_async inside asyncio.run, virtual clock, plain function stuck": """
        async def main():
            await pcmodel.run_job_async(stuck, range(10), workers=1, clock="virtual")
        asyncio.run(main())
    """,
}


def interrupt_once(script: str, tmp_path: Path) -> tuple[str, str]:
    """Run `script`, press Ctrl-C once after its first task started; return stdout and stderr."""
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(script))
    process = subprocess.Popen(
        [sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        started = threading.Event()
        first: list[str] = []

        def read_first_line() -> None:
            assert process.stdout is not None
            first.append(process.stdout.readline())
            started.set()

        threading.Thread(target=read_first_line, daemon=True).start()
        if not started.wait(BOUND) or not first[0].startswith("started"):
            pytest.fail(f"the job never started: {first!r}")
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail("one Ctrl-C did not stop the job: the process still runs")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return out, err


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_one_ctrl_c_stops_the_job_with_a_short_keyboard_interrupt(name: str, tmp_path: Path) -> None:
    out, err = interrupt_once(SCRIPTS[name], tmp_path)
    lines = err.strip().splitlines()
    assert lines[-1] == "KeyboardInterrupt", err
    for noise in ("Task exception was never retrieved", "Task was destroyed", "Exception ignored"):
        assert noise not in err
    # No traceback through the job's pieces: nothing the user needs is in there.
    assert "controller.py" not in err
    assert "worker.py" not in err
    if "asyncio.run" in name:
        # asyncio.run's own report of a Ctrl-C is a cancel, then the KeyboardInterrupt: 25
        # lines for a bare asyncio.sleep, before pcmodel is involved at all; pcmodel adds at
        # most its three frames and one log line.
        assert len(lines) <= 35, err
    else:
        assert len(lines) <= 10, err  # one traceback of two frames, and at most one log line
        assert err.count("Traceback") == 1
    stuck = "stuck" in name
    abandoned = [line for line in lines if "abandoned" in line]
    # Threads cannot be killed: each call stuck in time.sleep is abandoned, and said so once.
    assert len(abandoned) == (1 if stuck else 0), err
    assert out.splitlines()[-1] == ("threads 1" if stuck else "threads 0")
