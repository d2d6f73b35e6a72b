"""Notebook views: sliders that re-run a job in virtual time, and live progress for real runs.

Every view here is a thin layer over a plain function that returns a matplotlib `Figure`:
the function does the work and is tested on its own; the view only turns control values
into arguments and the figure into PNG bytes for an `ipywidgets.Image`.

Three rules keep the views safe in Jupyter and under `pytest --nbval`:

- a redraw replaces `Image.value`; nothing prints into the cell or into an `Output` widget
  with `with out:` (that output would leak under nbval and misbehave from threads);
- control callbacks are plain functions (`interact` does not await a coroutine function);
- a view's text form (its repr, which is what nbval compares) holds only its control values,
  never the changing image bytes.

A displayed `Explorer` also carries its first figure as a static `image/png` beside the
widget view, so a saved notebook shows a figure where a page without a kernel (GitHub,
nbviewer) cannot show the slider. `explore` reads its controls as ipywidgets' `interact`
does: `(min, max, step)`, starting at the draw function's default.

ipywidgets is imported by this module only, and matplotlib by the plots it shows. At about
430 lines the module is a little over the package's 400: its two views, the explorer and the
live progress, share the rendering to PNG and the rules above, and read best side by side.
"""

from __future__ import annotations

import asyncio
import base64
import html
import inspect
import io
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as _ipywidgets

from pcmodel._summary import Tally, build_summary
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


_NO_DEFAULT = inspect.Parameter.empty


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _control(name: str, spec: Any, default: Any = _NO_DEFAULT) -> Any:
    """A widget for `spec`, read as ipywidgets' `interact` reads it.

    A widget is used as is; `(min, max)` or `(min, max, step)` becomes a slider (an int one
    if every number is an int), starting at `default` (the draw function's default for this
    argument) or, without one, halfway; a list becomes toggle buttons, starting at `default`
    or the first option.
    """
    if isinstance(spec, ipywidgets.ValueWidget):
        return spec
    if isinstance(spec, tuple) and len(spec) in (2, 3) and all(_number(v) for v in spec):
        if len(spec) == 3 and default is _NO_DEFAULT:
            return _legacy_slider(name, spec)
        return _slider(name, spec, default)
    if isinstance(spec, list) and spec:
        if default is not _NO_DEFAULT and default not in spec:
            raise ValueError(
                f"control {name}: the draw function's default {default!r} is not one of the options "
                f"{spec!r}; make it one of them, or drop the default to start at the first"
            )
        value = spec[0] if default is _NO_DEFAULT else default
        return ipywidgets.ToggleButtons(options=spec, value=value, description=name)
    raise TypeError(
        f"control {name} must be a widget, a (min, max) or (min, max, step) tuple of numbers, or a "
        f"non-empty list of options, got {spec!r}"
    )


def _slider(name: str, spec: tuple[Any, ...], default: Any) -> Any:
    """`(min, max[, step])` as `interact` reads it, starting at `default` or halfway."""
    low, high = spec[0], spec[1]
    integer = all(isinstance(v, int) for v in spec)
    step = spec[2] if len(spec) == 3 else (1 if integer else (high - low) / 100)
    if not low < high:
        raise ValueError(f"control {name}: min must be < max, got {spec!r}")
    if not step > 0:
        raise ValueError(f"control {name}: step must be > 0, got {spec!r}")
    if default is _NO_DEFAULT:
        steps = int((high - low) / step) // 2
        value = low + steps * step
    else:
        value = default
        if not _number(value) or not low <= value <= high:
            raise ValueError(
                f"control {name}: the draw function's default {value!r} must be a number from "
                f"{low} to {high}, the slider's range {spec!r}"
            )
        if integer and (value - low) % step:
            raise ValueError(
                f"control {name}: the draw function's default {value!r} is not on the slider's "
                f"steps (min {low} plus a multiple of step {step}), so the slider could not show it"
            )
    kind = ipywidgets.IntSlider if integer else ipywidgets.FloatSlider
    return kind(value=value, min=low, max=high, step=step, description=name, continuous_update=False)


def _legacy_slider(name: str, spec: tuple[Any, ...]) -> Any:
    """The old `(min, max, value)` reading, kept for a transition: see `explore`."""
    warnings.warn(
        f"explore() read {name}={spec!r} as (min, max, value) because the draw function gives "
        f"{name} no default. ipywidgets' interact reads a 3-tuple as (min, max, step), and so will "
        f"explore: give the draw function the initial value as a default "
        f"(def draw({name}={spec[2]!r}, ...)) and pass (min, max, step), or pass a slider widget",
        PendingDeprecationWarning,
        stacklevel=4,
    )
    low, high, value = spec
    if all(isinstance(v, int) for v in spec):
        return ipywidgets.IntSlider(value=value, min=low, max=high, description=name, continuous_update=False)
    return ipywidgets.FloatSlider(
        value=value,
        min=low,
        max=high,
        step=(high - low) / 100,
        description=name,
        continuous_update=False,
    )


class Explorer(ipywidgets.VBox):  # type: ignore[misc]
    """Controls above an image: each change calls `draw(**values)` and shows the figure.

    Build one with `explore`. The draw function runs synchronously in the kernel when a
    control changes, so it should be quick: a virtual-time job and a plot take a fraction of a
    second. If it raises, the error is shown under the controls instead of the image.

    Displayed, the view also carries its first figure as a static `image/png` beside the
    widget: JupyterLab, with a kernel, shows the live widget; GitHub, nbviewer and any page
    without the widget's state show that image instead, so a saved notebook never has a hole
    where a slider was.
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
        # The figure for the first values: what a page without a kernel shows in the view's place.
        self.first_frame = bytes(self.image.value)

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

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        """The widget view, plus the first figure as a static image for pages without a kernel.

        A front end picks the richest type it can render: JupyterLab the widget, nbviewer and
        GitHub (which have no widget state in a saved notebook) the image.
        """
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)
        if bundle is not None and self.first_frame:
            bundle["image/png"] = base64.b64encode(self.first_frame).decode("ascii")
        return bundle

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in self.values.items())
        return f"Explorer({values})"


def _defaults(draw: Callable[..., Any]) -> dict[str, Any]:
    """The draw function's default argument values, by name (none if it has no signature)."""
    try:
        parameters = inspect.signature(draw).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def explore(draw: Callable[..., Figure], *, dpi: int = _DPI, **controls: Any) -> Explorer:
    """Show `draw(**values)` and redraw it whenever a control changes: `interact`, made safe.

    The controls follow ipywidgets' `interact`: `(min, max, step)` makes a slider, and the
    slider starts at the draw function's default for that argument (halfway without one).

    Example:
        >>> def draw(workers=5):  # the default is where the slider starts
        ...     summary = pcmodel.run_job(job.function, job.params, workers=workers, clock="virtual")
        ...     return pcmodel.plot_timeline(summary)
        >>> explore(draw, workers=(1, 10, 1))  # doctest: +SKIP

    Unlike `interact`, the view redraws a figure (it never prints into the cell, which is
    unsafe under nbval and from threads), sliders update on release, and the saved notebook
    carries the first figure as a static image for GitHub and nbviewer.

    Args:
        draw: a plain function returning a matplotlib `Figure`; called with one keyword
            argument per control. Make it a function of the controls only, and fast. Its
            default argument values set the controls' initial values.
        dpi: resolution of the rendered image.
        **controls: one control per argument of `draw`, in `interact`'s forms:
            - `(min, max, step)` or `(min, max)`: a slider (an int slider if all are ints,
              else a float one; step 1, or a hundredth of the range, when left out), starting
              at `draw`'s default for the argument, or halfway without one;
            - a non-empty list: toggle buttons, starting at `draw`'s default or the first option;
            - any ipywidgets value widget, used as is (set its `value` yourself).

            Deprecated: a 3-tuple for an argument `draw` gives no default is still read the
            old way, as `(min, max, value)`, with a `PendingDeprecationWarning`; this reading
            will go, and the tuple will then mean `(min, max, step)` there too.

    Returns:
        The `Explorer` widget (display it, or leave it as a cell's last expression).

    Raises:
        TypeError: `draw` is not callable, or a control is not one of the forms above.
        ValueError: a slider's range is empty or its step not positive, or `draw`'s default
            lies outside its control's range or between its steps.
    """
    if not callable(draw):
        raise TypeError(f"draw must be a function returning a Figure, got {draw!r}")
    if not controls:
        raise TypeError("explore() needs at least one control, such as workers=(1, 10, 1)")
    defaults = _defaults(draw)
    built = {}
    for name, spec in controls.items():  # a loop, not a comprehension: the warning's stacklevel
        built[name] = _control(name, spec, defaults.get(name, _NO_DEFAULT))
    return Explorer(draw, built, dpi=dpi)


def summary_so_far(results: Sequence[TaskResult], *, workers: int, clock: str = "real") -> JobSummary:
    """A `JobSummary` of the results that have come in so far, to draw a job while it runs.

    Its `elapsed` is the latest finish among `results`; its queue depth counts only the tasks
    that have finished. It is built by the controller's own builder (`pcmodel._summary`), from
    the results themselves: a CancelledError among them counts as cancelled, since results alone
    cannot say whether a stop or the function raised it.
    """
    return build_summary(
        Tally.of_results(results),
        elapsed=max((r.finished_at for r in results), default=0.0),
        workers=workers,
        clock=clock,
        results=results,
        trace=True,
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
        self._task: asyncio.Future[Any] | None = None
        self._stop: StopSignal | None = None
        super().__init__(
            children=[
                ipywidgets.HBox([self.bar, self.label, self.stop_button, self.cancel_button]),
                self.image,
            ]
        )

    def attach(self, task: asyncio.Future[Any], *, stop: StopSignal | None = None) -> None:
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

    def _job_done(self, task: asyncio.Future[Any]) -> None:
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
