"""The worker command line: `python -m pcmodel worker` (or `python -m pcmodel.broker`).

`worker_main` checks the arguments (and imports `--function`) before connecting, so a mistake
is a one-paragraph usage error with exit code 2; then it serves the queue with `serve_worker`
until a signal. SIGTERM or Ctrl-C stops it gracefully: no new item, every item held finishes
and is acknowledged, exit 0. A second signal stops it at once (exit 1), leaving its items to
other processes after the visibility timeout. A broker it cannot reach is exit 1, with the
URL named without its password.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pcmodel._validate import check_worker_count
from pcmodel.broker._process import WorkerStats, process_name
from pcmodel.broker._redis import RedisConnectionError, RedisTimeoutError, check_url, redacted
from pcmodel.broker.config import check_seconds
from pcmodel.broker.naming import load_function, queue_name
from pcmodel.broker.worker import serve_worker

__all__ = ["worker_main"]

logger = logging.getLogger("pcmodel.broker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcmodel worker",
        description=(
            "Serve jobs from a Redis broker: take items, run FUNCTION on each with up to WORKERS "
            "calls at once, write each result back. Start as many as you like, on any host. "
            "SIGTERM or Ctrl-C stops gracefully (items in flight finish and are acknowledged); "
            "a second signal stops at once."
        ),
    )
    parser.add_argument(
        "--broker", required=True, metavar="URL", help="Redis URL, e.g. redis://127.0.0.1:6379/0"
    )
    parser.add_argument(
        "--function",
        required=True,
        metavar="MODULE:NAME",
        help="the function to run, importable here, e.g. pcmodel.workloads:fetch_price",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=50,
        metavar="N",
        help="calls in flight at once, at most 10000 (default 50)",
    )
    parser.add_argument(
        "--queue",
        metavar="NAME",
        help="the queue to serve (default: the function's module:qualname, as the controller uses)",
    )
    parser.add_argument(
        "--round-trip-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds Redis gets to answer each request, connecting included (default 10)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on stderr (default WARNING)",
    )
    return parser


def worker_main(argv: Sequence[str] | None = None) -> int:
    """`python -m pcmodel worker ...`: serve until SIGTERM or Ctrl-C; return the exit code.

    Exit codes: 0 after a graceful stop, 1 if the broker cannot be reached or the process was
    stopped at once (a second signal), 2 for bad arguments.
    """
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        url = check_url(args.broker)
        check_worker_count("--workers", args.workers)
        check_seconds("--round-trip-timeout", args.round_trip_timeout)
        function = load_function(args.function)
        queue = args.queue if args.queue is not None else queue_name(function)
    except (ImportError, AttributeError) as error:
        parser.error(f"cannot import --function {args.function!r}: {error}")
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level,
            stream=sys.stderr,
            format="%(asctime)s pcmodel worker %(levelname)s: %(message)s",
        )
    logger.setLevel(args.log_level)
    return asyncio.run(_serve_until_signalled(url, function, queue, args.workers, args.round_trip_timeout))


async def _serve_until_signalled(
    url: str, function: Callable[[Any], Any], queue: str, workers: int, round_trip_timeout: float
) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stop = asyncio.Event()
    name = process_name()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print(
                f"pcmodel worker {name}: stopping: finishing the items in flight "
                "(signal again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            stop.set()
        else:
            main.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)

    def ready(stats: WorkerStats) -> None:
        print(
            f"pcmodel worker {name}: serving queue {queue!r} with {workers} workers on {redacted(url)}",
            flush=True,
        )

    try:
        stats = await serve_worker(
            url,
            function,
            workers=workers,
            queue=queue,
            stop=stop,
            name=name,
            on_ready=ready,
            round_trip_timeout=round_trip_timeout,
        )
    except asyncio.CancelledError:
        print(
            f"pcmodel worker {name}: stopped at once; other worker processes take over its items "
            "after the visibility timeout",
            file=sys.stderr,
            flush=True,
        )
        return 1
    except ConnectionError as error:
        print(f"pcmodel worker: {error}", file=sys.stderr, flush=True)
        return 1
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        print(
            f"pcmodel worker: cannot reach the broker at {redacted(url)}: {error}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    print(
        f"pcmodel worker {name}: stopped after {stats.items} items ({stats.failed} failed, "
        f"{stats.malformed} malformed, {stats.taken_over} taken over from stopped workers)",
        flush=True,
    )
    return 0
