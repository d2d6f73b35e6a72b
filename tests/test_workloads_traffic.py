"""Traffic streams arrive on time, steady or in bursts, and refuse bad knobs."""

from __future__ import annotations

import asyncio

import pytest

import pcmodel
from pcmodel import workloads


def test_steady_traffic_arrives_evenly() -> None:
    traffic = workloads.steady(5, interval=0.5, seconds=(0.1, 0.1), payload_bytes=10)
    assert traffic.arrivals == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert traffic.durations == pytest.approx((0.1,) * 5)
    assert traffic.span == 2.0
    assert len(traffic) == 5


def test_bursty_traffic_arrives_in_bursts_at_the_same_average_rate() -> None:
    traffic = workloads.bursty(7, size=3, pause=2.0)
    assert traffic.arrivals == (0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 4.0)
    steady, bursty = workloads.steady(200), workloads.bursty(200)
    assert len(steady) / (steady.span + 0.1) == pytest.approx(len(bursty) / (bursty.span + 2.0))


def test_traffic_source_yields_each_request_at_its_arrival_time() -> None:
    traffic = workloads.bursty(5, size=2, pause=1.5, payload_bytes=3)
    seen: list[tuple[float, int, int]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async for request in traffic.source():
            seen.append((loop.time(), request.number, len(request.payload)))

    with asyncio.Runner(loop_factory=pcmodel.VirtualTimeLoop) as runner:
        runner.run(main())
    assert seen == [(0.0, 0, 3), (0.0, 1, 3), (1.5, 2, 3), (1.5, 3, 3), (3.0, 4, 3)]


def test_a_late_consumer_gets_the_backlog_at_once() -> None:
    traffic = workloads.steady(4, interval=1.0)
    seen: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async for request in traffic.source():
            seen.append(loop.time())
            if request.number == 0:
                await asyncio.sleep(2.5)  # a producer blocked on a full queue

    with asyncio.Runner(loop_factory=pcmodel.VirtualTimeLoop) as runner:
        runner.run(main())
    assert seen == [0.0, 2.5, 2.5, 3.0]


def test_traffic_latency_counts_from_arrival() -> None:
    traffic = workloads.steady(3, interval=1.0, seconds=(2.0, 2.0))
    summary = pcmodel.run_job(traffic.function, traffic.source(), workers=1, clock="virtual")
    results = summary.results or ()
    assert [r.finished_at - r.params.arrives_at for r in results] == pytest.approx([2.0, 3.0, 4.0])
    assert [r.value for r in results] == [traffic.payload_bytes] * 3


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (workloads.steady, {"interval": 0}, "interval must be > 0"),
        (workloads.bursty, {"pause": -1.0}, "pause must be > 0"),
        (workloads.bursty, {"size": 0}, "size must be >= 1"),
        (workloads.steady, {"seconds": (1.0, 0.5)}, "seconds must be"),
    ],
)
def test_traffic_rejects_bad_knobs(make: object, kwargs: dict[str, object], message: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=message):
        make(10, **kwargs)


def test_traffic_rejects_a_bool_seed() -> None:
    with pytest.raises(TypeError, match="seed must be an int"):
        workloads.steady(3, seed=True)
