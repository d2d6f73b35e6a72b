"""The plot modules: one import path for every plot, light imports, no cycle, modules of one size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pcmodel import _plotting, comparison, pipeline_diagram, sweep_plots, timeline

PLOT_MODULES = [
    "pcmodel._plotting",
    "pcmodel._lanes",
    "pcmodel.timeline",
    "pcmodel.comparison",
    "pcmodel.sweep_plots",
    "pcmodel.pipeline_diagram",
]


@pytest.mark.parametrize("module", ["pcmodel", *PLOT_MODULES])
def test_importing_alone_works_and_does_not_load_matplotlib(module: str) -> None:
    # A fresh interpreter: imported first, a module in an import cycle fails here, and
    # nothing an earlier test imported can hide a heavy import.
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_plot_is_importable_from_timeline_as_the_module_that_draws_it() -> None:
    assert timeline.plot_timelines is comparison.plot_timelines
    assert timeline.plot_speedup is sweep_plots.plot_speedup
    assert timeline.plot_queue_sweep is sweep_plots.plot_queue_sweep
    assert timeline.plot_pipeline is pipeline_diagram.plot_pipeline
    assert timeline.describe is _plotting.describe
    assert timeline.FAILED_COLOR == _plotting.FAILED_COLOR
    assert sorted(timeline.__all__) == timeline.__all__
    for name in timeline.__all__:
        assert hasattr(timeline, name), name


@pytest.mark.parametrize("module", PLOT_MODULES)
def test_a_plot_module_stays_short_enough_to_read(module: str) -> None:
    path = Path(sys.modules[module].__file__ or "")
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, f"{path.name}: split it by subject"
