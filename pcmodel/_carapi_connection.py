"""The HTTP layer under the car-price server: each client connection, bounded and quiet.

aiohttp serves the car-price API (`pcmodel/_carapi_server.py`); this module holds what the
server changes in it, one connection at a time: a deadline for idle and slow clients, a
malformed request answered in one log line instead of a traceback, and a `Server` header that
names no version. Part of `pcmodel.carapi`; needs aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

from aiohttp import hdrs, web

__all__ = ["SERVER_NAME", "Server", "log", "serving"]

SERVER_NAME: Final = "pcmodel-carapi"
"""The `Server` header of every answer: no Python or aiohttp version for a scanner to match."""

log = logging.getLogger("pcmodel.carapi")
"""The car-price API's logger (a malformed request is one warning line)."""


def _one_line(text: object, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters, for a log line that quotes a client.

    A client's bytes may hold newlines (a forged second log line) or terminal escapes: runs
    of whitespace become one space, other unprintable characters their escape sequence.
    """
    line = " ".join(str(text).split())
    line = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Connection(web.RequestHandler):
    """aiohttp's handler of one client connection, with a deadline for idle and slow clients.

    aiohttp's own keep-alive timer waits an hour by default, and older aiohttp versions
    (the package accepts 3.9 and later) never started it before a first complete request:
    a client that connects and says nothing, or sends its headers a byte at a time
    (slowloris), held a socket for good. Here a connection with no request being served is
    closed once `idle_timeout` seconds have passed since it opened or since its last answer,
    whatever bytes trickle in, on every aiohttp version.

    A malformed request (a bad request line or header, headers too large) is answered 4xx in
    JSON and logged in one line, instead of aiohttp's traceback per request; and no answer
    names the Python or aiohttp version in its `Server` header.
    """

    def __init__(
        self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, idle_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._clock = loop
        self._idle_timeout = idle_timeout
        self._serving = 0
        self._quiet_since = loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._quiet_since = self._clock.time()
        self._idle_timer = self._clock.call_at(self._quiet_since + self._idle_timeout, self._check_idle)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().connection_lost(exc)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Mark a request as being served: the connection is not idle until it is answered."""
        self._serving += 1
        try:
            yield
        finally:
            self._serving -= 1
            self._quiet_since = self._clock.time()

    def _check_idle(self) -> None:
        now = self._clock.time()
        # While a request is served, look again later; a timer may fire a hair early (the
        # loop's clock resolution), hence the millisecond of slack.
        due = (now if self._serving else self._quiet_since) + self._idle_timeout
        if due - now > 1e-3:
            self._idle_timer = self._clock.call_at(due, self._check_idle)
            return
        self._idle_timer = None
        log.debug("closing a connection idle for %.3g s", now - self._quiet_since)
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request that failed: 4xx for a malformed one (one log line), 500 for a bug."""
        if status >= 500:
            # A bug in a handler: aiohttp logs it with its traceback, which is what it needs.
            response = super().handle_error(request, status, exc, message)
        else:
            reason = _one_line(getattr(exc, "message", None) or message or exc or "")
            log.warning("malformed request from %s: %d %s", request.remote, status, reason)
            response = web.json_response({"error": f"malformed request: {reason}"}, status=status)
            response.force_close()
        response.headers[hdrs.SERVER] = SERVER_NAME
        return response


class Server(web.Server):
    """aiohttp's low-level server, whose connections are `_Connection`s."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        idle_timeout: float,
        **options: Any,
    ) -> None:
        # handler_cancellation: a client that hangs up (a timed-out call) stops its request
        # here too, so `in_flight` counts only requests someone still waits for.
        super().__init__(handler, handler_cancellation=True, **options)
        self._idle_timeout = idle_timeout
        self._options = options

    def __call__(self) -> web.RequestHandler:
        return _Connection(
            self, loop=asyncio.get_running_loop(), idle_timeout=self._idle_timeout, **self._options
        )


def serving(request: web.BaseRequest) -> contextlib.AbstractContextManager[None]:
    """A context in which `request`'s connection counts as busy, so it is not closed as idle."""
    connection = request.protocol
    return connection.serving() if isinstance(connection, _Connection) else contextlib.nullcontext()
