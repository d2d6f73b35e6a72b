"""Draw the figures in assets/ from package code: `python assets/make_assets.py`.

Every figure comes from a virtual-clock run or from a drawing function of `pcmodel.timeline`,
so running this again gives the same pictures. The README and slides use these files.
"""

from __future__ import annotations

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
