"""Timelines draw what a job did: one job's lanes and queue, and several jobs compared on one time axis."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Annotation

import pcmodel
from pcmodel import sweeps, timeline, workloads
from pcmodel.records import JobSummary, LimitChange


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


def _flaky_job(**kwargs: object) -> tuple[JobSummary, workloads.CallLog]:
    """Twenty calls to a flaky, rate-limited simulated API, with a call log."""

    def latency(rng: random.Random) -> float:
        return 1.2 if rng.random() < 0.1 else rng.uniform(0.02, 0.1)

    api = workloads.SimulatedCarAPI(latency=latency, error_rate=0.3, rate_limit=20, burst=4, seed=5)
    log = workloads.CallLog(api)
    retry = pcmodel.Retry(5, on=(*workloads.RETRYABLE_ERRORS, TimeoutError), seed=1)
    options: dict[str, Any] = {"workers": 6, "timeout": 0.5, "retries": retry, "clock": "virtual", **kwargs}
    return pcmodel.run_job(log, range(20), **options), log


def _outlined(ax: Axes) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]


def _legend(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def test_tasks_that_needed_retries_are_outlined_and_labelled_with_their_attempts() -> None:
    summary, _ = _flaky_job()
    results = summary.results or ()
    retried = [r for r in results if r.attempts > 1]
    assert retried
    fig = pcmodel.plot_timeline(summary)
    lanes = fig.axes[0]
    outlines = _outlined(lanes)
    drawn = sorted((p.get_x(), p.get_width()) for p in outlines)
    expected = sorted((r.started_at, r.duration) for r in retried)
    assert [x for pair in drawn for x in pair] == pytest.approx([x for pair in expected for x in pair])
    assert all(p.get_edgecolor()[:3] == to_rgb(timeline.RETRIED_COLOR) for p in outlines)
    labels = {t.get_text() for t in lanes.texts}
    assert {f"{r.task_id} \N{MULTIPLICATION SIGN}{r.attempts}" for r in retried} <= labels
    assert str(next(r.task_id for r in results if r.attempts == 1)) in labels
    assert f"retried ({chr(0xD7)}n: attempts)" in _legend(lanes)
    assert f"{summary.retries} retries" in fig.get_suptitle()


def test_a_job_without_retries_has_no_outlines_and_no_retry_legend() -> None:
    summary = _run()
    lanes = pcmodel.plot_timeline(summary).axes[0]
    assert _outlined(lanes) == []
    assert _legend(lanes)[:2] == ["task ok", "task failed"]
    assert not any("retr" in label for label in _legend(lanes))


def test_cancelled_tasks_are_grey_and_failed_ones_red() -> None:
    summary, _ = _flaky_job(fail_fast=True, retries=0)
    assert summary.stop_reason == "fail_fast"
    assert summary.cancelled > 0
    lanes = pcmodel.plot_timeline(summary).axes[0]
    colors = {
        to_hex(np.asarray(c.get_facecolor(), dtype=float)[0])
        for c in lanes.collections
        if isinstance(c, PolyCollection)
    }
    assert timeline.CANCELLED_COLOR.lower() in colors
    assert timeline.FAILED_COLOR.lower() in colors
    assert "task cancelled (fail_fast)" in _legend(lanes)
    assert "stopped (fail_fast)" in timeline.describe(summary)


def test_calls_are_drawn_inside_their_tasks_windows() -> None:
    summary, log = _flaky_job(max_per_second=None)
    calls = log.calls(summary)
    outcomes = {c.outcome for c in calls}
    assert outcomes == {"ok", "failed", "cut off", "rate-limited"}
    lanes = pcmodel.plot_timeline(summary, calls=calls).axes[0]
    bars = _bars(lanes)
    results = summary.results or ()
    drawn_calls = [c for c in calls if c.outcome != "rate-limited"]
    assert len(bars) == len(results) + len(drawn_calls)
    inner = sorted((c.started_at, c.finished_at - c.started_at, float(c.worker)) for c in drawn_calls)
    for start, width, lane in inner:
        assert any(
            b[0] == pytest.approx(start) and b[1] == pytest.approx(width) and b[2] == lane for b in bars
        )
    markers = [line for line in lanes.get_lines() if line.get_marker() == "v"]
    assert len(markers) == 1
    limited = [c for c in calls if c.outcome == "rate-limited"]
    drawn = sorted(
        zip(
            np.asarray(markers[0].get_ydata(), dtype=float).tolist(),
            np.asarray(markers[0].get_xdata(), dtype=float).tolist(),
            strict=True,
        )
    )
    counts = {
        (round(t.xy[1]), t.xy[0]): int(t.get_text().rstrip("\N{MULTIPLICATION SIGN}"))
        for t in lanes.texts
        if isinstance(t, Annotation) and t.get_text().endswith("\N{MULTIPLICATION SIGN}")
    }
    # Every 429 is counted once: by its own marker or in its cluster's count.
    assert sum(counts.get((round(lane), x), 1) for lane, x in drawn) == len(limited)
    assert {c.started_at for c in limited} >= {x for _, x in drawn}
    legend = _legend(lanes)
    for label in ("task ok (pale: waiting)", "call ok", "call failed", "call cut off (timeout or cancel)"):
        assert label in legend
    assert "429: wait Retry-After (\N{MULTIPLICATION SIGN}n: n at once)" in legend


def test_plot_timelines_draws_the_calls_of_the_jobs_that_have_them() -> None:
    summary, log = _flaky_job()
    fig = timeline.plot_timelines(
        {"with calls": summary, "without": summary}, calls={"with calls": log.calls(summary)}
    )
    with_calls, without = fig.axes
    assert len(_bars(with_calls)) > len(_bars(without)) == len(summary.results or ())


def test_plot_timelines_can_title_each_job_with_its_elapsed_time_and_calls_done_only() -> None:
    save = workloads.slow_callback(0.4)
    job = workloads.car_prices(6, seed=1)
    handled = pcmodel.run_job(job.function, job.params, workers=3, clock="virtual", on_task_complete=save)
    three = _run(3)
    fig = timeline.plot_timelines({"handled": handled, "three": three}, figures=False)
    calls_done = max(r.finished_at for r in handled.results or ())
    assert calls_done < handled.elapsed  # the handler's saves went on after the last call
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        f"handled: elapsed {handled.elapsed:.3f} s · calls done at {calls_done:.3f} s",
        f"three: elapsed {three.elapsed:.3f} s · calls done at {three.elapsed:.3f} s",
    ]


# -- the concurrency limit and the drops ------------------------------------------------------


def _adaptive_job(**kwargs: object) -> JobSummary:
    """An adaptive pool on the car API's twin of capacity 6, with a timeout that cuts slow calls."""

    def latency(rng: random.Random) -> float:
        return 0.6 if rng.random() < 0.05 else rng.uniform(0.05, 0.25)

    api = workloads.SimulatedCarAPI(latency=latency, capacity=6, seed=2)
    retry = pcmodel.Retry(50, on=(*workloads.RETRYABLE_ERRORS, TimeoutError), seed=1)
    options: dict[str, Any] = {
        "workers": pcmodel.Adaptive(max=30),
        "timeout": 0.5,
        "retries": retry,
        "clock": "virtual",
        **kwargs,
    }
    return pcmodel.run_job(api, range(120), **options)


def _marker_points(ax: Axes, marker: str) -> list[tuple[float, float]]:
    """(time, lane) of every marker of this shape on `ax`."""
    return sorted(
        (x, y)
        for line in ax.get_lines()
        if line.get_marker() == marker
        for x, y in zip(
            np.asarray(line.get_xdata(), dtype=float).tolist(),
            np.asarray(line.get_ydata(), dtype=float).tolist(),
            strict=True,
        )
    )


def _counted(ax: Axes, points: list[tuple[float, float]], color: str) -> int:
    """Markers at `points`, each counting 1, or the count printed beside it in `color`."""
    counts = {
        (t.xy[0], round(t.xy[1])): int(t.get_text().rstrip("\N{MULTIPLICATION SIGN}"))
        for t in ax.texts
        if isinstance(t, Annotation) and t.get_color() == color
    }
    return sum(counts.get((x, round(lane)), 1) for x, lane in points)


def test_an_adaptive_jobs_limit_is_a_step_line_over_the_lanes_and_its_drops_are_marked() -> None:
    summary = _adaptive_job()
    changes = summary.limit_changes or ()
    drops = summary.drops or ()
    assert {c.cause for c in changes} >= {"start", "grow", "congestion"}
    assert {d.kind for d in drops} == {"rate_limited", "timeout"}
    fig = pcmodel.plot_timeline(summary)
    lanes, depth, limit_ax = fig.axes
    assert limit_ax.get_shared_x_axes().joined(lanes, limit_ax)
    assert depth.get_ylabel() == "work queue"
    (line,) = limit_ax.get_lines()
    assert line.get_label() == "concurrency limit"
    assert line.get_drawstyle() == "steps-post"
    assert np.asarray(line.get_xdata(), dtype=float).tolist() == [c.time for c in changes] + [summary.elapsed]
    assert np.asarray(line.get_ydata(), dtype=float).tolist() == [c.limit for c in changes] + [
        changes[-1].limit
    ]
    assert limit_ax.get_ylabel() == "concurrency limit"
    # Scaled to the lanes, worker 0 on top: a limit of L sits right below lane L - 1.
    assert limit_ax.get_ylim() == (max(summary.workers, *(c.limit for c in changes)), 0)
    assert lanes.get_ylim() == (summary.workers - 0.5, -0.5)
    # Every drop is counted once, in its worker's lane: by its marker or in its cluster's count.
    for kind, marker, color in (
        ("rate_limited", "v", timeline.RATE_LIMITED_COLOR),
        ("timeout", "X", timeline.FAILED_COLOR),
    ):
        mine = [d for d in drops if d.kind == kind]
        points = _marker_points(lanes, marker)
        assert _counted(lanes, points, color) == len(mine)
        assert {(d.time, float(d.worker)) for d in mine} >= set(points)
    legend = _legend(lanes)
    assert "concurrency limit" in legend
    assert "429: rate limited (\N{MULTIPLICATION SIGN}n: n at once)" in legend
    assert "timed out (\N{MULTIPLICATION SIGN}n: n at once)" in legend


def test_with_the_calls_drawn_the_429s_are_marked_once_and_the_timeouts_still_marked() -> None:
    api = workloads.SimulatedCarAPI(capacity=3, seed=4)
    log = workloads.CallLog(api)
    retry = pcmodel.Retry(50, on=workloads.RETRYABLE_ERRORS, seed=1)
    summary = pcmodel.run_job(
        log, range(60), workers=pcmodel.Adaptive(max=10), retries=retry, clock="virtual"
    )
    calls = log.calls(summary)
    limited = [c for c in calls if c.outcome == "rate-limited"]
    assert len(limited) == len(summary.drops or ()) > 0
    lanes = pcmodel.plot_timeline(summary, calls=calls).axes[0]
    points = _marker_points(lanes, "v")
    # One set of 429 markers, from the calls: the drops are the same 429s.
    assert len([line for line in lanes.get_lines() if line.get_marker() == "v"]) == 1
    assert _counted(lanes, points, timeline.RATE_LIMITED_COLOR) == len(limited)
    assert "429: rate limited (\N{MULTIPLICATION SIGN}n: n at once)" not in _legend(lanes)


def test_a_fixed_pool_has_no_limit_line_and_a_job_without_limit_records_draws_as_before() -> None:
    summary = _run()
    assert summary.limit_changes is not None
    assert len({c.limit for c in summary.limit_changes}) == 1
    fig = pcmodel.plot_timeline(summary)
    assert len(fig.axes) == 2
    assert "concurrency limit" not in _legend(fig.axes[0])
    adaptive = _adaptive_job()
    for bare in (
        dataclasses.replace(adaptive, limit_changes=None, drops=None),
        dataclasses.replace(adaptive, limit_changes=(), drops=()),
    ):
        fig = pcmodel.plot_timeline(bare)
        assert len(fig.axes) == 2
        lanes = fig.axes[0]
        assert _marker_points(lanes, "v") == _marker_points(lanes, "X") == []
        assert not any("limit" in label or "429" in label for label in _legend(lanes))


def test_plot_timelines_draws_each_jobs_limit_over_its_own_lanes() -> None:
    adaptive, fixed = _adaptive_job(), _run()
    fig = timeline.plot_timelines({"adaptive": adaptive, "fixed": fixed})
    assert len(fig.axes) == 3  # two panels, and the limit's axis over the adaptive one
    top, bottom, limit_ax = fig.axes
    assert limit_ax.get_shared_x_axes().joined(top, limit_ax)
    assert "concurrency limit" in _legend(top)
    assert "concurrency limit" not in _legend(bottom)


def _stepped(*steps: tuple[float, int]) -> JobSummary:
    """A job's summary whose limit took these (time, limit) steps, and that ended at 4.0 s."""
    changes = tuple(
        LimitChange(time, limit, "start" if i == 0 else "grow") for i, (time, limit) in enumerate(steps)
    )
    return dataclasses.replace(_run(), limit_changes=changes, elapsed=4.0)


def test_mean_limit_weights_each_limit_by_how_long_it_held() -> None:
    summary = _stepped((0.0, 1), (1.0, 3), (3.0, 2))
    assert timeline.mean_limit(summary) == pytest.approx((1 * 1 + 3 * 2 + 2 * 1) / 4)
    assert timeline.mean_limit(summary, 2.0) == pytest.approx((3 * 1 + 2 * 1) / 2)
    assert timeline.mean_limit(summary, 0.5, 1.5) == pytest.approx(2.0)
    assert timeline.mean_limit(summary, 3.5, 10.0) == pytest.approx(2.0)
    assert timeline.mean_limit(_run(4)) == 4  # a fixed pool: its workers
    with pytest.raises(ValueError, match=r"end must be after start, got start=4.0 and end=4.0"):
        timeline.mean_limit(summary, 4.0)


def test_settled_at_is_when_the_limit_entered_the_band_for_good() -> None:
    summary = _stepped((0.0, 1), (1.0, 3), (2.0, 5), (3.0, 3))
    assert timeline.settled_at(summary, 3, 5) == 1.0
    assert timeline.settled_at(summary, 2, 4) == 3.0
    assert timeline.settled_at(summary, 6, 9) is None
    assert timeline.settled_at(summary, 0, 10) == 0.0


@pytest.mark.parametrize("helper", [timeline.mean_limit, lambda s: timeline.settled_at(s, 1, 2)])
def test_the_limit_helpers_need_a_trace_with_limit_records(helper: Any) -> None:
    with pytest.raises(ValueError, match="trace=False"):
        helper(_run(trace=False))
    with pytest.raises(
        ValueError, match=r"this job recorded no concurrency limit: run it again with trace=True"
    ):
        helper(dataclasses.replace(_run(), limit_changes=None))
    with pytest.raises(TypeError, match="summary must be a JobSummary"):
        helper("not a summary")


def test_an_adaptive_jobs_timeline_drawn_into_given_axes_adds_only_the_limits_axis() -> None:
    summary = _adaptive_job()
    fig = Figure()
    ax = fig.subplots()
    assert pcmodel.plot_timeline(summary, ax, title="adaptive") is fig
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "concurrency limit"
    assert ax.get_title().startswith("adaptive\nelapsed")


def test_a_pool_resized_by_hand_draws_its_steps_and_the_lanes_above_them_are_the_busy_ones() -> None:
    async def one_second(n: int) -> int:
        await asyncio.sleep(1)
        return n

    async def main() -> JobSummary:
        handle = pcmodel.start_job(one_second, range(24), workers=6)
        await asyncio.sleep(1.5)
        handle.set_workers(2)
        await asyncio.sleep(2.0)
        handle.set_workers(4)
        return await handle

    summary = sweeps.run_virtual(main)
    assert [(c.time, c.limit, c.cause) for c in summary.limit_changes or ()] == [
        (0.0, 6, "start"),
        (1.5, 2, "set_workers"),
        (3.5, 4, "set_workers"),
    ]
    fig = pcmodel.plot_timeline(summary)
    _, _, limit_ax = fig.axes
    (line,) = limit_ax.get_lines()
    assert np.asarray(line.get_ydata(), dtype=float).tolist() == [6, 2, 4, 4]
    assert limit_ax.get_ylim() == (6, 0)
    # Between the calls in flight at 1.5 s ending (2 s) and the pool growing again (3.5 s),
    # only the two lanes above the line take items.
    assert {r.worker for r in summary.results or () if 2.0 <= r.started_at < 3.5} == {0, 1}
