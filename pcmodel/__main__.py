"""The command line: `python -m pcmodel demo` (also installed as `pcmodel`).

`demo` runs the write-up's job, simulated API calls of 0-2 s each, through the
producer-consumer pipeline, printing a line per completed task and the job's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pcmodel import __version__
from pcmodel._validate import check_int
from pcmodel.clock import Clock
from pcmodel.records import JobSummary, TaskResult
from pcmodel.runner import run_job
from pcmodel.timeline import describe
from pcmodel.workloads import seed_job

__all__ = ["main"]

_TRACE_LIMIT = 100_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcmodel",
        description="The asyncio producer-consumer model: run and watch it.",
    )
    parser.add_argument("--version", action="version", version=f"pcmodel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the write-up's job: simulated API calls of 0-2 s each",
        description=(
            "Run N simulated API calls (each waits random.Random(seed).random() * 2 s and "
            "returns the square of its number) on W workers, and print each result and the "
            "job's figures. The defaults reproduce the write-up: 10.690 s of calls in about "
            "2.68 s on 5 workers."
        ),
    )
    demo.add_argument("--tasks", type=int, default=10, metavar="N", help="number of calls (default 10)")
    demo.add_argument("--workers", type=int, default=5, metavar="W", help="worker tasks (default 5)")
    demo.add_argument(
        "--queue-size",
        type=int,
        default=100,
        metavar="Q",
        help="work queue capacity, 0 = unbounded (default 100)",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random waits (default 0)")
    demo.add_argument("--virtual", action="store_true", help="run in virtual time: instant, with exact times")
    demo.add_argument("--plot", metavar="PATH", help="save the timeline as a PNG image at PATH")
    demo.add_argument("--json", action="store_true", help="end with the summary's figures as one JSON object")
    # Listed for the help only: main() hands serve-api's arguments to pcmodel.carapi, so that
    # aiohttp is imported only when the API is served.
    commands.add_parser(
        "worker",
        help="serve jobs from a Redis broker on this host (needs pcmodel[redis]); see 'pcmodel worker --help'",
        add_help=False,
    )
    commands.add_parser(
        "serve-api",
        help="serve a local car-price HTTP API, slow, flaky and rate-limited on demand (needs pcmodel[api])",
        add_help=False,
    )
    return parser


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        job = seed_job(args.tasks, seed=args.seed)
        check_int("--workers", args.workers, 1)
        check_int("--queue-size", args.queue_size, 0)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    clock: Clock = "virtual" if args.virtual else "real"
    total = len(job)
    done = 0
    width = len(str(total))

    def show(result: TaskResult) -> None:
        nonlocal done
        done += 1
        outcome = f"-> {result.value}" if result.ok else f"failed: {result.error!r}"
        print(
            f"[{done:>{width}}/{total}] task {result.task_id:>{width}} {outcome} "
            f"in {result.duration:.3f} s (worker {result.worker}, done at {result.finished_at:.3f} s)",
            flush=True,
        )

    print(
        f"pcmodel demo: {total} simulated calls of 0-2 s (seed {args.seed}) on {args.workers} workers, "
        f"queue size {args.queue_size}, {clock} clock",
        flush=True,
    )
    summary: JobSummary = run_job(
        job.function,
        job.params,
        on_task_complete=show,
        workers=args.workers,
        queue_size=args.queue_size,
        clock=clock,
        # The ideal makespan needs every duration; past this size keep memory flat instead.
        trace=args.plot is not None or total <= _TRACE_LIMIT,
    )
    print(describe(summary))
    print(
        f"{summary.succeeded} of {summary.tasks} calls succeeded; "
        f"{summary.speedup:.1f}x faster than one call after another"
    )
    if args.plot:
        from pcmodel.timeline import plot_timeline

        figure = plot_timeline(summary, title=f"pcmodel demo: {total} calls on {args.workers} workers")
        figure.savefig(args.plot, dpi=110)
        print(f"timeline saved to {args.plot}")
    if args.json:
        print(json.dumps(summary.scalars()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: `sys.argv[1:]`); return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["worker"]:
        try:
            from pcmodel.broker import worker_main
        except ImportError as error:
            print(f"pcmodel worker: {error}", file=sys.stderr)
            return 1
        return worker_main(arguments[1:])
    if arguments[:1] == ["serve-api"]:
        try:
            from pcmodel.carapi import serve_main
        except ImportError as error:
            print(f"pcmodel serve-api: {error}", file=sys.stderr)
            return 1
        return serve_main(arguments[1:])
    parser = _parser()
    args = parser.parse_args(arguments)
    if args.command == "demo":
        try:
            return _demo(args, parser)
        except KeyboardInterrupt:
            print("interrupted: the job was cancelled", file=sys.stderr)
            return 130
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
