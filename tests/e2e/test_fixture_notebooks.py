"""The harness's own notebooks in JupyterLab: a virtual-time slider and "Interrupt kernel".

`fixtures/slider-virtual-time.ipynb` shows a workers slider over the seed job: each move
re-runs the job on the virtual clock in the kernel and redraws its figures and timeline. The
test moves the slider through the page and checks that the page then shows exactly what
pcmodel computes here, in the test process, for that many workers.

`fixtures/interrupt-*.ipynb` run a minute-long real-time job (sync `run_job`, and
`await run_job_async`); the test presses the toolbar's "Interrupt the kernel" button while
it runs, and checks that the cell stops at once and that the next cell then runs and finds
no job thread left behind.
"""

from __future__ import annotations

import io
import re
import time

import pytest

import pcmodel
from pcmodel.timeline import describe
from tests.e2e.lab import NotebookPage, OpenNotebook, missing_requirements

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(missing_requirements() is not None, reason=f"e2e: {missing_requirements()}"),
]

RUN_ALL_TIMEOUT = 120.0
# The interrupted job needs 60 s to finish on its own; stopping is given far less.
STOP_TIMEOUT = 15.0


def expected_view(workers: int) -> tuple[str, bytes]:
    """The figures line and the timeline PNG the slider view must show for `workers`."""
    job = pcmodel.workloads.seed_job(10, seed=0)
    summary = pcmodel.run_job(job.function, job.params, workers=workers, clock="virtual")
    buffer = io.BytesIO()
    # Drawn as the fixture notebook draws it.
    pcmodel.plot_timeline(summary).savefig(buffer, format="png", dpi=50)
    return describe(summary), buffer.getvalue()


def wait_for_view(notebook: NotebookPage, cell: int, workers: int, *, timeout: float = 30.0) -> None:
    """Wait until cell `cell` shows the slider at `workers` and the matching figures and timeline."""
    numbers, png = expected_view(workers)
    view = notebook.cell_locator(cell)
    slider = notebook.sliders(cell).first
    label = view.locator(".widget-label:not(label)").filter(has_text="elapsed")
    image = view.locator(".widget-image")
    deadline = time.monotonic() + timeout
    while True:
        shown = (notebook.slider_value(slider), label.inner_text(), notebook.image_bytes(image))
        if shown == (str(workers), numbers, png) or time.monotonic() > deadline:
            break
        notebook.page.wait_for_timeout(200)
    assert shown[0] == str(workers), f"the slider shows {shown[0]}, not {workers}"
    assert shown[1] == numbers, f"for {workers} workers the view shows {shown[1]!r}, pcmodel says {numbers!r}"
    assert shown[2] == png, f"the timeline shown for {workers} workers is not the one pcmodel draws"


def test_slider_reruns_the_virtual_time_job_and_redraws(open_notebook: OpenNotebook) -> None:
    notebook = open_notebook("e2e-fixtures/slider-virtual-time.ipynb")
    notebook.run_all()
    notebook.wait_until_idle(timeout=RUN_ALL_TIMEOUT)
    assert notebook.problems() == []
    cells = notebook.cells()
    assert cells[-1].text().startswith("ready: 10 tasks")
    wait_for_view(notebook, 2, 5)
    before = notebook.fingerprint(2)

    slider = notebook.sliders(2).first
    notebook.press_slider(slider, "ArrowRight")
    wait_for_view(notebook, 2, 6)
    assert notebook.fingerprint(2) != before

    notebook.press_slider(slider, "ArrowLeft", times=4)
    wait_for_view(notebook, 2, 2)

    notebook.type_into_slider(slider, "10")
    wait_for_view(notebook, 2, 10)
    notebook.wait_until_idle(timeout=30)
    assert notebook.problems() == []


@pytest.mark.parametrize(
    ("variant", "errors"),
    [
        pytest.param("run-job", {"KeyboardInterrupt"}, id="run_job"),
        # ipykernel 7 cancels an awaiting cell's task on interrupt; ipykernel 6 raises
        # KeyboardInterrupt into it.
        pytest.param("run-job-async", {"CancelledError", "KeyboardInterrupt"}, id="await_run_job_async"),
    ],
)
def test_interrupt_kernel_stops_a_real_time_job_and_the_next_cell_runs(
    open_notebook: OpenNotebook, variant: str, errors: set[str]
) -> None:
    notebook = open_notebook(f"e2e-fixtures/interrupt-{variant}.ipynb")
    notebook.run_all()
    # The job is running once its live progress bar has moved.
    bar = notebook.cell_locator(1).locator(".widget-hprogress .progress-bar")
    notebook.page.wait_for_function(
        "bar => parseFloat(bar.style.width || '0') > 0",
        arg=bar.element_handle(timeout=RUN_ALL_TIMEOUT * 1000),
        timeout=RUN_ALL_TIMEOUT * 1000,
    )
    assert "*" in notebook.cell_locator(2).locator(".jp-InputPrompt").inner_text()

    notebook.interrupt_from_toolbar()
    notebook.wait_until_idle(timeout=STOP_TIMEOUT)
    job_cell, next_cell = notebook.cells()[2:4]
    assert len(job_cell.errors) == 1
    assert job_cell.errors[0].split(":")[0] in errors
    assert next_cell.execution_count is None, "Run All went on after the interrupted cell"

    notebook.run_cell(3)
    notebook.wait_until_idle(timeout=STOP_TIMEOUT)
    next_cell = notebook.cells()[3]
    assert next_cell.execution_count is not None
    match = re.fullmatch(r"stopped after (\d+) of 120 tasks; pcmodel threads alive: \[\]\n", next_cell.text())
    assert match, next_cell.text()
    assert 1 <= int(match.group(1)) < 120
    assert notebook.problems(expected_errors={2}) == []


def test_every_kind_of_broken_view_is_reported(open_notebook: OpenNotebook) -> None:
    """The checks the course is held to can fail: each breakage in the fixture is caught."""
    notebook = open_notebook("e2e-fixtures/broken-views.ipynb")
    notebook.run_all()
    notebook.wait_until_idle(timeout=RUN_ALL_TIMEOUT)
    notebook.press_slider(notebook.sliders(1).first, "ArrowRight")
    notebook.wait_until_idle(timeout=30)

    problems = "\n".join(notebook.problems())
    assert "printed" in notebook.output_texts()[2]
    expected = [
        r"log console: the observer saw 2",
        r"log console: .*ValueError: the observer failed",
        r"cell 2 .*: shows a raw widget repr 'IntSlider\('",
        r"cell 3 .*: shows 'Error displaying widget'",
        r"cell 4 .*: a widget shows an error: 'RuntimeError: cannot draw 2 workers'",
        r"cell 5 .*: error \['RuntimeError: an error nobody expected'\]",
    ]
    for pattern in expected:
        assert re.search(pattern, problems), f"not reported: {pattern}\nreported:\n{problems}"
    # The explore view whose draw function always fails has never had a picture to show.
    assert notebook.broken_images() == ["e2e-fixtures/missing-figure.png", "widget image in cell 4"]
