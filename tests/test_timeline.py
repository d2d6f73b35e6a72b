"""Timeline plots draw what the job did; comparisons, sweeps and the pipeline map draw too."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

import pcmodel
from pcmodel import sweeps, timeline, workloads
from pcmodel.records import JobSummary


def _run(workers: int = 3, **kwargs: object) -> JobSummary:
    job = workloads.car_prices(12, seed=4, failure_rate=0.25)
    return pcmodel.run_job(job.function, job.params, workers=workers, clock="virtual", **kwargs)  # type: ignore[arg-type]


def _bars(ax: Axes) -> list[tuple[float, float, float]]:
    """(start, width, lane centre) of every bar drawn by broken_barh on `ax`."""
    bars = []
    for collection in ax.collections:
        if isinstance(collection, PolyCollection):
            for path in collection.get_paths():
                vertices = np.asarray(path.vertices, dtype=float)
                xs, ys = vertices[:, 0].tolist(), vertices[:, 1].tolist()
                bars.append((min(xs), max(xs) - min(xs), round((min(ys) + max(ys)) / 2, 6)))
    return sorted(bars)


def test_plot_timeline_draws_one_bar_per_task_in_its_worker_lane() -> None:
    summary = _run()
    fig = pcmodel.plot_timeline(summary, title="twelve cars")
    assert isinstance(fig, Figure)
    lanes, depth = fig.axes[:2]
    bars = _bars(lanes)
    expected = sorted((r.started_at, r.duration, float(r.worker)) for r in summary.results or ())
    assert [b[0] for b in bars] == pytest.approx([e[0] for e in expected])
    assert [b[1] for b in bars] == pytest.approx([e[1] for e in expected])
    assert [b[2] for b in bars] == [e[2] for e in expected]
    assert fig.get_suptitle().startswith("twelve cars\nelapsed")
    assert depth.get_ylabel() == "work queue"


def test_plot_timeline_into_given_axes_draws_only_the_lanes() -> None:
    summary = _run()
    fig = Figure()
    ax = fig.subplots()
    assert pcmodel.plot_timeline(summary, ax) is fig
    assert len(fig.axes) == 1
    assert ax.get_title().startswith("elapsed")


def test_plot_timeline_needs_a_trace() -> None:
    summary = _run(trace=False)
    with pytest.raises(ValueError, match="trace=False"):
        pcmodel.plot_timeline(summary)
    with pytest.raises(TypeError, match="summary must be a JobSummary"):
        pcmodel.plot_timeline("not a summary")  # type: ignore[arg-type]


def test_describe_gives_the_jobs_figures() -> None:
    job = workloads.seed_job()
    summary = pcmodel.run_job(job.function, job.params, workers=5, clock="virtual")
    assert timeline.describe(summary) == (
        "elapsed 2.683 s · sequential 10.690 s · speedup 3.98x · ideal makespan 2.683 s"
    )


@pytest.mark.parametrize("workers", [1, 2, 5, 12])
def test_peak_concurrency_is_bounded_by_the_workers(workers: int) -> None:
    summary = _run(workers)
    assert timeline.peak_concurrency(summary) == min(workers, 12)


def test_peak_concurrency_does_not_count_back_to_back_tasks_as_overlapping() -> None:
    job = workloads.uniform(5, low=1.0, high=1.0)
    summary = pcmodel.run_job(job.function, job.params, workers=1, clock="virtual")
    assert timeline.peak_concurrency(summary) == 1


def test_plot_timelines_stacks_jobs_on_one_time_axis() -> None:
    one, three = _run(1), _run(3)
    fig = timeline.plot_timelines({"one worker": one, "three workers": three})
    assert len(fig.axes) == 2
    top, bottom = fig.axes
    assert top.get_xlim() == bottom.get_xlim()
    assert top.get_xlim()[1] == pytest.approx(one.elapsed * 1.02)
    assert top.get_title(loc="left").startswith("one worker: elapsed")
    assert len(_bars(top)) == 12
    assert len(_bars(bottom)) == 12


def test_plot_timelines_draws_the_handler_lane_under_the_workers() -> None:
    callback = workloads.slow_callback(0.4)
    job = workloads.car_prices(6, seed=1)
    summary = pcmodel.run_job(job.function, job.params, workers=2, clock="virtual", on_task_complete=callback)
    fig = timeline.plot_timelines(
        {"saved by the handler": summary}, handler={"saved by the handler": callback.windows()}
    )
    ax = fig.axes[0]
    handler_bars = [bar for bar in _bars(ax) if bar[2] == 2.0]
    assert len(handler_bars) == 6
    assert [label.get_text() for label in ax.get_yticklabels()] == ["worker 0", "worker 1", "handler"]


def test_plot_timelines_needs_at_least_one_job() -> None:
    with pytest.raises(ValueError, match="at least one"):
        timeline.plot_timelines({})


def test_plot_speedup_draws_measured_ideal_and_perfect_curves() -> None:
    points = sweeps.sweep_workers(workloads.seed_job(), range(1, 7))
    fig = timeline.plot_speedup(points)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:3] == ["perfect: speedup = workers", "ideal greedy schedule", "measured (virtual clock)"]
    measured = ax.get_lines()[2]
    assert np.asarray(measured.get_ydata(), dtype=float).tolist() == pytest.approx(
        [p.speedup for p in points]
    )
    with pytest.raises(ValueError, match="at least one"):
        timeline.plot_speedup([])


def test_plot_queue_sweep_draws_three_panels_with_unbounded_last() -> None:
    traffic = workloads.bursty(40, size=10, pause=2.0, payload_bytes=1000)
    points = sweeps.sweep_queue_size(traffic, [0, 2, 8], workers=3)
    fig = timeline.plot_queue_sweep({"bursty": points})
    assert len(fig.axes) == 3
    memory_ax = fig.axes[0]
    line = memory_ax.get_lines()[0]
    assert np.asarray(line.get_xdata(), dtype=float).tolist() == [2, 8, 16]
    assert [tick.get_text() for tick in memory_ax.get_xticklabels()] == ["2", "8", "inf"]
    with pytest.raises(ValueError, match="at least one"):
        timeline.plot_queue_sweep({})


def test_plot_pipeline_names_every_piece() -> None:
    fig = timeline.plot_pipeline()
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    for piece in (
        "producer.py",
        "work queue",
        "worker.py",
        "result queue",
        "result_handler.py",
        "controller.py",
    ):
        assert piece in text


def test_overlapping_callbacks_get_lanes_of_their_own() -> None:
    callback = workloads.slow_callback(0.5)
    job = workloads.car_prices(8, seed=1)
    summary = pcmodel.run_job(
        job.function, job.params, workers=4, clock="virtual", on_task_complete=callback, result_handlers=2
    )
    fig = timeline.plot_timelines({"two handlers": summary}, handler={"two handlers": callback.windows()})
    ax = fig.axes[0]
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels[-2:] == ["handler 0", "handler 1"]
    for lane in (4.0, 5.0):
        bars = sorted(bar for bar in _bars(ax) if bar[2] == lane)
        assert all(a[0] + a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(bars))
    assert len([bar for bar in _bars(ax) if bar[2] >= 4.0]) == 8
