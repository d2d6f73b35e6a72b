"""Ctrl-C, a vanished reader, a full disk: one short line, a known exit code, no traceback.

Each test runs the command in a subprocess whose output a thread reads, and waits for it with
a timeout, so a command that ignores the signal fails the test instead of hanging it. The
assertions are about output and exit codes, never about how long anything took.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import pytest

from tests._command import BOUND, Command

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")


def test_ctrl_c_while_the_demo_job_runs_is_one_line_and_exit_code_130() -> None:
    # 50 calls of 0-2 s on 2 workers: the job runs for many seconds, so Ctrl-C lands mid-job.
    command = Command("demo", "--tasks", "50", "--workers", "2")
    try:
        assert command.line().startswith("pcmodel demo: 50 simulated calls")
        assert command.line().startswith("[ 1/50] task ")  # the job is running
    finally:
        code, err = command.finish(signal.SIGINT)
    assert (code, err) == (130, "pcmodel demo: interrupted\n")
    assert not any("calls succeeded" in line for line in command.rest())


def test_ctrl_c_right_after_the_job_starts_is_one_line_too() -> None:
    command = Command("demo", "--tasks", "4", "--workers", "1", "--seed", "3")
    try:
        assert command.line().startswith("pcmodel demo: 4 simulated calls")
    finally:
        code, err = command.finish(signal.SIGINT)
    assert (code, err) == (130, "pcmodel demo: interrupted\n")


def test_a_reader_that_goes_away_stops_the_demo_quietly() -> None:
    # `pcmodel demo | head -1`: thousands of lines for a pipe closed after the first one.
    argv = [sys.executable, "-m", "pcmodel", "demo", "--virtual", "--tasks", "20000", "--workers", "50"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            first = b""
            while b"\n" not in first:
                ready, _, _ = select.select([process.stdout], [], [], BOUND)
                assert ready, "no output"
                chunk = os.read(process.stdout.fileno(), 4096)
                assert chunk, "the command ended early"
                first += chunk
            process.stdout.close()  # the reader goes away
            code = process.wait(timeout=BOUND)
        finally:
            if process.poll() is None:
                process.kill()
        err = process.stderr.read()
    assert first.startswith(b"pcmodel demo: 20000 simulated calls")
    assert (code, err) == (1, b"")


@pytest.mark.parametrize(
    "arguments",
    [["demo", "--virtual", "--tasks", "3"], ["serve-api", "--latency", "0", "0"]],
    ids=["demo", "serve-api"],
)
def test_output_nobody_reads_ends_the_command_quietly(arguments: list[str]) -> None:
    # The pipe's reading end is closed before the command starts: its first line fails.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "pcmodel", *arguments],
            check=False,
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=BOUND,
        )
    finally:
        os.close(write_end)
    assert (completed.returncode, completed.stderr) == (1, b"")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "arguments",
    [["demo", "--virtual", "--tasks", "3"], ["serve-api", "--latency", "0", "0"]],
    ids=["demo", "serve-api"],
)
def test_output_to_a_full_disk_is_one_line_and_exit_code_1(arguments: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        completed = subprocess.run(
            [sys.executable, "-m", "pcmodel", *arguments],
            check=False,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=BOUND,
        )
    assert completed.returncode == 1
    assert completed.stderr == f"pcmodel {arguments[0]}: [Errno 28] No space left on device\n"
