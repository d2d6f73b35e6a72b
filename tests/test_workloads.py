"""Seeded workloads: same seed, same job; every simulated piece importable from `pcmodel.workloads`."""

from __future__ import annotations

import pytest

import pcmodel
from pcmodel import workloads


def test_seed_job_reproduces_the_write_up() -> None:
    job = workloads.seed_job()
    assert len(job) == 10
    assert job.sequential_time == pytest.approx(10.690327506258539)
    summary = pcmodel.run_job(job.function, job.params, workers=5, clock="virtual")
    assert summary.elapsed == pytest.approx(2.6826728847906676)
    assert [r.value for r in summary.results or ()] == [n * n for n in range(10)]


@pytest.mark.parametrize("make", [workloads.seed_job, workloads.uniform, workloads.car_prices])
def test_same_seed_gives_the_same_job(make: object) -> None:
    assert callable(make)
    assert make(12, seed=3) == make(12, seed=3)
    assert make(12, seed=3).durations != make(12, seed=4).durations


def test_car_prices_fail_at_the_requested_rate() -> None:
    job = workloads.car_prices(400, seed=1, failure_rate=0.25)
    failing = sum(1 for car in job.params if car["fails"])
    assert 70 <= failing <= 130
    summary = pcmodel.run_job(job.function, job.params, workers=50, clock="virtual")
    assert summary.failed == failing
    errors = {type(r.error) for r in summary.results or () if not r.ok}
    assert errors == {workloads.PriceAPIError}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_rate": 1.5}, "failure_rate must be between 0 and 1"),
        ({"latency": (2.0, 1.0)}, "latency must be"),
    ],
)
def test_car_prices_rejects_bad_knobs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        workloads.car_prices(5, **kwargs)  # type: ignore[arg-type]


# Every name the lessons, tests and benchmarks import from `pcmodel.workloads`, whichever
# module of its subject defines it.
PUBLIC = [
    "RETRYABLE_ERRORS",
    "Call",
    "CallLog",
    "Latency",
    "PriceAPIError",
    "RateLimited",
    "Request",
    "ServerError",
    "SimulatedCall",
    "SimulatedCarAPI",
    "SlowCallback",
    "Traffic",
    "Workload",
    "bursts",
    "bursty",
    "car_prices",
    "fetch_price",
    "handle_request",
    "paced",
    "request_fate",
    "seed_job",
    "simulated_call",
    "slow_callback",
    "steady",
    "uniform",
]


def test_every_simulated_piece_is_importable_from_workloads() -> None:
    assert workloads.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(workloads, name) is not None, name


def test_fetch_price_keeps_its_importable_name() -> None:
    # Worker processes serve the queue named after the function: `pcmodel.workloads:fetch_price`.
    assert (workloads.fetch_price.__module__, workloads.fetch_price.__qualname__) == (
        "pcmodel.workloads",
        "fetch_price",
    )
