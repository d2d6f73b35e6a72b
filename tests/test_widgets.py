"""Notebook views: thin layers that re-run plain functions and show their figures."""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path
from typing import Any

import ipywidgets as _ipywidgets
import nbformat as _nbformat
import pytest
from matplotlib.figure import Figure

import pcmodel
from pcmodel import widgets, workloads
from pcmodel.records import TaskResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ipywidgets: Any = _ipywidgets  # no type hints: a dynamic module
nbformat: Any = _nbformat
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _timeline(workers: int) -> Figure:
    job = workloads.seed_job()
    return pcmodel.plot_timeline(pcmodel.run_job(job.function, job.params, workers=workers, clock="virtual"))


def test_figure_png_renders_png_bytes() -> None:
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    assert widgets.figure_png(fig).startswith(PNG_SIGNATURE)


def test_explore_draws_once_and_redraws_on_every_change() -> None:
    calls: list[int] = []

    def draw(workers: int = 5) -> Figure:
        calls.append(workers)
        return _timeline(workers)

    view = widgets.explore(draw, workers=(1, 10, 1))
    assert calls == [5]
    first = bytes(view.image.value)
    assert first.startswith(PNG_SIGNATURE)
    slider = view.controls["workers"]
    assert isinstance(slider, ipywidgets.IntSlider)
    assert (slider.min, slider.max, slider.step, slider.value, slider.continuous_update) == (
        1,
        10,
        1,
        5,
        False,
    )
    slider.value = 2
    assert calls == [5, 2]
    assert bytes(view.image.value) != first
    assert view.values == {"workers": 2}


def test_explore_reads_a_tuple_as_interact_does_min_max_step_from_the_draw_default() -> None:
    def draw(queue_size: int = 16, seconds: float = 0.25) -> Figure:
        return Figure(figsize=(1, 1))

    view = widgets.explore(draw, queue_size=(0, 32, 8), seconds=(0.0, 1.0, 0.05))
    size, seconds = view.controls["queue_size"], view.controls["seconds"]
    assert (size.min, size.max, size.step, size.value) == (0, 32, 8, 16)
    assert isinstance(seconds, ipywidgets.FloatSlider)
    assert (seconds.min, seconds.max, seconds.step, seconds.value) == (0.0, 1.0, 0.05, 0.25)


def test_explore_starts_halfway_without_a_default_as_interact_does() -> None:
    def draw(workers: int, seconds: float) -> Figure:
        return Figure(figsize=(1, 1))

    view = widgets.explore(draw, workers=(1, 10), seconds=(0.0, 2.0))
    assert view.values == {"workers": 5, "seconds": 1.0}
    assert view.controls["workers"].step == 1
    assert view.controls["seconds"].step == pytest.approx(0.02)


def test_explore_still_reads_the_old_min_max_value_form_with_a_pending_deprecation() -> None:
    def draw(workers: int) -> Figure:  # no default: the old reading, for now
        return Figure(figsize=(1, 1))

    with pytest.warns(
        PendingDeprecationWarning, match=r"read workers=\(1, 10, 4\) as \(min, max, value\)"
    ) as seen:
        view = widgets.explore(draw, workers=(1, 10, 4))
    assert seen[0].filename == __file__  # pointed at the caller's line, not at pcmodel
    slider = view.controls["workers"]
    assert (slider.min, slider.max, slider.step, slider.value) == (1, 10, 1, 4)


def test_explore_toggle_buttons_start_at_the_draw_default() -> None:
    def draw(traffic: str = "steady") -> Figure:
        return Figure(figsize=(1, 1))

    view = widgets.explore(draw, traffic=["bursty", "steady"])
    assert view.values == {"traffic": "steady"}


@pytest.mark.parametrize(
    ("default", "spec", "message"),
    [
        (12, (1, 10, 1), r"default 12 must be a number from 1 to 10"),
        (4, (0, 32, 8), r"default 4 is not on the slider's steps"),
        (5, (10, 1, 1), r"min must be < max, got \(10, 1, 1\)"),
        (5, (1, 10, 0), r"step must be > 0, got \(1, 10, 0\)"),
        ("many", (1, 10, 1), r"default 'many' must be a number"),
    ],
)
def test_explore_rejects_a_default_its_slider_cannot_show(
    default: object, spec: tuple[int, ...], message: str
) -> None:
    def draw(workers: object = default) -> Figure:
        return Figure(figsize=(1, 1))

    with pytest.raises(ValueError, match=f"control workers: .*{message}"):
        widgets.explore(draw, workers=spec)


def test_explore_rejects_a_default_that_is_not_an_option() -> None:
    def draw(traffic: str = "calm") -> Figure:
        return Figure(figsize=(1, 1))

    with pytest.raises(ValueError, match=r"default 'calm' is not one of the options \['bursty', 'steady'\]"):
        widgets.explore(draw, traffic=["bursty", "steady"])


def test_explore_repr_shows_the_values_not_the_image() -> None:
    def draw(workers: int = 4, clock: str = "virtual") -> Figure:
        return _timeline(workers)

    view = widgets.explore(draw, workers=(1, 10, 1), clock=["virtual", "real"])
    assert repr(view) == "Explorer(workers=4, clock='virtual')"
    view.controls["clock"].value = "real"
    assert repr(view) == "Explorer(workers=4, clock='real')"


def test_explore_displays_its_first_figure_as_a_static_image_beside_the_widget() -> None:
    def draw(workers: int = 5) -> Figure:
        return _timeline(workers)

    view = widgets.explore(draw, workers=(1, 10, 1))
    first = bytes(view.image.value)
    view.controls["workers"].value = 2
    bundle = view._repr_mimebundle_()
    assert bundle is not None
    assert bundle["text/plain"] == "Explorer(workers=2)"
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == view.model_id
    # The static image is the first frame, the one the saved notebook's text describes.
    assert base64.b64decode(bundle["image/png"]) == first != bytes(view.image.value)


def test_explore_accepts_widgets_and_float_ranges() -> None:
    seen: list[tuple[int, float]] = []

    def draw(workers: int, seconds: float = 0.25) -> Figure:
        seen.append((workers, seconds))
        return Figure(figsize=(1, 1))

    slider = ipywidgets.IntSlider(value=3, min=1, max=5)
    view = widgets.explore(draw, workers=slider, seconds=(0.0, 1.0, 0.25))
    assert view.controls["workers"] is slider
    assert isinstance(view.controls["seconds"], ipywidgets.FloatSlider)
    assert seen == [(3, 0.25)]


def test_explore_shows_an_error_instead_of_raising() -> None:
    def draw(workers: int = 1) -> Figure:
        if workers == 0:
            raise ValueError("workers must be >= 1, got 0")
        return Figure(figsize=(1, 1))

    view = widgets.explore(draw, workers=(0, 3, 1))
    image = view.image.value
    view.controls["workers"].value = 0
    assert view.status.value == "<pre>ValueError: workers must be &gt;= 1, got 0</pre>"
    assert view.image.value == image  # the last good figure stays
    view.controls["workers"].value = 2
    assert view.status.value == ""


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({}, "at least one control"),
        ({"workers": "many"}, "control workers must be"),
        ({"workers": (1, 2, 3, 4)}, r"a \(min, max\) or \(min, max, step\) tuple"),
        ({"workers": (1, "10")}, "control workers must be"),
        ({"workers": []}, "non-empty list"),
    ],
)
def test_explore_rejects_bad_controls(controls: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        widgets.explore(lambda **_: Figure(), **controls)  # type: ignore[arg-type]


def test_explore_rejects_a_draw_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match="draw must be a function"):
        widgets.explore(42, workers=(1, 2, 1))  # type: ignore[arg-type]


def _explorer_outputs() -> list[tuple[str, int, Any]]:
    """(notebook, cell, output) for every saved output of an `Explorer` in notebooks/."""
    found = []
    for path in sorted(NOTEBOOKS.rglob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for index, cell in enumerate(notebook.cells):
            for output in cell.get("outputs", []):
                if output.get("data", {}).get("text/plain", "").startswith("Explorer("):
                    found.append((str(path.relative_to(NOTEBOOKS)), index, output))
    return found


def test_every_saved_explorer_carries_a_static_first_figure() -> None:
    """Without a kernel (GitHub, nbviewer) the image stands where JupyterLab shows the slider."""
    outputs = _explorer_outputs()
    assert len({name for name, _, _ in outputs}) >= 7, "the course's notebooks have slider views"
    missing = [
        f"{name} cell {index}"
        for name, index, output in outputs
        if not base64.b64decode(output.data.get("image/png", "")).startswith(PNG_SIGNATURE)
        or WIDGET_VIEW not in output.data
    ]
    assert missing == [], "re-run these cells: their saved view has no static figure"


def test_summary_so_far_counts_what_came_in() -> None:
    results = [
        TaskResult(2, None, 4, None, 1, 0.0, 1.0, 3.0),
        TaskResult(0, None, None, ValueError("x"), 0, 0.0, 0.0, 1.5),
    ]
    summary = widgets.summary_so_far(results, workers=2)
    assert (summary.tasks, summary.succeeded, summary.failed) == (2, 1, 1)
    assert summary.elapsed == 3.0
    assert summary.busy_time == 3.5
    assert [r.task_id for r in summary.results or ()] == [0, 2]
    assert isinstance(pcmodel.plot_timeline(summary), Figure)


def test_live_progress_follows_a_job_and_ends_with_its_timeline() -> None:
    job = workloads.seed_job()
    progress = widgets.LiveProgress(total=len(job), workers=5, redraw_every=0.0)
    assert repr(progress) == "LiveProgress(total=10, workers=5)"
    summary = pcmodel.run_job(
        job.function,
        job.params,
        workers=5,
        clock="virtual",
        on_task_complete=progress,
        on_job_complete=progress.finish,
    )
    assert summary.callback_errors == 0
    assert progress.bar.value == 10
    assert len(progress.results) == 10
    assert progress.summary is summary
    assert progress.label.value == f"done: {summary}"
    assert bytes(progress.image.value).startswith(PNG_SIGNATURE)


def test_live_progress_redraws_at_most_every_interval() -> None:
    job = workloads.seed_job()
    progress = widgets.LiveProgress(total=len(job), workers=5, redraw_every=3600.0)
    drawn: list[bytes] = []
    progress.image.observe(lambda change: drawn.append(bytes(change["new"])), names="value")
    pcmodel.run_job(job.function, job.params, workers=5, clock="virtual", on_task_complete=progress)
    progress.wait_drawn()
    assert len(drawn) == 1  # the first result only; the next redraw is an hour away
    assert progress.bar.value == 10
    assert progress.label.value.startswith("10 of 10 done, 0 failed")


def test_live_progress_cancel_button_cancels_the_attached_job() -> None:
    async def main() -> bool:
        job = workloads.seed_job()
        progress = widgets.LiveProgress(total=len(job), workers=5)
        assert progress.cancel_button.disabled
        task = pcmodel.start_job(job.function, job.params, workers=5, on_task_complete=progress)
        progress.attach(task)
        assert not progress.cancel_button.disabled
        await asyncio.sleep(0.05)
        progress.cancel_button.click()
        await asyncio.wait([task])
        await asyncio.sleep(0)
        assert progress.cancel_button.disabled
        assert progress.label.value.startswith("cancelled after ")
        return task.cancelled()

    assert asyncio.run(main())
    assert [t for t in threading.enumerate() if t.name.startswith("pcmodel")] == []


def test_live_progress_draws_in_a_thread_and_never_replaces_the_final_timeline() -> None:
    job = workloads.seed_job(3)
    summary = pcmodel.run_job(job.function, job.params, workers=3, clock="virtual")
    results = summary.results or ()
    progress = widgets.LiveProgress(total=3, workers=3, redraw_every=0.0)
    threads: list[str] = []
    progress.image.observe(lambda change: threads.append(threading.current_thread().name), names="value")
    progress(results[0])  # returns before the timeline is drawn
    progress.wait_drawn()
    assert threads == ["live-progress-draw"]
    progress(results[1])  # starts a second drawing...
    progress.finish(summary)  # ...which the final timeline must win over
    final = bytes(progress.image.value)
    progress.wait_drawn()
    assert bytes(progress.image.value) == final
    assert threads[-1] == "MainThread"


def test_summary_so_far_counts_retries_and_cancelled_calls() -> None:
    results = [
        TaskResult(0, None, 4, None, 0, 0.0, 0.0, 1.0, 3),
        TaskResult(1, None, None, asyncio.CancelledError(), 1, 0.0, 0.0, 0.5, 2),
    ]
    summary = widgets.summary_so_far(results, workers=2)
    assert (summary.retries, summary.cancelled, summary.failed) == (3, 1, 1)


def test_live_progress_counts_retries_in_its_status_line() -> None:
    api = workloads.SimulatedCarAPI(latency=(0.1, 0.2), error_rate=0.4, seed=3)
    progress = widgets.LiveProgress(total=12, workers=4, redraw_every=3600.0)
    summary = pcmodel.run_job(
        api,
        range(12),
        workers=4,
        retries=pcmodel.Retry(6, seed=1),
        clock="virtual",
        on_task_complete=progress,
    )
    progress.wait_drawn()
    assert summary.retries > 0
    assert progress.label.value.startswith(f"12 of 12 done, 0 failed, {summary.retries} retries; last: task ")


def test_live_progress_stop_button_stops_the_attached_job_gracefully() -> None:
    async def main() -> pcmodel.JobSummary:
        job = workloads.uniform(20, low=0.05, high=0.05)
        stop = pcmodel.StopSignal()
        progress = widgets.LiveProgress(total=len(job), workers=2)
        assert progress.stop_button.layout.display == "none"
        task = pcmodel.start_job(job.function, job.params, workers=2, stop=stop, on_task_complete=progress)
        progress.attach(task, stop=stop)
        assert progress.stop_button.layout.display is None
        assert not progress.stop_button.disabled
        await asyncio.sleep(0.12)
        progress.stop_button.click()
        assert stop.is_set()
        assert progress.stop_button.disabled
        assert progress.label.value.startswith("stopping: the calls in flight finish")
        summary = await task
        await asyncio.sleep(0)
        assert progress.cancel_button.disabled
        return summary

    with asyncio.Runner(loop_factory=pcmodel.VirtualTimeLoop) as runner:
        summary = runner.run(main())
    assert summary.stop_reason == "stop"
    # At 0.12 s two calls per worker were done and one each in flight: those finish.
    assert (summary.tasks, summary.cancelled, summary.unprocessed) == (6, 0, 14)
    assert summary.elapsed == pytest.approx(0.15)


def test_attach_without_a_stop_signal_shows_no_stop_button() -> None:
    async def main() -> None:
        job = workloads.seed_job(2)
        progress = widgets.LiveProgress(total=2, workers=2)
        task = pcmodel.start_job(job.function, job.params, workers=2, clock="virtual")
        progress.attach(task)
        assert progress.stop_button.layout.display == "none"
        progress.stop_button.click()  # hidden, and does nothing
        await task

    asyncio.run(main())
