"""The car-price API's client: `CarPriceClient`, a ready workload for pcmodel jobs.

`await client(car)` asks the API for a car's price over real sockets, through one aiohttp
session shared by every worker. An error answer is raised as the API's own error class
(`ServerError` for a 5xx, `RateLimited` with its `retry_after` for a 429, `PriceAPIError`
otherwise), the same classes the twin on the virtual clock raises. Part of `pcmodel.carapi`;
needs aiohttp.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self

import aiohttp

from pcmodel._carapi_shared import RETRYABLE_ERRORS as _API_ERRORS
from pcmodel._carapi_shared import PriceAPIError, RateLimited, ServerError
from pcmodel._validate import check_int

__all__ = ["RETRYABLE_ERRORS", "CarAPIError", "CarPriceClient"]

CarAPIError = PriceAPIError
"""The client's name for `PriceAPIError`, the base of the API's errors: one class, two names."""

RETRYABLE_ERRORS: Final[tuple[type[Exception], ...]] = (*_API_ERRORS, aiohttp.ClientConnectionError)
"""The exceptions of a `CarPriceClient` call that are worth retrying: 5xx and 429 answers
(`pcmodel.workloads.RETRYABLE_ERRORS`, which the twin raises too), and failed connections
(refused, reset, closed mid-answer), which only real sockets have."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `Retry-After-Ms` or else `Retry-After` (seconds or an HTTP date)."""
    millis = headers.get("Retry-After-Ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _car_id(car: object) -> int:
    if isinstance(car, Mapping):
        if "id" not in car:
            raise TypeError(f"car must be an int id or a mapping with an 'id' key, got {car!r:.80}")
        car = car["id"]
    if isinstance(car, bool) or not isinstance(car, int):
        raise TypeError(f"car must be an int id or a mapping with an 'id' key, got {car!r:.80}")
    return car


class CarPriceClient:
    """A ready workload for pcmodel jobs: `await client(car)` asks the API for the car's price.

    One `aiohttp.ClientSession`, opened on entry and closed on exit, is shared by every call,
    so a job's workers reuse its pooled keep-alive connections instead of each opening its
    own. The connection pool is unbounded by default: the job's `workers` already bound the
    calls in flight.

        async with CarAPIServer() as server, CarPriceClient(server.url) as fetch_price:
            summary = await pcmodel.run_job_async(fetch_price, range(200), workers=50)

    A call raises `ServerError` for a 5xx answer, `RateLimited` for a 429 (its `retry_after`
    says how long to wait), `CarAPIError` for another error status, and aiohttp's
    `ClientConnectionError` when the connection fails. `RETRYABLE_ERRORS` lists the ones
    worth retrying.

    The session belongs to the loop that opened it: open the client inside the job's loop
    (`run_job_async` with the real clock). Real sockets have no place on a virtual clock.

    Args:
        url: the API's base URL, such as `server.url`.
        timeout: seconds a call may take in all before aiohttp gives up, or None for no limit.
            A safety net: per-task time limits belong to the job.
        connections: most connections open at once; 0 (default) for no limit.
    """

    def __init__(self, url: str, *, timeout: float | None = 60.0, connections: int = 0) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {url!r}")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with 'http://' or 'https://', got {url!r}")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
            if not timeout > 0:
                raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        self.url = url.rstrip("/")
        """The API's base URL."""
        self._timeout = timeout
        self._connections = check_int("connections", connections, 0)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (only between entry and exit)."""
        if self._session is None:
            raise RuntimeError(
                "the client is not open: use 'async with CarPriceClient(url) as fetch_price:' first"
            )
        return self._session

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("the client is already open; make one CarPriceClient per 'async with'")
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        session = self.session
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "the client was opened on another event loop: open it on the loop the job runs on "
                "and use 'await run_job_async(...)' with the real clock (run_job inside a running "
                "loop, and clock='virtual', run the job on a private loop in another thread)"
            )
        return session

    async def _get(self, car: object, suffix: str) -> dict[str, Any]:
        car_id = _car_id(car)
        session = self._open_session()
        async with session.get(f"{self.url}/cars/{car_id}{suffix}") as response:
            if response.status == 200:
                data: dict[str, Any] = await response.json()
                return data
            status, reason = response.status, response.reason or ""
            try:
                detail = (await response.json()).get("error", "")
            except (aiohttp.ContentTypeError, ValueError, AttributeError):
                detail = ""
            retry_after = _retry_after(response.headers)
        text = f"car {car_id}: the price API answered {status} {reason}".rstrip()
        if detail:
            text += f" ({detail})"
        if status == 429:
            wait = "" if retry_after is None else f", retry after {retry_after:.3f} s"
            raise RateLimited(text + wait, status=status, car_id=car_id, retry_after=retry_after)
        if status >= 500:
            raise ServerError(text, status=status, car_id=car_id, retry_after=retry_after)
        raise CarAPIError(text, status=status, car_id=car_id, retry_after=retry_after)

    async def __call__(self, car: int | Mapping[str, Any]) -> int:
        """Ask the API for the price of `car` (an int id, or a mapping with an "id"), in euros.

        Raises:
            ServerError: a 5xx answer.
            RateLimited: a 429 answer; `retry_after` says how long to wait.
            CarAPIError: another error status (404 for an unknown car).
            aiohttp.ClientConnectionError: the connection failed.
            TypeError: `car` is not an int id or a mapping with one.
        """
        data = await self._get(car, "/price")
        return int(data["price"])

    async def car(self, car: int | Mapping[str, Any]) -> dict[str, Any]:
        """Ask the API for everything it knows about `car` (see `car_info`); same errors."""
        return await self._get(car, "")

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "closed"
        return f"<CarPriceClient {self.url} ({state})>"
