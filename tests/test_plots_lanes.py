"""The worker lanes' helpers: markers that share a spot, labels that would overprint."""

from __future__ import annotations

from pcmodel._congestion import clusters
from pcmodel._lanes import _window_labels
from pcmodel.records import TaskResult


def test_429s_too_close_to_tell_apart_share_a_marker_with_their_count() -> None:
    assert clusters([(0, 0.0), (2, 0.001), (0, 0.002), (0, 0.5), (2, 0.0015)], 0.01) == [
        (0, 0.0, 2),
        (0, 0.5, 1),
        (2, 0.001, 2),
    ]


def test_window_labels_that_would_overprint_are_joined() -> None:
    def result(task_id: int, worker: int, start: float, attempts: int = 1) -> TaskResult:
        return TaskResult(task_id, None, 1, None, worker, 0.0, start, start + 0.01, attempts)

    results = [
        result(11, 2, 0.050),
        result(12, 2, 0.051),
        result(13, 2, 0.052, 2),
        result(14, 2, 0.6),
        result(1, 0, 0.05),
    ]
    assert _window_labels(results, span=1.2) == [
        (0, 0.05, "1"),
        (2, 0.05, "11,12,13 \N{MULTIPLICATION SIGN}2"),
        (2, 0.6, "14"),
    ]
