"""The controller over its transport seam: one lifecycle, whatever carries the items.

A transport written here, in a few lines (it runs each item inline, in the producer), is
driven by the same `execute` as the in-process and the Redis ones: that is what lets a third
transport be a new module rather than a new controller. And the import graph: the controller
imports none of the broker's modules, and no module-level import cycle exists.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import pkgutil
from collections.abc import AsyncIterable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

import pcmodel
from pcmodel import controller
from pcmodel._summary import Tally, build_summary
from pcmodel.clock import VirtualTimeLoop
from pcmodel.producer import ProducerReport
from pcmodel.records import JobSummary, TaskResult
from pcmodel.spec import JobSpec, make_spec
from pcmodel.stopping import JobControl
from pcmodel.transport import Job, TransportReport


class InlineSummary(JobSummary):
    """A summary type of the test transport's own, to show the transport chooses it."""


class InlineTransport:
    """Runs each item in the producer itself: no queue, no worker task, one lane."""

    def __init__(self) -> None:
        self.now = asyncio.get_running_loop().time
        self.tally = Tally()
        self.events: list[str] = []
        self.job: Job | None = None

    async def __aenter__(self) -> Self:
        self.events.append("open")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.events.append(f"close {type(error).__name__ if error else None}")

    def start(self, job: Job, group: asyncio.TaskGroup) -> None:
        self.job = job
        self.events.append("start")

    async def produce(self, source: Iterable[Any] | AsyncIterable[Any], report: ProducerReport) -> None:
        assert self.job is not None
        assert isinstance(source, Iterable)
        for params in source:
            if self.job.control.reason is not None:
                return  # a stop cancels the other producers, never the one that asks for it
            task_id, at = next(self.job.task_ids), self.job.since_start()
            try:
                value, error = await self.job.spec.function(params), None
            except Exception as failure:  # noqa: BLE001 - the test transport reports it like the others
                value, error = None, failure
            finished = self.job.since_start()
            self.tally.count(error, at, finished, 1)
            await self.job.result_queue.put((task_id, params, value, error, 0, at, at, finished, 1))
            if error is not None and self.job.spec.fail_fast:
                self.job.control.task_failed(error)

    def take_back(self, control: JobControl, *, cancel_in_flight: bool) -> None:
        self.events.append(f"take back, cancel_in_flight={cancel_in_flight}")

    async def finish(self) -> None:
        self.events.append("finish")

    def report(self) -> TransportReport:
        return TransportReport(self.tally, 1, InlineSummary, {"abandoned_threads": 7})


async def _double(n: int) -> int:
    await asyncio.sleep(1.0)
    if n == 3:
        raise ValueError("three")
    return 2 * n


def _run_inline(spec: JobSpec) -> tuple[JobSummary, list[str]]:
    async def main() -> tuple[JobSummary, list[str]]:
        transport = InlineTransport()
        summary = await controller.execute(spec, transport)
        return summary, transport.events

    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_a_transport_of_its_own_runs_the_whole_lifecycle_through_the_one_controller() -> None:
    seen: list[TaskResult] = []
    completed: list[JobSummary] = []
    spec = make_spec(
        _double, [1, 2, 3, 4], on_task_complete=seen.append, on_job_complete=completed.append, clock="virtual"
    )
    summary, events = _run_inline(spec)
    assert events == ["open", "start", "finish", "close None"]
    assert type(summary) is InlineSummary
    assert (summary.tasks, summary.succeeded, summary.failed, summary.workers) == (4, 3, 1, 1)
    assert (summary.elapsed, summary.busy_time, summary.abandoned_threads) == (4.0, 4.0, 7)
    assert [(r.task_id, r.value) for r in seen] == [(0, 2), (1, 4), (2, None), (3, 8)]
    assert completed == [summary]
    assert summary.results is not None
    assert [r.params for r in summary.results] == [1, 2, 3, 4]


def test_a_fail_fast_stop_asks_the_transport_to_take_back_and_halt() -> None:
    spec = make_spec(_double, [1, 3, 4, 5], fail_fast=True, clock="virtual")
    summary, events = _run_inline(spec)
    assert events == ["open", "start", "take back, cancel_in_flight=True", "finish", "close None"]
    assert summary.stop_reason == "fail_fast"
    assert isinstance(summary.error, ValueError)
    assert summary.tasks == 2  # the producer, this transport's only worker, stopped after the failure


def test_a_piece_that_fails_closes_the_transport_with_that_error_and_the_caller_gets_it() -> None:
    def broken(result: TaskResult) -> None:
        raise KeyboardInterrupt

    spec = make_spec(_double, [1, 2], on_task_complete=broken, clock="virtual")
    with pytest.raises(KeyboardInterrupt):
        _run_inline(spec)


def test_the_builder_counts_a_live_view_and_a_finished_job_alike() -> None:
    cancelled = asyncio.CancelledError()
    results = [
        TaskResult(1, "b", None, cancelled, 0, 0.0, 1.0, 3.0, 1),
        TaskResult(0, "a", 1, None, 1, 0.0, 0.0, 2.0, 3),
    ]
    tally = Tally.of_results(results)
    assert tally == Tally(tasks=2, failed=1, busy=4.0, retries=2, cancelled=1)
    summary = build_summary(tally, elapsed=3.0, workers=2, clock="virtual", results=results, trace=True)
    assert summary.results == (results[1], results[0])
    assert (summary.succeeded, summary.failed, summary.cancelled, summary.retries) == (1, 1, 1, 2)
    assert (summary.producer_blocked, summary.unprocessed_params, summary.stop_reason) == ((), None, None)
    assert (
        build_summary(Tally(), elapsed=0.0, workers=1, clock="real", results=None, trace=False).results
        is None
    )


def test_a_counted_outcome_with_no_attempt_adds_no_negative_retry() -> None:
    tally = Tally()
    tally.count(TypeError("cannot travel"), 1.0, 1.0, 0)  # a broker item rejected before sending
    assert tally == Tally(tasks=1, failed=1, busy=0.0, retries=0, cancelled=0)


# -- the import graph ---------------------------------------------------------------------------

_MODULES: dict[str, tuple[Path, bool]] = {"pcmodel": (Path(pcmodel.__file__ or ""), True)}
for _info in pkgutil.walk_packages(pcmodel.__path__, "pcmodel."):
    _spec = importlib.util.find_spec(_info.name)
    assert _spec is not None
    assert _spec.origin is not None
    _MODULES[_info.name] = (Path(_spec.origin), _info.ispkg)


def _imports(name: str, *, deep: bool) -> set[str]:
    """The pcmodel modules `name` imports: at module level, or (`deep`) anywhere in it.

    Imports under `if TYPE_CHECKING:` never run. `from pcmodel import x` imports the module
    `pcmodel.x` (the package itself is always imported first, by any of its modules).
    """
    path, is_package = _MODULES[name]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{node.module}" if node.module else package
                modules = {f"{base}.{alias.name}" for alias in node.names} & _MODULES.keys()
                found.update(modules)
                if len(modules) < len(node.names):
                    found.add(base)
            elif deep or not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, [])
                    visit([child for child in children if isinstance(child, ast.stmt)])
                    for child in children:
                        if isinstance(child, ast.ExceptHandler):
                            visit(child.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {module for module in found if module in _MODULES and module != name}


def _reachable(start: str, *, deep: bool) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for module in _imports(todo.pop(), deep=deep):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen


def test_the_walk_reads_real_imports() -> None:
    # A walk that found nothing would make the tests below pass vacuously.
    assert {"pcmodel.spec", "pcmodel.transport", "pcmodel._local_transport"} <= _imports(
        "pcmodel.controller", deep=False
    )
    assert "pcmodel.broker.transport" in _imports("pcmodel.controller", deep=True)
    assert "pcmodel.controller" in _imports("pcmodel.broker.controller", deep=False)


def test_no_module_imports_itself_back_at_module_level() -> None:
    cycles = [name for name in _MODULES if name in _reachable(name, deep=False)]
    assert cycles == []


@pytest.mark.parametrize(
    "name", ["pcmodel.controller", "pcmodel.spec", "pcmodel.transport", "pcmodel._local_transport"]
)
def test_the_controller_side_never_imports_the_broker_at_module_level(name: str) -> None:
    broker = {module for module in _reachable(name, deep=False) if module.startswith("pcmodel.broker")}
    assert broker <= {"pcmodel.broker", "pcmodel.broker.config"}  # the settings: no redis


@pytest.mark.parametrize("name", ["pcmodel.broker.transport", "pcmodel.broker.presence"])
def test_the_broker_transport_never_imports_the_controller(name: str) -> None:
    assert "pcmodel.controller" not in _reachable(name, deep=True)
    assert name not in _reachable("pcmodel.controller", deep=False)


def test_the_controller_and_the_broker_import_each_other_in_no_loop_even_lazily() -> None:
    for name in ("pcmodel.controller", "pcmodel.broker.transport", "pcmodel.broker.controller"):
        assert name not in _reachable(name, deep=True)


# -- the one builder, for a finished job and a live view -------------------------------------


async def _flaky(n: int) -> int:
    await asyncio.sleep(0.5 + n % 3)
    if n % 4 == 1:
        raise ValueError(f"bad {n}")
    return n


def test_the_live_view_of_every_result_counts_what_the_finished_job_reported() -> None:
    from pcmodel import run_job, widgets

    summary = run_job(_flaky, range(12), workers=3, retries=1, clock="virtual")
    assert summary.results is not None
    live = widgets.summary_so_far(summary.results, workers=summary.workers, clock="virtual")
    fields = ("tasks", "succeeded", "failed", "elapsed", "retries", "cancelled", "results")
    assert [getattr(live, name) for name in fields] == [getattr(summary, name) for name in fields]
    # Added in another order (per worker, not per task), so equal up to rounding.
    assert live.busy_time == pytest.approx(summary.busy_time, rel=1e-12)
    assert (summary.failed, summary.retries) == (3, 3)  # the test can tell a wrong count


def test_a_fail_fast_job_on_the_local_transport_reports_what_it_took_back() -> None:
    from pcmodel import run_job

    summary = run_job(_flaky, range(20), workers=2, queue_size=5, fail_fast=True, clock="virtual")
    assert summary.stop_reason == "fail_fast"
    assert summary.results is not None
    assert summary.unprocessed_params is not None
    assert summary.drained is not None
    ran = {r.params for r in summary.results}
    assert ran.isdisjoint(summary.unprocessed_params)
    assert summary.unprocessed == len(summary.unprocessed_params) > 0
    # The queue held 5 (drained); the producer, blocked on the full queue, held one more.
    assert (len(summary.drained), summary.unprocessed) == (5, 6)
    assert ran | set(summary.unprocessed_params) == set(range(len(ran) + summary.unprocessed))
