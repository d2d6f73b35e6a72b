"""What a notebook's slider views must show, computed outside the browser.

`python -m tests.e2e.oracle NOTEBOOK` runs the notebook top to bottom in a kernel of its own
(nbclient, not the browser's kernel), then, for every `pcmodel.widgets.Explorer` view it
displayed, plans a few control changes (each slider one step, each set of toggle buttons to
its next option) and calls the view's own `draw` function with the values after each change,
rendering the figure as the view renders it. It prints, as JSON, where each view sits in the
notebook (cell, output) and the SHA-256 of the image expected after each change.

The browser test then makes the same changes through the page and checks the image the page
shows byte for byte: the slider reached the kernel, the kernel re-ran the virtual-time job
with the new value, and the page shows that figure. Virtual time and fixed seeds make the
figures deterministic, so two kernels draw identical bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Runs in the oracle's kernel after the notebook: describe every Explorer and its plan.
PROBE = r"""
def _pcmodel_e2e_probe():
    import gc
    import hashlib
    import json

    import ipywidgets
    from pcmodel.widgets import Explorer, figure_png

    def digest(values):
        figure = explorer.draw(**values)
        return hashlib.sha256(figure_png(figure, dpi=explorer.dpi)).hexdigest()

    views = {}
    for explorer in [o for o in gc.get_objects() if isinstance(o, Explorer)]:
        if explorer.model_id is None:
            continue
        values = dict(explorer.values)
        steps = [{"action": None, "values": repr(values), "sha256": digest(values)}]
        for name, control in explorer.controls.items():
            if isinstance(control, ipywidgets.IntSlider):
                up = control.value + control.step <= control.max
                new = control.value + control.step if up else control.value - control.step
                action = {"kind": "slider", "control": name, "key": "ArrowRight" if up else "ArrowLeft"}
            elif isinstance(control, ipywidgets.FloatSlider):
                # Typed into the readout: the shortest repr of a float reads back as the same
                # float in JavaScript, so both sides agree on the value exactly.
                span = control.max - control.min
                new = round(control.value + span / 4, 3)
                if new > control.max:
                    new = round(control.value - span / 4, 3)
                action = {"kind": "slider-text", "control": name, "text": repr(new)}
            elif isinstance(control, ipywidgets.ToggleButtons):
                index = (control.index + 1) % len(control.options)
                option = control.options[index]
                label, new = option if isinstance(option, tuple) else (str(option), option)
                action = {"kind": "toggle", "control": name, "label": label}
            else:
                continue
            if new == values[name]:
                continue
            values[name] = new
            steps.append({"action": action, "values": repr(values), "sha256": digest(values)})
        views[explorer.model_id] = steps
    print(json.dumps(views))


_pcmodel_e2e_probe()
"""

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def plan(notebook_path: Path, *, timeout: int = 300) -> list[dict[str, Any]]:
    """Run the notebook in a fresh kernel; return a plan per Explorer view it displays.

    Each plan: `cell` and `view` (the view is the cell's `view`-th widget output, counting
    from 0), `steps` (the first with the image
    after "Run All", then one per control change: its `action`, the draw function's `values`
    and the image's `sha256`).
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(notebook_path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(notebook_path.parent)}},
    )
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        probe = nbformat.v4.new_code_cell(PROBE)  # type: ignore[no-untyped-call]
        notebook.cells.append(probe)
        client.execute_cell(probe, len(notebook.cells) - 1)
    printed = "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream")
    views: dict[str, list[dict[str, Any]]] = json.loads(printed.strip().splitlines()[-1])
    plans = []
    for index, cell in enumerate(notebook.cells[:-1]):
        shown = [
            o["data"][WIDGET_VIEW].get("model_id")
            for o in cell.get("outputs", [])
            if WIDGET_VIEW in o.get("data", {})
        ]
        for position, model_id in enumerate(shown):
            if model_id in views:
                plans.append({"cell": index, "view": position, "steps": views[model_id]})
    return plans


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.e2e.oracle NOTEBOOK", file=sys.stderr)
        return 2
    print(json.dumps(plan(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
