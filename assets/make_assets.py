"""Draw the figures in assets/ from package code: `python assets/make_assets.py`.

Every figure comes from a virtual-clock run or from a drawing function of `pcmodel.timeline`,
so running this again gives the same pictures. The README and slides use these files.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from matplotlib.figure import Figure

import pcmodel
from pcmodel import sweeps, timeline, workloads

ASSETS = Path(__file__).resolve().parent
DPI = 100


def _save(figure: Figure, name: str) -> None:
    path = ASSETS / name
    # No "Software" entry: the bytes do not change with the matplotlib version.
    figure.savefig(path, dpi=DPI, metadata={"Software": None})
    print(f"wrote {path.relative_to(ASSETS.parent)}")


def main() -> int:
    _save(timeline.plot_pipeline(), "pipeline.png")

    job = workloads.seed_job()
    summary = pcmodel.run_job(job.function, job.params, workers=5, clock="virtual")
    _save(pcmodel.plot_timeline(summary, title="10 simulated calls on 5 workers"), "timeline.png")

    cars = workloads.car_prices(40, seed=7)
    _save(
        timeline.plot_speedup(
            sweeps.sweep_workers(cars, range(1, 41)), title="40 car-price calls: speedup against workers"
        ),
        "speedup.png",
    )

    sizes = [1, 2, 4, 8, 16, 20, 32, 0]
    _save(
        timeline.plot_queue_sweep(
            {
                "steady": sweeps.sweep_queue_size(workloads.steady(), sizes, workers=4),
                "bursty": sweeps.sweep_queue_size(workloads.bursty(), sizes, workers=4),
            }
        ),
        "queue-size.png",
    )

    _save(_retrying_job(), "retries.png")
    _save(_adaptive_job(), "adaptive.png")
    return 0


def _adaptive_job() -> Figure:
    """An adaptive pool on the car-price API's twin, whose capacity drops from 8 to 4 mid-job."""
    api = workloads.SimulatedCarAPI(capacity=8, seed=3)
    retry = pcmodel.Retry(100, on=workloads.RETRYABLE_ERRORS, backoff=0.05, multiplier=1, seed=1)

    async def job() -> pcmodel.JobSummary:
        asyncio.get_running_loop().call_at(3.0, setattr, api, "capacity", 4)
        return await pcmodel.run_job_async(api, range(300), workers=pcmodel.Adaptive(max=16), retries=retry)

    summary = sweeps.run_virtual(job)
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    pcmodel.plot_timeline(
        summary,
        figure.subplots(),
        title="Adaptive(max=16) on an API that serves 8 calls at once, then 4 from t = 3 s",
    )
    return figure


def _retrying_job() -> Figure:
    """Twelve calls to the simulated car-price API, which fails, stalls and rate-limits."""

    def latency(rng: random.Random) -> float:
        return 1.5 if rng.random() < 0.12 else rng.uniform(0.1, 0.4)

    api = workloads.SimulatedCarAPI(latency=latency, error_rate=0.25, rate_limit=8, burst=4, seed=2)
    log = workloads.CallLog(api)
    retry = pcmodel.Retry(4, on=(*workloads.RETRYABLE_ERRORS, TimeoutError), seed=1)
    summary = pcmodel.run_job(log, range(12), workers=4, timeout=0.8, retries=retry, clock="virtual")
    figure = Figure(figsize=(9, 3.0), layout="constrained")
    pcmodel.plot_timeline(
        summary,
        figure.subplots(),
        calls=log.calls(summary),
        title="12 calls to a flaky, rate-limited API, with timeout=0.8 and retries",
    )
    return figure


if __name__ == "__main__":
    sys.exit(main())
