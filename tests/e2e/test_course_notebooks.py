"""Every notebook of the course, run the way a learner runs it: in JupyterLab, in Chromium.

For each `notebooks/*.ipynb` (new notebooks are picked up automatically):

1. open it in JupyterLab, "Run All Cells" from the Run menu, and wait for "| Idle" in the
   status bar with no cell running or queued;
2. check what the page shows: every code cell ran; no cell shows an error unless it is
   tagged `raises-exception`; every widget output was rendered by the widget manager (no
   "Error displaying widget", no raw `IntSlider(...)` text in its place); nothing went to the
   Log Console (where a failing widget callback ends up); every image loaded;
3. for every slider view (`pcmodel.widgets.explore`), check that the page first shows the
   figure the view's draw function computes for its initial values, then move each int
   slider one step (an arrow key on its handle), type a new value into each float slider's
   readout, and click each set of toggle buttons to its next option,
   and check after each change that the page shows, byte for byte, the figure the package
   computes for the new values. The expected figures come from a separate run of the
   notebook in a kernel of its own (`tests/e2e/oracle.py`);
4. every cell that binds a slider to a knob of a running job (`handle.set_workers` in a
   slider's `observe`) is run again, starting a real-time job; its slider is moved one step,
   and the job's live figures (`handle.stats()`, shown as "limit N: ...") must show the
   running job's limit follow the slider; then its Stop button must stop the job gracefully;
5. any other slider is moved one step: what the notebook shows must change, and no problem
   may appear;
6. every cell that attaches a background job to a live view (`LiveProgress.attach(task)`) is
   run again and its Cancel button clicked: the view must report the job cancelled part way,
   with the button disabled, and no problem may appear.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lab import (
    REPO,
    JupyterLab,
    NotebookPage,
    OpenNotebook,
    missing_requirements,
    state_environment,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(missing_requirements() is not None, reason=f"e2e: {missing_requirements()}"),
]

NOTEBOOKS = sorted(path.name for path in (REPO / "notebooks").glob("*.ipynb"))
RUN_ALL_TIMEOUT = 240.0
ORACLE_TIMEOUT = 300.0
CHECKED = "data-e2e-checked"


class Oracle:
    """`python -m tests.e2e.oracle` on a notebook, run beside the browser's own run."""

    def __init__(self, lab: JupyterLab, notebook: Path) -> None:
        # Its own IPython, Jupyter and matplotlib folders: two kernels sharing one IPYTHONDIR
        # (and so one history database) made JupyterLab drop the queued cells of a Run All.
        env = state_environment(lab.state_dir.parent / "oracle-state")
        self.log = lab.state_dir.parent / "oracle-state" / f"oracle-{notebook.stem}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.oracle", str(notebook)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )

    def plans(self) -> list[dict[str, Any]]:
        try:
            stdout, _ = self.process.communicate(timeout=ORACLE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        if self.process.returncode != 0:
            log = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
            pytest.fail(f"the notebook failed in the oracle's kernel:\n{log}")
        plans: list[dict[str, Any]] = json.loads(stdout)
        return plans

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def oracle_copy(lab: JupyterLab) -> Path:
    """A second copy of the served folder, for the oracle's kernel to run in."""
    import shutil

    copy = lab.state_dir.parent / "oracle"
    if not copy.exists():
        shutil.copytree(lab.root_dir, copy)
    return copy


def check_explorer(notebook: NotebookPage, plan: dict[str, Any]) -> None:
    """Drive one `explore` view through its planned changes; check each figure shown."""
    view = notebook.widget_view(plan["cell"], plan["view"])
    view.evaluate(f"node => node.setAttribute('{CHECKED}', '')")
    image = view.locator(".widget-image").first
    status = view.locator(".widget-html")
    for step in plan["steps"]:
        action = step["action"]
        where = f"cell {plan['cell']}, view {plan['view']}, values {step['values']}"
        if action is not None:
            kind = "toggle" if action["kind"] == "toggle" else "slider"
            control = notebook.control(view, kind, action["control"])
            if action["kind"] == "slider":
                notebook.press_slider(control, action["key"])
            elif action["kind"] == "slider-text":
                notebook.type_into_slider(control, action["text"])
            else:
                notebook.click_toggle(control, action["label"])
        seen = notebook.wait_for_image(image, step["sha256"])
        assert status.all_inner_texts() in ([], [""]), f"{where}: the view shows {status.all_inner_texts()}"
        assert seen == step["sha256"], f"{where}: the figure shown is not the one the package draws"


def check_cancel_buttons(notebook: NotebookPage) -> int:
    """Re-run each cell that attaches a job to a live view, and stop the job with its Cancel button.

    The job started with `start_job` runs in the background; the view's Cancel button must
    cancel it: the view then says how many tasks were done, and the button is disabled.
    """
    cells = [c.index for c in notebook.cells() if c.cell_type == "code" and ".attach(" in c.source]
    for index in cells:
        output = notebook.cell_locator(index).locator(".jp-OutputArea").first
        for attempt in range(3):
            notebook.run_cell(index)
            button = output.locator("button.widget-button", has_text="Cancel")
            button.and_(notebook.page.locator(":not([disabled])")).wait_for(state="visible")
            button.click()
            notebook.wait_until_idle(timeout=60)
            shown = output.inner_text()
            if "cancelled after" in shown or attempt == 2:
                break
            # The job ended before the click reached the kernel: a short job on a busy
            # machine. Start it again.
        match = re.search(r"cancelled after (\d+) of (\d+) tasks", shown)
        assert match, f"cell {index}: the Cancel button did not cancel the job; the view shows {shown!r}"
        assert int(match.group(1)) < int(match.group(2))
        assert button.is_disabled()
    return len(cells)


LIVE_LIMIT = re.compile(r"\blimit (\d+):")
"""How a live view shows a running job's limit (`handle.stats().limit`), e.g. "limit 4: ..."."""


def wait_for_limit(notebook: NotebookPage, index: int, expected: int, *, timeout: float = 30.0) -> int | None:
    """Wait until cell `index` shows the running job's limit `expected`; return the last limit shown."""
    deadline = time.monotonic() + timeout
    while True:
        shown = LIVE_LIMIT.findall(notebook.output_texts()[index])
        limit = int(shown[-1]) if shown else None
        if limit == expected or time.monotonic() > deadline:
            return limit
        notebook.page.wait_for_timeout(200)


def check_live_knobs(notebook: NotebookPage) -> int:
    """Re-run each cell whose slider turns a knob of a running job; the job must follow the slider.

    Such a cell starts a real-time job with `start_job`, binds a slider to
    `handle.set_workers`, shows the job's live figures from `handle.stats()` ("limit N: ...")
    and a `LiveProgress` attached with a Stop button. Moving the slider one step must change
    the limit of the job that is running, as its own `stats()` reports it; the Stop button
    must then end the job gracefully (the view says "done: ...", with the summary).
    """
    cells = [
        c.index
        for c in notebook.cells()
        if c.cell_type == "code" and ".set_workers(" in c.source and ".observe(" in c.source
    ]
    for index in cells:
        output = notebook.cell_locator(index).locator(".jp-OutputArea").first
        notebook.run_cell(index)
        stop = output.locator("button.widget-button", has_text="Stop")
        stop.and_(notebook.page.locator(":not([disabled])")).wait_for(state="visible")
        slider = output.locator(".widget-slider").first
        before = int(notebook.slider_value(slider))
        where = f"cell {index}"
        assert wait_for_limit(notebook, index, before) == before, f"{where}: no live limit of {before} shown"
        handle = slider.locator(".noUi-handle").first
        at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        notebook.press_slider(slider, "ArrowLeft" if at_max else "ArrowRight")
        after = before - 1 if at_max else before + 1
        seen = wait_for_limit(notebook, index, after)
        assert seen == after, f"{where}: the slider moved to {after}, but the running job's limit is {seen}"
        stop.click()
        notebook.wait_until_idle(timeout=60)
        output.get_by_text(re.compile(r"^done: ")).first.wait_for(timeout=60_000)
        assert stop.is_disabled(), f"{where}: the Stop button is still enabled after the job ended"
        # Its job has ended: moving the slider now changes nothing, so the next check skips it.
        slider.evaluate(f"node => node.setAttribute('{CHECKED}', '')")
    return len(cells)


def check_other_sliders(notebook: NotebookPage) -> int:
    """Move every slider not checked yet one step; what the notebook shows must change."""
    sliders = notebook.page.locator(".jp-NotebookPanel .widget-slider")
    unchecked: list[int] = sliders.evaluate_all(
        f"nodes => nodes.map((n, i) => n.closest('[{CHECKED}]') ? -1 : i).filter(i => i >= 0)"
    )
    for number in unchecked:
        slider = sliders.nth(number)
        cells = notebook.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        before = [notebook.fingerprint(index) for index in range(cells.count())]
        handle = slider.locator(".noUi-handle").first
        at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        notebook.press_slider(slider, "ArrowLeft" if at_max else "ArrowRight")
        notebook.wait_until_idle(timeout=60)
        after = [notebook.fingerprint(index) for index in range(cells.count())]
        assert after != before, f"moving slider {number} ({slider.inner_text()!r}) changed nothing shown"
    return len(unchecked)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_all_and_its_views_follow_their_controls(
    open_notebook: OpenNotebook, lab: JupyterLab, oracle_copy: Path, name: str
) -> None:
    oracle = Oracle(lab, oracle_copy / "notebooks" / name)
    try:
        notebook = open_notebook(f"notebooks/{name}")
        notebook.run_all()
        notebook.wait_until_idle(timeout=RUN_ALL_TIMEOUT)
        assert notebook.problems() == []
        assert notebook.broken_images() == []

        plans = oracle.plans()
        for plan in plans:
            check_explorer(notebook, plan)
        check_live_knobs(notebook)
        check_other_sliders(notebook)
        check_cancel_buttons(notebook)
        notebook.wait_until_idle(timeout=60)
        assert notebook.problems() == []
    finally:
        oracle.stop()
