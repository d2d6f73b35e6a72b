"""The car-price API's shared parts: one set of error classes and knob rules for the HTTP API and its twin.

A learner who moves from the twin on the virtual clock (`workloads.SimulatedCarAPI`) to the
real server and client (`pcmodel.carapi`) keeps every `except` and every retry rule.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import pickle
from types import ModuleType
from typing import Any

import pytest

import pcmodel
from pcmodel import sweeps, workloads
from pcmodel._carapi_shared import retry_after_ms

SHARED = ("PriceAPIError", "ServerError", "RateLimited", "Latency")


@pytest.fixture
def carapi() -> ModuleType:
    """`pcmodel.carapi`, or a skip where aiohttp (the `api` extra) is missing."""
    module: ModuleType = pytest.importorskip("pcmodel.carapi")
    return module


@pytest.mark.parametrize("name", SHARED)
def test_the_api_names_are_the_same_objects_in_both_modules(carapi: ModuleType, name: str) -> None:
    assert getattr(workloads, name) is getattr(carapi, name)


def test_the_clients_other_errors_are_price_api_errors(carapi: ModuleType) -> None:
    assert carapi.CarAPIError is workloads.PriceAPIError
    assert issubclass(carapi.ServerError, workloads.PriceAPIError)
    assert issubclass(carapi.RateLimited, workloads.PriceAPIError)


def test_the_errors_keep_their_public_name() -> None:
    # The broker names errors and retry rules `module.QualName`; lessons print them.
    for kind in (workloads.PriceAPIError, workloads.ServerError, workloads.RateLimited):
        assert f"{kind.__module__}.{kind.__qualname__}" == f"pcmodel.workloads.{kind.__name__}"


def test_the_retryable_answers_are_shared_and_the_client_adds_lost_connections(carapi: ModuleType) -> None:
    import aiohttp

    answers = (workloads.ServerError, workloads.RateLimited)
    assert answers == workloads.RETRYABLE_ERRORS
    # Only real sockets fail to connect: the client's rule adds that, and nothing else.
    assert (*answers, aiohttp.ClientConnectionError) == carapi.RETRYABLE_ERRORS


def test_an_except_of_the_client_catches_the_twins_errors(carapi: ModuleType) -> None:
    twin = workloads.SimulatedCarAPI(latency=(0.0, 0.0), error_rate=1.0, rate_limit=1, burst=1)

    async def two_calls() -> list[str]:
        caught = []
        try:
            await twin(1)
        except carapi.ServerError as error:
            caught.append(f"{error.status} {error.car_id} {error.retryable}")
        try:
            await twin(2)  # the bucket held one token
        except carapi.RateLimited as error:
            caught.append(f"{error.status} {error.car_id} {error.retry_after}")
        return caught

    assert sweeps.run_virtual(two_calls()) == ["500 1 True", "429 2 1.0"]


def test_an_except_of_the_twin_catches_the_clients_errors(carapi: ModuleType) -> None:
    async def calls() -> list[str]:
        caught = []
        # Two tokens, and about none more for the test's length: the third call is turned away.
        knobs = {"latency": (0.0, 0.0), "error_rate": 1.0, "rate_limit": 0.001, "burst": 2}
        async with carapi.CarAPIServer(**knobs) as server, carapi.CarPriceClient(server.url) as fetch_price:
            try:
                await fetch_price(5)
            except workloads.ServerError as error:
                caught.append(f"{error.status} {error.car_id}")
            try:
                await fetch_price(10**9 + 1)
            except workloads.PriceAPIError as error:  # a 404: no such car
                caught.append(f"{type(error).__name__} {error.status} {error.retryable}")
            try:
                await fetch_price(6)
            except workloads.RateLimited as error:
                caught.append(f"{error.status} {error.car_id} {error.retry_after is not None}")
        return caught

    assert asyncio.run(calls()) == ["500 5", "PriceAPIError 404 False", "429 6 True"]


def test_the_twins_retry_rule_retries_the_real_clients_errors(carapi: ModuleType) -> None:
    async def job() -> pcmodel.JobSummary:
        async with (
            carapi.CarAPIServer(latency=(0.0, 0.002), error_rate=0.4, seed=2) as server,
            carapi.CarPriceClient(server.url) as fetch_price,
        ):
            retry = pcmodel.Retry(10, on=workloads.RETRYABLE_ERRORS, backoff=0.0, jitter=0.0)
            return await pcmodel.run_job_async(fetch_price, range(30), workers=5, retries=retry)

    summary = asyncio.run(job())
    assert summary.failed == 0
    assert summary.retries > 0


@pytest.mark.parametrize(
    "error",
    [
        workloads.PriceAPIError("price API error for car 1 (Golf)"),
        workloads.ServerError("car 3: 503", status=503, car_id=3),
        workloads.RateLimited("car 4: too many", car_id=4, retry_after=0.25),
    ],
)
def test_an_error_survives_pickle_and_copy_with_its_fields(error: workloads.PriceAPIError) -> None:
    for twin in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(twin) is type(error)
        assert (str(twin), twin.status, twin.car_id, twin.retry_after) == (
            str(error),
            error.status,
            error.car_id,
            error.retry_after,
        )


def test_an_error_says_whether_it_is_worth_retrying() -> None:
    assert not workloads.PriceAPIError("no status").retryable
    assert not workloads.PriceAPIError("not found", status=404).retryable
    assert workloads.ServerError("no status given").status == 500
    assert workloads.ServerError("bad gateway", status=502).retryable
    assert workloads.RateLimited("slow down").retryable


def test_the_twin_has_the_servers_knobs_with_the_same_defaults(carapi: ModuleType) -> None:
    server = inspect.signature(carapi.CarAPIServer).parameters
    twin = inspect.signature(workloads.SimulatedCarAPI).parameters
    assert list(twin) == ["latency", "error_rate", "rate_limit", "burst", "capacity", "seed"]
    for name, parameter in twin.items():
        assert server[name].default == parameter.default, name


@pytest.mark.parametrize(
    ("knobs", "error", "message"),
    [
        ({"latency": (0.0, float("inf"))}, ValueError, r"latency bounds must be finite numbers of seconds"),
        ({"latency": (float("nan"), 1.0)}, ValueError, r"latency bounds must be finite numbers of seconds"),
        ({"latency": (0, 10**400)}, ValueError, r"latency bounds must be finite numbers of seconds"),
        ({"rate_limit": 10**400}, ValueError, r"rate_limit must be > 0 requests per second"),
        ({"rate_limit": float("nan")}, ValueError, r"rate_limit must be > 0 requests per second"),
        ({"rate_limit": 1e-6}, ValueError, r"rate_limit must be >= 1/86400 requests per second"),
        ({"rate_limit": 1, "burst": 10**9 + 1}, ValueError, r"burst must be <= 1000000000"),
        ({"rate_limit": 1, "burst": 2.0}, TypeError, r"burst must be an int"),
        ({"error_rate": -0.1}, ValueError, r"error_rate must be between 0 and 1, got -0.1"),
        ({"error_rate": True}, TypeError, r"error_rate must be a number from 0 to 1"),
        ({"seed": "1"}, TypeError, r"seed must be an int, got '1'"),
        ({"capacity": 0}, ValueError, r"capacity must be >= 1 request in flight \(None: no limit\), got 0"),
        ({"capacity": 10**9 + 1}, ValueError, r"capacity must be <= 1000000000"),
        ({"capacity": 4.0}, TypeError, r"capacity must be an int number of requests in flight or None"),
    ],
)
@pytest.mark.parametrize("api", ["server", "twin"])
def test_the_server_and_the_twin_refuse_the_same_knobs(
    carapi: ModuleType, api: str, knobs: dict[str, Any], error: type[Exception], message: str
) -> None:
    make = carapi.CarAPIServer if api == "server" else workloads.SimulatedCarAPI
    with pytest.raises(error, match=message):
        make(**knobs)


@pytest.mark.parametrize(
    ("wait", "millis"), [(0.05000000000000004, 50), (0.0500001, 51), (0.001, 1), (0.0, 0), (1.2344, 1235)]
)
def test_a_retry_after_rounds_up_to_the_millisecond_but_not_for_float_noise(wait: float, millis: int) -> None:
    assert retry_after_ms(wait) == millis
