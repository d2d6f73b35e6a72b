"""Notebook views: sliders that re-run a job in virtual time, and live progress for real runs.

Every view here is a thin layer over a plain function that returns a matplotlib `Figure`:
the function does the work and is tested on its own; the view only turns control values
into arguments and the figure into PNG bytes for an `ipywidgets.Image`.

Three rules keep the views safe in Jupyter and under `pytest --nbval`:

- a redraw replaces `Image.value`; nothing prints into the cell or into an `Output` widget
  with `with out:` (that output would leak under nbval and misbehave from threads);
- control callbacks are plain functions (`interact` does not await a coroutine function);
- a view's text form (its repr, which is what nbval compares and what GitHub shows) holds
  only its control values, never the changing image bytes.

ipywidgets and matplotlib are imported by this module only.
"""

from __future__ import annotations

import asyncio
import html
import io
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as _ipywidgets

from pcmodel.records import JobSummary, TaskResult
from pcmodel.stopping import StopSignal
from pcmodel.timeline import plot_timeline

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Explorer", "LiveProgress", "explore", "figure_png", "summary_so_far"]

# ipywidgets ships no type hints: use it as a dynamic module rather than half-typed.
ipywidgets: Any = _ipywidgets

_DPI = 80


def figure_png(figure: Figure, *, dpi: int = _DPI) -> bytes:
    """Render `figure` to PNG bytes, for an `ipywidgets.Image` or a file."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _control(name: str, spec: Any) -> Any:
    """A widget for `spec`: a widget as is, (min, max, value) as a slider, a list as buttons."""
    if isinstance(spec, ipywidgets.ValueWidget):
        return spec
    if isinstance(spec, tuple) and len(spec) == 3:
        low, high, value = spec
        if all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            return ipywidgets.IntSlider(
                value=value, min=low, max=high, description=name, continuous_update=False
            )
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec):
            return ipywidgets.FloatSlider(
                value=value,
                min=low,
                max=high,
                step=(high - low) / 100,
                description=name,
                continuous_update=False,
            )
    if isinstance(spec, list) and spec:
        return ipywidgets.ToggleButtons(options=spec, value=spec[0], description=name)
    raise TypeError(
        f"control {name} must be a widget, a (min, max, value) tuple of numbers or a non-empty "
        f"list of options, got {spec!r}"
    )


class Explorer(ipywidgets.VBox):  # type: ignore[misc]
    """Controls above an image: each change calls `draw(**values)` and shows the figure.

    Build one with `explore`. The draw function runs synchronously in the kernel when a
    control changes, so it should be quick: a virtual-time job and a plot take a fraction of a
    second. If it raises, the error is shown under the controls instead of the image.
    """

    def __init__(self, draw: Callable[..., Figure], controls: dict[str, Any], *, dpi: int = _DPI) -> None:
        self.draw = draw
        self.controls = controls
        self.dpi = dpi
        self.image = ipywidgets.Image(format="png")
        self.status = ipywidgets.HTML()
        super().__init__(children=[*controls.values(), self.status, self.image])
        for control in controls.values():
            control.observe(self._changed, names="value")
        self.redraw()

    @property
    def values(self) -> dict[str, Any]:
        """The controls' current values, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> None:
        """Call the draw function with the current values and show its figure."""
        try:
            figure = self.draw(**self.values)
            png = figure_png(figure, dpi=self.dpi)
        except Exception as error:  # noqa: BLE001 - shown to the learner, the view stays alive
            self.status.value = f"<pre>{html.escape(f'{type(error).__name__}: {error}')}</pre>"
            return
        self.status.value = ""
        self.image.value = png

    def _changed(self, _change: dict[str, Any]) -> None:
        self.redraw()

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in self.values.items())
        return f"Explorer({values})"


def explore(draw: Callable[..., Figure], *, dpi: int = _DPI, **controls: Any) -> Explorer:
    """Show `draw(**values)` and redraw it whenever a control changes: `interact`, made safe.

    Example:
        >>> def draw(workers):
        ...     summary = pcmodel.run_job(job.function, job.params, workers=workers, clock="virtual")
        ...     return pcmodel.plot_timeline(summary)
        >>> explore(draw, workers=(1, 10, 5))  # doctest: +SKIP

    Args:
        draw: a plain function returning a matplotlib `Figure`; called with one keyword
            argument per control. Make it a function of the controls only, and fast.
        dpi: resolution of the rendered image.
        **controls: one control per argument of `draw`: an ipywidgets value widget, a
            `(min, max, value)` tuple (an int or a float slider, updated on release), or a list
            of options (toggle buttons, the first one selected).

    Returns:
        The `Explorer` widget (display it, or leave it as a cell's last expression).

    Raises:
        TypeError: `draw` is not callable, or a control is not one of the forms above.
    """
    if not callable(draw):
        raise TypeError(f"draw must be a function returning a Figure, got {draw!r}")
    if not controls:
        raise TypeError("explore() needs at least one control, such as workers=(1, 10, 5)")
    return Explorer(draw, {name: _control(name, spec) for name, spec in controls.items()}, dpi=dpi)


def summary_so_far(results: Sequence[TaskResult], *, workers: int, clock: str = "real") -> JobSummary:
    """A `JobSummary` of the results that have come in so far, to draw a job while it runs.

    Its `elapsed` is the latest finish among `results`; its queue depth counts only the tasks
    that have finished.
    """
    ordered = tuple(sorted(results, key=lambda r: r.task_id))
    failed = sum(1 for r in ordered if not r.ok)
    cancelled = sum(1 for r in ordered if isinstance(r.error, asyncio.CancelledError))
    return JobSummary(
        tasks=len(ordered),
        succeeded=len(ordered) - failed,
        failed=failed,
        elapsed=max((r.finished_at for r in ordered), default=0.0),
        busy_time=sum(r.duration for r in ordered),
        workers=workers,
        max_queue_depth=0,
        producer_wait=0.0,
        callback_errors=0,
        clock=clock,
        results=ordered,
        producer_blocked=(),
        retries=sum(r.attempts - 1 for r in ordered),
        cancelled=cancelled,
    )


class LiveProgress(ipywidgets.VBox):  # type: ignore[misc]
    """A progress bar, a status line and a timeline that grows as a real-time job runs.

    Pass the object itself as `on_task_complete` and its `finish` as `on_job_complete`:

        progress = LiveProgress(total=len(job), workers=5)
        display(progress)
        summary = pcmodel.run_job(job.function, job.params, workers=5,
                                  on_task_complete=progress, on_job_complete=progress.finish)

    The callbacks may run on the kernel's loop (`await run_job_async(...)`) or in the job's
    own thread (`run_job(...)` in a notebook); either way they only set widget values and
    return at once. The timeline is redrawn in a background thread, at most every
    `redraw_every` seconds of real time, and once more at the end.

    For a job started in the background with `task = start_job(...)`, `attach(task)` shows a
    Cancel button that cancels it (a hard stop), and `attach(task, stop=signal)`, for a job
    started with `stop=signal`, a Stop button too, which sets the `StopSignal` (a graceful stop:
    the calls in flight finish).
    """

    def __init__(self, total: int, *, workers: int, redraw_every: float = 0.5, dpi: int = _DPI) -> None:
        self.total = total
        self.workers = workers
        self.redraw_every = redraw_every
        self.dpi = dpi
        self.results: list[TaskResult] = []
        self.summary: JobSummary | None = None
        self._lock = threading.Lock()
        self._last_draw = float("-inf")
        self._failed = 0
        self._retries = 0
        self._drawing = False
        self._drawer: threading.Thread | None = None
        self.bar = ipywidgets.IntProgress(value=0, min=0, max=max(total, 1), description="tasks")
        self.label = ipywidgets.Label(value=f"0 of {total} done")
        self.cancel_button = ipywidgets.Button(
            description="Cancel", disabled=True, layout=ipywidgets.Layout(display="none")
        )
        self.cancel_button.on_click(self._cancel_clicked)
        self.stop_button = ipywidgets.Button(
            description="Stop", disabled=True, layout=ipywidgets.Layout(display="none")
        )
        self.stop_button.on_click(self._stop_clicked)
        self.image = ipywidgets.Image(format="png")
        self._task: asyncio.Task[Any] | None = None
        self._stop: StopSignal | None = None
        super().__init__(
            children=[
                ipywidgets.HBox([self.bar, self.label, self.stop_button, self.cancel_button]),
                self.image,
            ]
        )

    def attach(self, task: asyncio.Task[Any], *, stop: StopSignal | None = None) -> None:
        """Show a Cancel button that cancels `task`, the job started with `start_job`.

        With `stop`, the `StopSignal` the job was started with, show a Stop button too: it
        sets the signal, so the job stops gracefully.
        """
        self._task = task
        self.cancel_button.layout.display = None
        self.cancel_button.disabled = task.done()
        if stop is not None:
            self._stop = stop
            self.stop_button.layout.display = None
            self.stop_button.disabled = task.done() or stop.is_set()
        task.add_done_callback(self._job_done)

    def _cancel_clicked(self, _button: Any) -> None:
        if self._task is not None:
            self._task.cancel()

    def _stop_clicked(self, _button: Any) -> None:
        if self._stop is not None:
            self._stop.set()
            self.stop_button.disabled = True
            self.label.value = f"stopping: the calls in flight finish; {self.label.value}"

    def _job_done(self, task: asyncio.Task[Any]) -> None:
        self.cancel_button.disabled = True
        self.stop_button.disabled = True
        if task.cancelled():
            self.label.value = f"cancelled after {len(self.results)} of {self.total} tasks"

    def __call__(self, result: TaskResult) -> None:
        """`on_task_complete`: count the result, update the bar, redraw now and then."""
        with self._lock:
            self.results.append(result)
            self._failed += not result.ok
            self._retries += result.attempts - 1
            done, failed, retries = len(self.results), self._failed, self._retries
            draw = not self._drawing and time.monotonic() - self._last_draw >= self.redraw_every
            if draw:
                self._drawing = True
                self._last_draw = time.monotonic()
                snapshot = list(self.results)
        self.bar.value = done
        retried = f", {retries} retries" if retries else ""
        self.label.value = (
            f"{done} of {self.total} done, {failed} failed{retried}; last: task {result.task_id} "
            f"in {result.duration:.2f} s at {result.finished_at:.2f} s"
        )
        if draw:
            # Drawing takes a tenth of a second or more: done on the loop, it would freeze
            # the job's calls (the blocking-callback trap), so it runs in a thread.
            self._drawer = threading.Thread(
                target=self._draw, args=(snapshot,), name="live-progress-draw", daemon=True
            )
            self._drawer.start()

    def _draw(self, snapshot: list[TaskResult]) -> None:
        try:
            png = figure_png(plot_timeline(summary_so_far(snapshot, workers=self.workers)), dpi=self.dpi)
        finally:
            with self._lock:
                self._drawing = False
        with self._lock:
            if self.summary is None:  # the final timeline is never replaced by a partial one
                self.image.value = png

    def wait_drawn(self, timeout: float | None = None) -> None:
        """Wait until the timeline being drawn in the background, if any, is shown."""
        drawer = self._drawer
        if drawer is not None:
            drawer.join(timeout)

    def finish(self, summary: JobSummary) -> None:
        """`on_job_complete`: show the job's figures and its full timeline."""
        with self._lock:
            self.summary = summary
        self.bar.value = self.bar.max
        self.label.value = f"done: {summary}"
        if summary.results is not None:
            self.image.value = figure_png(plot_timeline(summary), dpi=self.dpi)

    def __repr__(self) -> str:
        return f"LiveProgress(total={self.total}, workers={self.workers})"
