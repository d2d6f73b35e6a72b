"""The job's threads: waiting on another thread's outcome stays interruptible and exact."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from pcmodel._threads import result_when_done


def test_result_when_done_returns_what_another_thread_sets() -> None:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    timer = threading.Timer(0.3, future.set_result, args=(42,))  # longer than one 0.1 s slice
    timer.start()
    try:
        assert result_when_done(future) == 42
    finally:
        timer.join()


def test_result_when_done_raises_a_timeout_error_the_job_raised_instead_of_waiting_on() -> None:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    future.set_exception(TimeoutError("the job's own"))
    with pytest.raises(TimeoutError, match="the job's own"):
        result_when_done(future)


def test_result_when_done_of_a_cancelled_future_raises_cancelled() -> None:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    future.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        result_when_done(future)
