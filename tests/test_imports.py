"""Every module imports alone, in a fresh interpreter: no import cycle, no hidden import order.

A cycle between two modules can work when one of them happens to be imported first and fail
when the other is: so each module gets an interpreter of its own. A module that needs an
optional extra (aiohttp for the car-price API, redis for the broker) is skipped only when that
extra is missing here, and only if the missing extra is what stopped it.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import subprocess
import sys

import pytest

import pcmodel

MODULES = sorted(["pcmodel", *(info.name for info in pkgutil.walk_packages(pcmodel.__path__, "pcmodel."))])
OPTIONAL = ("aiohttp", "redis")


def test_the_walk_finds_the_modules() -> None:
    # A walk that found nothing would make every other test here pass vacuously.
    assert {"pcmodel.workloads", "pcmodel.carapi", "pcmodel._carapi_shared", "pcmodel.broker"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_each_module_imports_alone(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        missing = [
            extra
            for extra in OPTIONAL
            if f"No module named '{extra}'" in done.stderr or f"needs {extra}" in done.stderr
        ]
        if missing and all(importlib.util.find_spec(extra) is None for extra in missing):
            pytest.skip(f"{name} needs {missing[0]}, which is not installed here")
    assert done.returncode == 0, f"import {name} failed:\n{done.stderr}"
    assert done.stdout == ""  # importing runs nothing (`__main__` modules included)


def test_the_simulated_api_works_without_aiohttp() -> None:
    # `sys.modules[name] = None` makes `import name` raise ImportError, as if it were absent.
    script = """
import sys
sys.modules["aiohttp"] = None
from pcmodel import sweeps, workloads
api = workloads.SimulatedCarAPI(error_rate=1.0)
try:
    sweeps.run_virtual(api(3))
except workloads.ServerError as error:
    print(error.status, error.car_id)
try:
    import pcmodel.carapi
except ImportError as error:
    print(error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "500 3",
        "pcmodel.carapi needs aiohttp, which is not installed: pip install 'pcmodel[api]'",
    ]
