"""The virtual clock at its limits: closing with threads, timers far ahead, at infinity, NaN.

A regression here spins or hangs the loop, which no test in the same process could stop: each
such test runs its script in a subprocess with a timeout, and fails if it runs out.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pcmodel import VirtualTimeLoop

BOUND = 60.0
"""Seconds a script may take: far more than any of them needs, so only a hang reaches it."""


def run_script(code: str) -> str:
    """Run `code` in a fresh interpreter with warnings as errors; return its stdout."""
    try:
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=BOUND,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script did not end within {BOUND} s: the clock spins or waits forever")
    assert done.returncode == 0, done.stderr
    # No warning and no traceback (a warning is an error under -W error); a log line of the
    # job's own is not the clock's business.
    assert "Warning" not in done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_a_timer_far_ahead_is_reached_in_one_jump() -> None:
    # With a cap of a day per jump, 1e300 s took ~1e295 turns of the loop.
    out = run_script(
        """
        import asyncio
        from pcmodel import VirtualTimeLoop

        async def main():
            loop = asyncio.get_running_loop()
            await asyncio.sleep(1e300)
            first = loop.time()
            await asyncio.sleep(1)  # 1e300 + 1 == 1e300: due exactly now
            print(first, loop.time())

        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            runner.run(main())
        """
    )
    assert out.split() == ["1e+300", "1e+300"]


def test_a_timer_far_ahead_is_reached_in_one_jump_while_a_socket_is_registered() -> None:
    # Real I/O registered: the loop polls it (without waiting), then jumps.
    out = run_script(
        """
        import asyncio, socket
        from pcmodel import VirtualTimeLoop

        async def main():
            loop = asyncio.get_running_loop()
            left, right = socket.socketpair()
            loop.add_reader(left, print, "never")
            try:
                await asyncio.sleep(1e300)
                print(loop.time())
            finally:
                loop.remove_reader(left)
                left.close()
                right.close()

        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            runner.run(main())
        """
    )
    assert out.split() == ["1e+300"]


def test_a_job_waiting_only_on_timers_at_infinity_is_a_deadlock_not_a_spin() -> None:
    # sleep(inf), and a sum of two huge delays that overflows to inf: neither can ever fire.
    out = run_script(
        """
        import asyncio, math
        import pcmodel

        async def forever(n):
            if n == 0:
                await asyncio.sleep(math.inf)
            await asyncio.sleep(1e308)
            await asyncio.sleep(1e308)

        try:
            pcmodel.run_job(forever, range(2), workers=2, clock="virtual")
        except pcmodel.DeadlockError as error:
            print(str(error).splitlines()[0])
        """
    )
    assert out.startswith("stuck at virtual time 100000000000000")  # 1e308, formatted with %.3f


def test_a_rate_limit_of_almost_zero_ends_at_once_in_virtual_time() -> None:
    # Either refused up front or finished in one jump per call: never a spin.
    out = run_script(
        """
        import pcmodel

        async def f(n):
            return n

        try:
            summary = pcmodel.run_job(f, range(3), max_per_second=1e-300, clock="virtual")
        except ValueError as error:
            print("refused", error)
        else:
            print("ran", summary.succeeded, summary.elapsed)
        """
    )
    assert out.startswith("refused max_per_second") or out.split() == ["ran", "3", "2e+300"]


def test_a_nan_delay_is_refused() -> None:
    delay = math.nan

    async def main() -> None:
        # Python 3.13's asyncio.sleep refuses NaN itself; before, the loop does.
        with pytest.raises(ValueError, match=r"a timer's delay must be a number of seconds, got nan|NaN"):
            await asyncio.sleep(delay)
        with pytest.raises(ValueError, match=r"a timer's delay must be a number of seconds, got nan"):
            asyncio.get_running_loop().call_later(delay, print)
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match="a timer's time must be a number of seconds, got nan"):
            loop.call_at(delay, print)

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(main())


@pytest.mark.parametrize(
    "function",
    ["async def f(n): return await asyncio.to_thread(time.sleep, 0.01)", "def f(n): time.sleep(0.01)"],
    ids=["to_thread", "plain"],
)
def test_a_virtual_job_using_threads_closes_without_a_warning(function: str) -> None:
    # Python 3.13 waits for the default executor's threads with a timer on the loop's clock,
    # which virtual time jumped straight past: "did not finishing joining its threads within
    # 300 seconds" (an error under -W error, and under this suite's filterwarnings).
    out = run_script(
        f"""
        import asyncio, time
        import pcmodel

        {function}

        print(pcmodel.run_job(f, range(3), clock="virtual").succeeded)
        """
    )
    assert out.split() == ["3"]


def test_closing_a_virtual_loop_waits_for_the_default_executors_threads_for_real() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(30)
        time.sleep(0.05)
        finished.set()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(None, slow)
        await asyncio.to_thread(started.wait, 30)
        call.cancel()  # the call goes on in its thread, no longer counted as busy
        await asyncio.sleep(5)
        assert not finished.is_set()
        release.set()  # still running when main returns: Runner.close() must wait for it
        return loop.time()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        assert runner.run(main()) == 5.0
    assert finished.is_set()


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Python 3.11 and 3.12 wait without a limit")
def test_the_limit_on_closing_the_default_executor_is_in_real_seconds() -> None:
    release = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        loop.run_in_executor(None, release.wait, 30)
        await asyncio.sleep(0)
        with pytest.warns(RuntimeWarning, match="did not finishing joining its threads within 0.05 seconds"):
            await loop.shutdown_default_executor(0.05)
        release.set()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(main())
