"""A broker job writes its ledger in the controller, as a local job does: resume and rerun work alike."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")

from pcmodel import Ledger, StopSignal, TaskResult
from tests.test_broker import Workers, needs_server, redis_url, run, workers

__all__ = ["redis_url", "workers"]  # the fixtures, used by name

QUEUE = "tests-ledger"


@needs_server
async def test_a_broker_job_records_in_its_ledger_and_resumes_from_it(
    redis_url: str, workers: Workers, tmp_path: Path
) -> None:
    workers.start(QUEUE, 1, workers=5)
    path = tmp_path / "job.sqlite"
    params = [
        {"n": n, "sleep": 0.01, **({"do": "fail"} if n % 7 == 3 else {"do": "quota"} if n == 5 else {})}
        for n in range(40)
    ]
    stop = StopSignal()

    def stop_at_ten(result: TaskResult) -> None:
        if result.task_id == 10:
            stop.set()

    first = await run(redis_url, params, queue=QUEUE, ledger=path, stop=stop, on_task_complete=stop_at_ten)
    assert first.stop_reason == "stop"
    assert first.unprocessed > 0
    recorded = {row["params"]["n"] for row in Ledger(path).rows()}
    assert len(recorded) == first.tasks

    ran: list[int] = []
    second = await run(
        redis_url, params, queue=QUEUE, ledger=path, on_task_complete=lambda r: ran.append(r.params["n"])
    )
    assert second.skipped == len(recorded)
    assert sorted(ran) == sorted(set(range(40)) - recorded)

    ledger = Ledger(path)
    assert ledger.function == "tests.test_broker:act"
    assert ledger.counts() == {"items": 40, "ok": 33, "failed": 7, "dead_letters": 7, "runs": 2}
    # A worker process's own error type keeps its name in the ledger.
    [quota] = ledger.results(error_type="QuotaError")
    assert quota.params["n"] == 5
    assert quota.error is not None
    assert quota.error.error_type == "tests.test_broker.QuotaError"  # type: ignore[attr-defined]
    assert {row["params"]["n"] for row in ledger.rows(error_type="ValueError")} == {3, 10, 17, 24, 31, 38}

    third = await run(redis_url, params, queue=QUEUE, ledger=path, rerun="failed")
    assert (third.tasks, third.failed, third.skipped) == (7, 7, 33)


@needs_server
async def test_calls_a_broker_jobs_fail_fast_halt_cancels_are_not_recorded(
    redis_url: str, workers: Workers, tmp_path: Path
) -> None:
    workers.start(QUEUE, 1, workers=5)
    path = tmp_path / "job.sqlite"
    params = [
        {"n": n, "sleep": 0.2 if n == 5 else 5.0, "do": "fail" if n == 5 else None} for n in range(5, 9)
    ]
    hooked: list[TaskResult] = []
    summary = await run(
        redis_url, params, queue=QUEUE, ledger=path, fail_fast=True, on_retry_exhausted=hooked.append
    )
    assert summary.stop_reason == "fail_fast"
    assert summary.cancelled >= 1
    assert (summary.dead_letters, [result.params["n"] for result in hooked]) == (1, [5])
    # Only the failure is an outcome; the calls the halt cancelled run again on resume.
    assert [row["params"]["n"] for row in Ledger(path).rows()] == [5]
