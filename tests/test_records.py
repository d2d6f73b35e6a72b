from __future__ import annotations

import dataclasses

import pytest

from pcmodel import JobSummary, TaskResult, ideal_makespan
from pcmodel.records import queue_depth


def make_result(**overrides: object) -> TaskResult:
    fields: dict[str, object] = {
        "task_id": 0,
        "params": "p",
        "value": 1,
        "error": None,
        "worker": 0,
        "enqueued_at": 0.0,
        "started_at": 0.5,
        "finished_at": 2.0,
    }
    fields.update(overrides)
    return TaskResult(**fields)  # type: ignore[arg-type]


def test_task_result_derives_ok_duration_and_wait() -> None:
    result = make_result()
    assert result.ok is True
    assert result.duration == 1.5
    assert result.wait == 0.5
    assert make_result(error=ValueError("x"), value=None).ok is False


def test_task_result_is_read_only() -> None:
    result = make_result()
    with pytest.raises(AttributeError):
        result.value = 2  # type: ignore[misc]


def test_job_summary_is_frozen_and_derives_speedup() -> None:
    summary = JobSummary(
        tasks=2, succeeded=2, failed=0, elapsed=2.0, busy_time=3.0, workers=2,
        max_queue_depth=1, producer_wait=0.0, callback_errors=0,
    )  # fmt: skip
    assert summary.speedup == 1.5
    assert summary.ideal_makespan is None
    assert not summary.traced
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.tasks = 3  # type: ignore[misc]


def test_speedup_of_an_instant_job_is_zero_not_a_division_error() -> None:
    summary = JobSummary(
        tasks=0, succeeded=0, failed=0, elapsed=0.0, busy_time=0.0, workers=1,
        max_queue_depth=0, producer_wait=0.0, callback_errors=0,
    )  # fmt: skip
    assert summary.speedup == 0.0


@pytest.mark.parametrize(
    ("durations", "workers", "expected"),
    [
        ([], 3, 0.0),
        ([1.0, 2.0, 3.0], 1, 6.0),
        ([1.0, 2.0, 3.0], 3, 3.0),
        # Greedy in order: lanes free at 3 and 1; the 2 s task goes to the lane free at 1.
        ([3.0, 1.0, 2.0], 2, 3.0),
        ([2.0, 2.0, 2.0, 2.0, 1.0], 2, 5.0),
    ],
)
def test_ideal_makespan_is_the_greedy_schedule(durations: list[float], workers: int, expected: float) -> None:
    assert ideal_makespan(durations, workers) == expected


def test_ideal_makespan_rejects_zero_lanes() -> None:
    with pytest.raises(ValueError, match=r"workers must be >= 1, got 0"):
        ideal_makespan([1.0], 0)


def test_summary_text_and_scalars_agree() -> None:
    results = (make_result(), make_result(task_id=1, worker=1))
    summary = JobSummary(
        tasks=2, succeeded=2, failed=0, elapsed=1.5, busy_time=3.0, workers=2,
        max_queue_depth=2, producer_wait=0.0, callback_errors=0, results=results,
    )  # fmt: skip
    scalars = summary.scalars()
    assert scalars["speedup"] == 2.0
    assert scalars["ideal_makespan"] == 1.5
    assert "results" not in scalars
    assert str(summary) == (
        "2 tasks (2 ok, 0 failed) on 2 workers in 1.500 s; sequential 3.000 s, speedup 2.00x, ideal makespan 1.500 s"
    )


def test_queue_depth_is_rebuilt_from_enqueue_and_start_times() -> None:
    results = [
        make_result(task_id=0, enqueued_at=0.0, started_at=0.0, finished_at=1.0),
        make_result(task_id=1, enqueued_at=0.0, started_at=1.0, finished_at=2.0),
        make_result(task_id=2, enqueued_at=0.5, started_at=2.0, finished_at=3.0),
    ]
    assert queue_depth(results) == ((0.0, 1), (0.5, 2), (1.0, 1), (2.0, 0))
    # An item a stop took back out of the queue at t=1.5 leaves it then.
    assert queue_depth(results, [(0.5, 1.5)]) == ((0.0, 1), (0.5, 3), (1.0, 2), (1.5, 1), (2.0, 0))
