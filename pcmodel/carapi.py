"""A real car-price HTTP API on loopback, and a client workload for pcmodel jobs.

Simulated calls (`pcmodel.workloads`) teach the model; this module is the real thing: an
aiohttp web server on 127.0.0.1 that is slow, flaky and rate-limited on purpose, and a client
whose calls go over real sockets. Both run on the caller's event loop, so a test or a notebook
cell can start the server, run a job against it and read what the server saw:

    >>> import asyncio, pcmodel
    >>> from pcmodel.carapi import CarAPIServer, CarPriceClient
    >>> async def demo():
    ...     async with CarAPIServer(latency=(0.01, 0.05), error_rate=0.1, seed=1) as server:
    ...         async with CarPriceClient(server.url) as fetch_price:
    ...             summary = await pcmodel.run_job_async(fetch_price, range(100), workers=20)
    ...         return summary.tasks, server.statistics().errors_sent == summary.failed
    >>> asyncio.run(demo())  # doctest: +SKIP
    (100, True)

The server's knobs:

- `latency`: how long each answer takes, uniform between two bounds or drawn by a function.
- `error_rate`: the share of requests answered `500 Internal Server Error`.
- `rate_limit` and `burst`: a token bucket on the server's loop clock; a request that finds
  the bucket empty is answered `429 Too Many Requests` at once, with a `Retry-After` header
  (whole seconds, as HTTP says) and a `Retry-After-Ms` header (the exact wait).
- `capacity`: the most requests served at once; one more is answered 429 at once, its
  `Retry-After-Ms` the exact wait until a slot frees. It can change while the server runs
  (`server.capacity = 5`, or `PUT /capacity` with `{"capacity": 5}`): the test bed of a
  pool that must find an API's limit by itself.

Every draw is seeded by the server's `seed`, the request's path and how many times that path
was served before, so the n-th request for a car meets the same fate whatever order the
requests arrive in: which cars fail is repeatable, and a retry can succeed.

The client raises `ServerError` for a 5xx answer and `RateLimited` (with `retry_after`, in
seconds) for a 429: what a retry layer needs to decide whether, and when, to try again. They
are the very classes the twin on the virtual clock raises (`pcmodel.workloads.ServerError`
is `pcmodel.carapi.ServerError`), so one `except` serves both.

This module is the API's public face; each part lives in a module of its own:

- `pcmodel/_carapi_shared.py`: the errors, the catalogue (`car_info`), the fate draw, the
  token bucket and the knobs' checks, shared with the twin (no aiohttp);
- `pcmodel/_carapi_server.py`: `CarAPIServer` and its `ServerStatistics`;
- `pcmodel/_carapi_connection.py`: the HTTP connections under it (idle deadline, malformed
  requests);
- `pcmodel/_carapi_client.py`: `CarPriceClient`;
- `pcmodel/_carapi_cli.py`: `pcmodel serve-api`.

aiohttp is needed (`pip install 'pcmodel[api]'`); `import pcmodel` never imports it.
"""

from __future__ import annotations

try:
    import aiohttp  # noqa: F401  (checked here, so a missing extra says how to install it)
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "pcmodel.carapi needs aiohttp, which is not installed: pip install 'pcmodel[api]'"
    ) from error

from pcmodel._carapi_cli import serve_main
from pcmodel._carapi_client import RETRYABLE_ERRORS, CarAPIError, CarPriceClient
from pcmodel._carapi_server import CarAPIServer, ServerStatistics
from pcmodel._carapi_shared import Latency, PriceAPIError, RateLimited, ServerError, car_info

__all__ = [
    "RETRYABLE_ERRORS",
    "CarAPIError",
    "CarAPIServer",
    "CarPriceClient",
    "Latency",
    "PriceAPIError",
    "RateLimited",
    "ServerError",
    "ServerStatistics",
    "car_info",
    "serve_main",
]
