"""run_job, run_job_async and start_job take exactly make_spec's arguments, with its defaults."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

import pcmodel
from pcmodel.spec import make_spec


@pytest.mark.parametrize("runner", [pcmodel.run_job, pcmodel.run_job_async, pcmodel.start_job])
def test_every_runner_takes_make_specs_arguments_with_its_defaults(runner: Callable[..., Any]) -> None:
    expected = inspect.signature(make_spec).parameters
    given = inspect.signature(runner).parameters
    assert list(given) == list(expected)
    for name, parameter in given.items():
        assert parameter.kind == expected[name].kind, name
        assert parameter.default == expected[name].default, name


def test_a_runner_passes_every_argument_through() -> None:
    summary = pcmodel.run_job(lambda n: n, [1, 2], workers=3, queue_size=7, clock="virtual", trace=False)
    assert (summary.workers, summary.queue_size, summary.clock, summary.results) == (3, 7, "virtual", None)
