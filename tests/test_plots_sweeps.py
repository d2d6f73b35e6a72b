"""The sweep plots draw the points of a sweep, framed by the references that explain them."""

from __future__ import annotations

import numpy as np
import pytest

from pcmodel import sweeps, workloads
from pcmodel.sweep_plots import plot_queue_sweep, plot_speedup


def test_plot_speedup_draws_measured_ideal_and_perfect_curves() -> None:
    points = sweeps.sweep_workers(workloads.seed_job(), range(1, 7))
    fig = plot_speedup(points)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:3] == ["perfect: speedup = workers", "ideal greedy schedule", "measured (virtual clock)"]
    measured = ax.get_lines()[2]
    assert np.asarray(measured.get_ydata(), dtype=float).tolist() == pytest.approx(
        [p.speedup for p in points]
    )
    with pytest.raises(ValueError, match="at least one"):
        plot_speedup([])


def test_plot_queue_sweep_draws_three_panels_with_unbounded_last() -> None:
    traffic = workloads.bursty(40, size=10, pause=2.0, payload_bytes=1000)
    points = sweeps.sweep_queue_size(traffic, [0, 2, 8], workers=3)
    fig = plot_queue_sweep({"bursty": points})
    assert len(fig.axes) == 3
    memory_ax = fig.axes[0]
    line = memory_ax.get_lines()[0]
    # Evenly spaced, one tick per size measured, unbounded last.
    assert np.asarray(line.get_xdata(), dtype=float).tolist() == [0, 1, 2]
    assert [tick.get_text() for tick in memory_ax.get_xticklabels()] == ["2", "8", "inf"]


def test_plot_queue_sweep_labels_every_size_even_close_ones() -> None:
    traffic = workloads.bursty(40, size=10, pause=2.0, payload_bytes=1000)
    points = sweeps.sweep_queue_size(traffic, [16, 20, 32], workers=3)
    ticks = [t.get_text() for t in plot_queue_sweep({"bursty": points}).axes[0].get_xticklabels()]
    assert ticks == ["16", "20", "32"]
    with pytest.raises(ValueError, match="at least one"):
        plot_queue_sweep({})
