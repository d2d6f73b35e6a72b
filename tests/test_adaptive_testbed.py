"""Adaptive concurrency on the car API in capacity mode: it finds K, grows to max without one, follows K down.

The API serves at most K calls at once and turns the next away at once (429, with the exact
wait until a slot frees). On its twin, in virtual time, the runs are exact and repeatable; on
the real HTTP server, in real time, only outcomes are asserted (every item done, every 429
counted, the limit within bounds), never timings.

How "settles" is measured: with `timeline.mean_limit(summary, start, end)`, the limit's
time-weighted mean from `start` to `end`, over the busy part of the job: until the work queue
emptied for the last time. While items wait, the pool always has work to send up to its
limit, so an AIMD limit saws up and down around K and its mean says where it settled; after
that, a tail of retries backing off says nothing about the limit (a limit with nothing to
send neither grows nor meets a 429).
"""

from __future__ import annotations

import asyncio
import math

import pytest

import pcmodel
from pcmodel import sweeps, timeline, workloads
from pcmodel.records import JobSummary

K = 20


def _retry() -> pcmodel.Retry:
    """Every API error retried soon and flat, as an adaptive pool wants (the limit protects the API).

    A doubling backoff would leave a few unlucky tasks waiting seconds after the rest: a tail
    in which the limit has nothing to send.
    """
    return pcmodel.Retry(1000, on=workloads.RETRYABLE_ERRORS, backoff=0.05, multiplier=1, seed=1)


def _busy_until(summary: JobSummary) -> float:
    """When the work queue emptied for the last time: the end of the busy part of the job."""
    depth = summary.queue_depth or ()
    last_waiting = max(i for i, sample in enumerate(depth) if sample.depth > 0)
    return depth[last_waiting + 1].time


def _goodput(summary: JobSummary) -> float:
    """Successful calls per second."""
    return summary.succeeded / summary.elapsed


def _price(
    workers: int | pcmodel.Adaptive, items: int, **api: object
) -> tuple[JobSummary, workloads.SimulatedCarAPI]:
    twin = workloads.SimulatedCarAPI(seed=1, **api)  # type: ignore[arg-type]
    summary = pcmodel.run_job(twin, range(items), workers=workers, retries=_retry(), clock="virtual")
    return summary, twin


def test_the_adaptive_limit_settles_within_20_percent_of_k_with_the_goodput_of_a_pool_tuned_to_k() -> None:
    adaptive, api = _price(pcmodel.Adaptive(max=200), 3000, capacity=K)
    tuned, _ = _price(K, 3000, capacity=K)
    assert adaptive.succeeded == tuned.succeeded == 3000
    # Over the second half of the busy part of the job.
    busy = _busy_until(adaptive)
    settled = timeline.mean_limit(adaptive, busy / 2, busy)
    assert 0.8 * K <= settled <= 1.2 * K, settled
    assert _goodput(adaptive) == pytest.approx(_goodput(tuned), rel=0.10)
    # Each 429 is a drop on the timeline, and the API counted every one.
    drops = adaptive.drops or ()
    assert sum(drop.kind == "rate_limited" for drop in drops) == api.over_capacity > 0
    assert {drop.kind for drop in drops} == {"rate_limited"}
    # The API never served more than K, and the pool did not flood it: few 429s per call.
    assert api.max_in_flight == K
    assert api.over_capacity / api.requests < 0.05


def test_without_a_capacity_limit_the_limit_grows_to_max_and_nothing_is_dropped() -> None:
    summary, api = _price(pcmodel.Adaptive(max=50), 2000)
    changes = summary.limit_changes or ()
    assert changes[0].cause == "start"
    assert max(change.limit for change in changes) == 50
    assert {change.cause for change in changes} == {"start", "grow"}
    assert summary.drops == ()
    assert api.max_in_flight == 50
    assert timeline.settled_at(summary, 50, 50) is not None


def test_after_k_drops_mid_job_the_limit_follows_within_a_bounded_number_of_episodes() -> None:
    api = workloads.SimulatedCarAPI(capacity=K, seed=1)
    new_k, dropped_at = 8, 10.0

    async def job() -> JobSummary:
        asyncio.get_running_loop().call_at(dropped_at, setattr, api, "capacity", new_k)
        return await pcmodel.run_job_async(
            api, range(3000), workers=pcmodel.Adaptive(max=200), retries=_retry()
        )

    summary = sweeps.run_virtual(job)
    assert summary.succeeded == 3000
    changes = summary.limit_changes or ()
    before = timeline.mean_limit(summary, dropped_at / 2, dropped_at)
    assert 0.8 * K <= before <= 1.2 * K, before
    # From the drop on, each congestion episode cuts the limit once (by Adaptive's backoff,
    # 0.9): reaching 1.2 x the new K takes ceil(log(1.2 * 8 / 20) / log(0.9)) = 7 cuts from
    # the old K. Allow three more, for episodes that meet the limit while it still grows.
    reached = next(c for c in changes if c.time >= dropped_at and c.limit <= 1.2 * new_k)
    episodes = [c for c in changes if dropped_at <= c.time <= reached.time and c.cause == "congestion"]
    bound = math.ceil(math.log(1.2 * new_k / K) / math.log(pcmodel.Adaptive().backoff)) + 3
    assert len(episodes) <= bound, (len(episodes), bound)
    # And settles there, from then to the end of the busy part of the job.
    after = timeline.mean_limit(summary, reached.time, _busy_until(summary))
    assert 0.8 * new_k <= after <= 1.2 * new_k, after
    assert api.max_in_flight == K


def test_against_the_real_http_server_every_item_is_done_the_429s_counted_and_the_limit_bounded() -> None:
    carapi = pytest.importorskip("pcmodel.carapi")
    capacity = 6

    async def job() -> tuple[JobSummary, object]:
        async with (
            carapi.CarAPIServer(latency=(0.002, 0.01), capacity=capacity, seed=3) as server,
            carapi.CarPriceClient(server.url) as fetch_price,
        ):
            retry = pcmodel.Retry(1000, on=carapi.RETRYABLE_ERRORS, backoff=0.005, max_backoff=0.1, seed=1)
            summary = await pcmodel.run_job_async(
                fetch_price, range(300), workers=pcmodel.Adaptive(max=60), retries=retry
            )
            return summary, server.statistics()

    summary, stats = asyncio.run(job())
    assert summary.succeeded == 300
    assert stats.answered == 300  # type: ignore[attr-defined]
    assert stats.max_in_flight <= capacity  # type: ignore[attr-defined]
    drops = summary.drops or ()
    assert sum(drop.kind == "rate_limited" for drop in drops) == stats.over_capacity  # type: ignore[attr-defined]
    changes = summary.limit_changes or ()
    assert [c.time for c in changes] == sorted(c.time for c in changes)
    assert all(1 <= c.limit <= 60 for c in changes)
    if stats.over_capacity:  # type: ignore[attr-defined]
        # Once it met the capacity, the limit never went far past it: each excursion above K
        # ends with its first 429.
        first_cut = next(c.time for c in changes if c.cause == "congestion")
        assert max(c.limit for c in changes if c.time >= first_cut) <= 2 * capacity
