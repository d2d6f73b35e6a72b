"""The command line of the car-price API: `pcmodel serve-api`, until Ctrl-C or SIGTERM.

Turns options into a `CarAPIServer`'s knobs (a bad one is a one-line error naming the
option), serves on loopback, and stops cleanly on a signal with what the server saw. Part of
`pcmodel.carapi`; needs aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import re
import signal
import sys
from collections.abc import Sequence
from typing import Final, NoReturn

from pcmodel._carapi_connection import log
from pcmodel._carapi_server import CarAPIServer
from pcmodel._carapi_shared import DEFAULT_LATENCY

__all__ = ["serve_main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with a pointer to `--help`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(text: str, rule: str = "a finite number") -> float:
    """An option's value as a finite float (argparse's `float` takes 'nan' and 'inf')."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
    return value


def _seconds(text: str) -> float:
    """An option's value as a finite number of seconds >= 0."""
    rule = "a finite number of seconds >= 0"
    value = _number(text, rule)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pcmodel serve-api",
        description=(
            "Serve the car-price JSON API on loopback until Ctrl-C: GET /cars/ID/price, "
            "GET /cars/ID, GET /stats, GET /health, GET and PUT /capacity. Slow, flaky, "
            "rate-limited and of limited capacity on demand."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind, or localhost (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    parser.add_argument(
        "--latency",
        type=_seconds,
        nargs=2,
        default=DEFAULT_LATENCY,
        metavar=("LOW", "HIGH"),
        help="each answer takes a uniform LOW-HIGH seconds (default {:g} {:g})".format(*DEFAULT_LATENCY),
    )
    parser.add_argument(
        "--error-rate",
        type=_number,
        default=0.0,
        metavar="R",
        help="share of requests answered 500 (default 0)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_number,
        default=None,
        metavar="N",
        help="let N requests a second through, answer 429 with Retry-After beyond (default: no limit)",
    )
    parser.add_argument(
        "--burst", type=int, default=None, metavar="B", help="requests the rate limiter holds (default 1)"
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=None,
        metavar="K",
        help="serve at most K requests at once, answer 429 with Retry-After beyond; change it while "
        'the server runs with PUT /capacity and the body {"capacity": K} (default: no limit)',
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of every draw (default 0)")
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=30.0,
        metavar="T",
        help="close a connection after T seconds with no request being served: idle clients, "
        "and clients too slow to send their request (default 30)",
    )
    return parser


_KNOBS: Final = re.compile(r"\b(error_rate|rate_limit|idle_timeout|capacity|latency|burst|seed|host|port)\b")


def _as_option(message: str) -> str:
    """A knob's error message in the command line's words: 'error_rate' becomes '--error-rate'."""
    return _KNOBS.sub(lambda knob: "--" + knob[1].replace("_", "-"), message)


class _CannotServe(Exception):
    """The server could not bind its address (the OSError is the argument)."""


async def _serve_forever(server: CarAPIServer) -> bool:
    """Serve until Ctrl-C or SIGTERM, then stop the server; return True if it was Ctrl-C."""
    received: list[signal.Signals] = []
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        # A second Ctrl-C while the server stops changes nothing: the stop is bounded by
        # shutdown_timeout, and a KeyboardInterrupt raised in the middle of it would leave
        # aiohttp half shut down, spilling a traceback per connection.
        received.append(signum)
        stop.set()

    # The handlers stay until the server has stopped. SIGTERM (a supervisor, or a notebook's
    # process.terminate()) stops as cleanly as Ctrl-C.
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, nor outside the main thread: there asyncio.run's own Ctrl-C applies.
        with contextlib.suppress(NotImplementedError, AttributeError, ValueError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
    try:
        try:
            await server.start()
        except OSError as error:  # the port is taken, the address is not this machine's...
            raise _CannotServe(error) from None
        try:
            limit = (
                "no rate limit"
                if server.rate_limit is None
                else f"rate limit {server.rate_limit:g}/s, burst {server.burst}"
            )
            if server.capacity is not None:
                limit += f", capacity {server.capacity} (PUT {server.url}/capacity to change it)"
            low, high = server.latency if isinstance(server.latency, tuple) else (0.0, 0.0)
            print(f"car-price API on {server.url}", flush=True)
            print(
                f"latency {low:g}-{high:g} s, error rate {server.error_rate:g}, {limit}, seed {server.seed}; "
                f"try {server.url}/cars/1/price; Ctrl-C to stop",
                flush=True,
            )
            await stop.wait()
        finally:
            await server.stop()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    return received[:1] == [signal.SIGINT]


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Run `pcmodel serve-api` with `argv` (default: `sys.argv[1:]`) until Ctrl-C or SIGTERM.

    Prints the URL first; on Ctrl-C or SIGTERM stops the server cleanly and prints what it
    saw. A malformed request is logged as one line on stderr.

    Returns:
        0 after SIGTERM, 130 after Ctrl-C (with "pcmodel serve-api: interrupted" on stderr),
        1 if the port cannot be bound. A bad option exits with status 2 and a one-line message.
    """
    try:
        return _serve_main(argv)
    except KeyboardInterrupt:  # before the server was up, or a second Ctrl-C while it stops
        print("pcmodel serve-api: interrupted", file=sys.stderr, flush=True)
        return 130


def _serve_main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    low, high = args.latency
    if low > high:
        parser.error(f"--latency LOW must be <= HIGH, got {low:g} {high:g}")
    try:
        server = CarAPIServer(
            latency=(low, high),
            error_rate=args.error_rate,
            rate_limit=args.rate_limit,
            burst=args.burst,
            capacity=args.capacity,
            seed=args.seed,
            host=args.host,
            port=args.port,
            idle_timeout=args.idle_timeout,
        )
    except (TypeError, ValueError) as error:
        parser.error(_as_option(str(error)))
    # The server's log lines (a malformed request) go to stderr, one line each.
    log_handler = logging.StreamHandler(sys.stderr)
    log_handler.setFormatter(logging.Formatter("pcmodel serve-api: %(message)s"))
    log.addHandler(log_handler)
    try:
        interrupted = asyncio.run(_serve_forever(server))
    except KeyboardInterrupt:  # where asyncio.run's own Ctrl-C applies
        interrupted = True
    except _CannotServe as error:
        print(f"pcmodel serve-api: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    finally:
        log.removeHandler(log_handler)
    print(f"stopped: {server.statistics()}", flush=True)
    if interrupted:
        print("pcmodel serve-api: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
