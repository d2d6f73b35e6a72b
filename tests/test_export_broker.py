"""The exported trace of a real job on worker processes: a process of the trace per worker
process, a track per slot, and its failures named by their original type.

Uses the broker tests' Redis server and pool of two worker processes (`tests/test_broker.py`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")

from pcmodel import export
from tests.test_broker import Workers, items, needs_server, pool, redis_url, run  # noqa: F401 - fixtures
from tests.test_export import _of, _track_names, check_trace

MICRO = 1_000_000


@needs_server
async def test_a_broker_jobs_trace_has_a_process_per_worker_process_and_a_track_per_slot(
    redis_url: str,  # noqa: F811 - a fixture
    pool: Workers,  # noqa: F811 - a fixture
    tmp_path: Path,
) -> None:
    params = items(120, sleep=0.01)
    for item in params[::10]:
        item["do"] = "quota"  # tests.test_broker.QuotaError, raised in the worker process
    summary = await run(redis_url, params, queue_size=40)
    assert (summary.tasks, summary.failed) == (120, 12)
    events = check_trace(export.trace_events(summary))
    processes = {e["pid"]: e["args"]["name"] for e in _of(events, "M", "process_name")}
    assert sorted(processes.values()) == sorted(
        ["pcmodel job"] + [f"worker process {process.label}" for process in summary.processes]
    )
    names = _track_names(events)
    assert not any("overlap" in name for name in names.values()), "a slot ran two tasks at once"
    results = {result.task_id: result for result in summary.results or ()}
    slices = [e for e in _of(events, "X") if e["cat"].startswith("task")]
    assert len(slices) == 120
    for event in slices:
        result = results[event["args"]["task_id"]]
        owner = summary.process_of(result.worker)
        assert owner is not None
        assert processes[event["pid"]] == f"worker process {owner.label}"
        assert names[event["tid"]] == f"slot {result.worker - owner.first_lane} (lane {result.worker})"
        assert event["ts"] == result.started_at * MICRO
    assert sorted(e["name"] for e in _of(events, "i")) == ["failed: QuotaError"] * 12
    failed = [e["args"] for e in slices if not e["args"]["ok"]]
    assert {a["error_type"] for a in failed} == {"tests.test_broker.QuotaError"}
    with export.write_csv(summary, tmp_path / "broker.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sum(row["error_type"] == "tests.test_broker.QuotaError" for row in rows) == 12
