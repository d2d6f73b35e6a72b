"""The call log places every attempt of every task in the job's time."""

from __future__ import annotations

import random

import pytest

import pcmodel
from pcmodel import workloads


def _latency(rng: random.Random) -> float:
    return 1.2 if rng.random() < 0.1 else rng.uniform(0.02, 0.1)


def test_call_log_places_every_attempt_in_its_tasks_window() -> None:
    api = workloads.SimulatedCarAPI(latency=_latency, error_rate=0.3, seed=5)
    log = workloads.CallLog(api)
    retry = pcmodel.Retry(5, on=(*workloads.RETRYABLE_ERRORS, TimeoutError), seed=3)
    summary = pcmodel.run_job(
        log, range(20), workers=4, timeout=0.5, retries=retry, max_per_second=15, burst=2, clock="virtual"
    )
    calls = log.calls(summary)
    results = summary.results or ()
    assert len(calls) == sum(r.attempts for r in results) == len(log.records)
    assert [c.started_at for c in calls] == sorted(c.started_at for c in calls)
    by_task = {r.task_id: r for r in results}
    for call in calls:
        task = by_task[call.task_id]
        assert call.worker == task.worker
        assert task.started_at <= call.started_at <= call.finished_at <= task.finished_at
    for result in results:
        mine = [c for c in calls if c.task_id == result.task_id]
        assert [c.attempt for c in mine] == list(range(1, result.attempts + 1))
        assert mine[-1].finished_at == result.finished_at
        assert mine[-1].outcome == ("ok" if result.ok else "failed")
    cut = [c for c in calls if c.outcome == "cut off"]
    assert cut
    assert {round(c.finished_at - c.started_at, 9) for c in cut} == {0.5}
    assert {c.outcome for c in calls} <= {"ok", "failed", "cut off"}
    # The first task's first call starts the moment its worker takes it: exact alignment.
    assert calls[0].started_at == results[0].started_at == 0.0


def test_call_log_tells_tasks_with_the_same_params_apart_by_time() -> None:
    log = workloads.CallLog(workloads.simulated_call)
    call = workloads.SimulatedCall(1, 1.0)
    summary = pcmodel.run_job(log, [call, call, call], workers=1, clock="virtual")
    calls = log.calls(summary)
    assert [(c.task_id, c.attempt, c.started_at) for c in calls] == [(0, 1, 0.0), (1, 1, 1.0), (2, 1, 2.0)]


def test_call_log_needs_the_trace() -> None:
    log = workloads.CallLog(workloads.simulated_call)
    summary = pcmodel.run_job(log, workloads.seed_job(3).params, clock="virtual", trace=False)
    with pytest.raises(ValueError, match="trace=True"):
        log.calls(summary)
    assert (
        workloads.CallLog(workloads.simulated_call).calls(
            pcmodel.run_job(workloads.simulated_call, [], clock="virtual")
        )
        == []
    )
