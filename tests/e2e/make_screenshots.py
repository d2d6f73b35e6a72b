"""Screenshots of the course in JupyterLab, for the README: `python -m tests.e2e.make_screenshots`.

Starts JupyterLab on copies of notebooks/ and assets/, opens notebooks in headless Chromium,
runs them with "Run All", and saves what the page shows into `assets/jupyterlab-*.png`:

- `jupyterlab-course.png`: the index notebook, with the course in the file browser;
- `jupyterlab-slider.png`: the workers slider of 03-workers, moved to 20 workers;
- `jupyterlab-live-progress.png`: a real-time job's live progress and timeline in 05.

Needs what the end-to-end tests need: `bash .ci/e2e-setup.sh` and the `e2e` extra.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tests.e2e.lab import REPO, JupyterLab, NotebookPage, launch_browser, missing_requirements, serve_copies

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


def scroll_to_cell(notebook: NotebookPage, needle: str) -> int:
    """Scroll the notebook so that the first code cell containing `needle` is at the top."""
    for cell in notebook.cells():
        if cell.cell_type == "code" and needle in cell.source:
            notebook.cell_locator(cell.index).evaluate("node => node.scrollIntoView({block: 'start'})")
            notebook.page.wait_for_timeout(300)
            return cell.index
    raise LookupError(f"{notebook.path}: no code cell contains {needle!r}")


def run_all(notebook: NotebookPage) -> None:
    notebook.run_all()
    notebook.wait_until_idle(timeout=240)
    problems = notebook.problems()
    if problems:
        raise RuntimeError(f"{notebook.path} does not run cleanly: {problems}")


def hide_side_panel(notebook: NotebookPage) -> None:
    """Close the left side panel, to give the notebook the whole width."""
    notebook.page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    notebook.page.wait_for_timeout(300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets", help="folder for the PNG files")
    args = parser.parse_args(argv)
    missing = missing_requirements()
    if missing:
        print(f"cannot take screenshots: {missing}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pcmodel-shots-") as temp:
        base = Path(temp)
        root = base / "served"
        serve_copies({"notebooks": REPO / "notebooks", "assets": REPO / "assets"}, root)
        with JupyterLab(root, base / "state") as lab, launch_browser(lab.state_dir) as (_pw, browser):

            def open_notebook(path: str) -> NotebookPage:
                page = browser.new_context(viewport=VIEWPORT).new_page()
                notebook = NotebookPage(page, lab, path)
                notebook.open()
                return notebook

            shots: list[Path] = []

            notebook = open_notebook("notebooks/00-index.ipynb")
            run_all(notebook)
            notebook.page.locator(".jp-DirListing-item", has_text="03-workers").wait_for()
            notebook.cell_locator(0).evaluate("node => node.scrollIntoView({block: 'start'})")
            notebook.page.wait_for_timeout(500)
            shots.append(args.out / "jupyterlab-course.png")
            notebook.page.screenshot(path=str(shots[-1]))
            notebook.page.context.close()
            lab.shutdown_kernels()

            notebook = open_notebook("notebooks/03-workers.ipynb")
            hide_side_panel(notebook)
            run_all(notebook)
            index = scroll_to_cell(notebook, "widgets.explore(")
            slider = notebook.sliders(index).first
            notebook.type_into_slider(slider, "20")
            notebook.wait_until_idle(timeout=60)
            notebook.page.evaluate("() => document.activeElement && document.activeElement.blur()")
            notebook.page.wait_for_timeout(800)
            scroll_to_cell(notebook, "widgets.explore(")
            shots.append(args.out / "jupyterlab-slider.png")
            notebook.page.screenshot(path=str(shots[-1]))
            notebook.page.context.close()
            lab.shutdown_kernels()

            notebook = open_notebook("notebooks/05-controller-and-the-whole-job.ipynb")
            hide_side_panel(notebook)
            run_all(notebook)
            scroll_to_cell(notebook, "LiveProgress(")
            shots.append(args.out / "jupyterlab-live-progress.png")
            notebook.page.screenshot(path=str(shots[-1]))
            notebook.page.context.close()
            lab.shutdown_kernels()
    for shot in shots:
        print(f"saved {shot.relative_to(REPO) if shot.is_relative_to(REPO) else shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
