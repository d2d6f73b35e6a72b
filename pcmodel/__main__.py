"""The command line: `python -m pcmodel demo` (also installed as `pcmodel`).

`demo` runs the write-up's job, simulated API calls of 0-2 s each, through the
producer-consumer pipeline, printing a line per completed task and the job's figures.
`ledger PATH` reports what a job's ledger holds (see `pcmodel.ledger`).
`serve-api` and `worker` are handed to `pcmodel.carapi` and `pcmodel.broker`.

Whatever a user types, an error is one line on stderr: a bad option exits with code 2
(checked before any job starts, `--plot`'s path included), a failure while running with 1,
and Ctrl-C with 130 ("pcmodel demo: interrupted"), never with a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pcmodel import __version__
from pcmodel._validate import MAX_WORKERS, check_int
from pcmodel.clock import Clock
from pcmodel.records import JobSummary, TaskResult
from pcmodel.runner import run_job
from pcmodel.stopping import StopSignal
from pcmodel.timeline import describe
from pcmodel.workloads import seed_job

__all__ = ["main"]

_TRACE_LIMIT = 100_000
# The demo makes every call up front (seed_job), and each worker is a task: past these sizes a
# typo would eat the machine's memory before the first line is printed.
_MAX_TASKS = 1_000_000
_COMMANDS = ("demo", "ledger", "serve-api", "worker")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with a pointer to `--help`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    demo.add_argument(
        "--tasks",
        type=int,
        default=10,
        metavar="N",
        help=f"number of calls, at most {_MAX_TASKS} (default 10)",
    )
    demo.add_argument(
        "--workers",
        type=int,
        default=5,
        metavar="W",
        help=f"worker tasks, at most {MAX_WORKERS} (default 5)",
    )
    demo.add_argument(
        "--queue-size",
        type=int,
        default=100,
        metavar="Q",
        help="work queue capacity, 0 = unbounded (default 100)",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random waits (default 0)")
    demo.add_argument("--virtual", action="store_true", help="run in virtual time: instant, with exact times")
    demo.add_argument(
        "--plot",
        metavar="PATH",
        help="save the timeline as an image at PATH; its suffix picks the format (.png, .svg, .pdf...), "
        "PNG without one",
    )
    demo.add_argument("--json", action="store_true", help="end with the summary's figures as one JSON object")
    demo.set_defaults(command_parser=demo)  # its errors name 'pcmodel demo'
    ledger = commands.add_parser(
        "ledger",
        help="report what a job's ledger holds: counts, the commonest errors, the slowest items",
        description=(
            "Print a short report of a ledger a job wrote with ledger=PATH: how many items it "
            "holds, ok and failed, the commonest types of error and the slowest items."
        ),
    )
    ledger.add_argument("path", metavar="PATH", help="the ledger's SQLite file")
    ledger.add_argument(
        "--errors", type=int, default=5, metavar="N", help="how many types of error to list (default 5)"
    )
    ledger.add_argument(
        "--slowest", type=int, default=5, metavar="N", help="how many slow items to list (default 5)"
    )
    ledger.set_defaults(command_parser=ledger)
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


def _plot_target(path: str) -> tuple[Path, str]:
    """Where `--plot` saves the timeline, and in which format, checked before the job runs.

    Raises:
        ValueError: matplotlib cannot write the suffix, or the folder is missing or not writable.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    if not path.strip():
        raise ValueError(f"--plot needs a file name, got {path!r}")
    target = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = target.suffix[1:].lower()
    if suffix and suffix not in formats:
        known = ", ".join(f".{name}" for name in sorted(formats))
        raise ValueError(
            f"--plot cannot write {target.suffix!r} images, got {path!r}: end it in one of {known}"
        )
    folder = target.parent
    try:
        if target.is_dir():
            raise ValueError(f"--plot must name a file, got the folder {path!r}")
        if not folder.is_dir():
            problem = "is not a folder" if folder.exists() else "does not exist"
            raise ValueError(
                f"--plot's folder {str(folder)!r} {problem}, got {path!r}: pick a path in an existing folder"
            )
    except OSError as error:  # a name too long, a folder we may not look into
        raise ValueError(f"--plot cannot use {path!r}: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--plot's folder {str(folder)!r} is not writable, got {path!r}")
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"--plot's file {path!r} exists and is not writable")
    # No suffix: a PNG at exactly PATH (matplotlib would add ".png" to the name).
    return target, suffix or "png"


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        check_int("--tasks", args.tasks, 0)
        if args.tasks > _MAX_TASKS:
            raise ValueError(
                f"--tasks must be <= {_MAX_TASKS}, got {args.tasks}: the demo makes every call up "
                "front; for more, give pcmodel.run_job a generator"
            )
        check_int("--workers", args.workers, 1)
        if args.workers > MAX_WORKERS:
            raise ValueError(f"--workers must be <= {MAX_WORKERS}, got {args.workers}: each worker is a task")
        check_int("--queue-size", args.queue_size, 0)
        plot = None if args.plot is None else _plot_target(args.plot)
        job = seed_job(args.tasks, seed=args.seed)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    clock: Clock = "virtual" if args.virtual else "real"
    total = len(job)
    done = 0
    width = len(str(total))
    # A reader that goes away (`pcmodel demo | head -3`) stops the job instead of failing
    # every later callback; main() then exits quietly.
    stop = StopSignal()
    reader_gone = False

    def show(result: TaskResult) -> None:
        nonlocal done, reader_gone
        done += 1
        outcome = f"-> {result.value}" if result.ok else f"failed: {result.error!r}"
        try:
            print(
                f"[{done:>{width}}/{total}] task {result.task_id:>{width}} {outcome} in {result.duration:.3f} s "
                f"(worker {result.worker}, done at {result.finished_at:.3f} s)",
                flush=True,
            )
        except BrokenPipeError:
            reader_gone = True
            stop.set()

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
        stop=stop,
        # The ideal makespan needs every duration; past this size keep memory flat instead.
        trace=plot is not None or total <= _TRACE_LIMIT,
    )
    if reader_gone:
        raise BrokenPipeError
    print(describe(summary))
    print(
        f"{summary.succeeded} of {summary.tasks} calls succeeded; "
        f"{summary.speedup:.1f}x faster than one call after another"
    )
    if plot is not None:
        from pcmodel.timeline import plot_timeline

        target, image_format = plot
        figure = plot_timeline(summary, title=f"pcmodel demo: {total} calls on {args.workers} workers")
        try:
            figure.savefig(target, dpi=110, format=image_format)
        except OSError as error:  # checked up front, but a disk can fill or a folder vanish
            print(f"pcmodel demo: cannot save the timeline to {args.plot}: {error}", file=sys.stderr)
            return 1
        print(f"timeline saved to {args.plot}")
    if args.json:
        print(json.dumps(summary.scalars()))
    return 0


def _ledger_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Print what the ledger at `args.path` holds; a file that is no ledger is one line, exit 2."""
    from pcmodel.ledger import Ledger, LedgerError

    try:
        check_int("--errors", args.errors, 0)
        check_int("--slowest", args.slowest, 0)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    try:
        ledger = Ledger(args.path)
        function = ledger.function
        counts = ledger.counts()
        errors = ledger.common_errors(args.errors)
        slowest = ledger.slowest(args.slowest)
    except (LedgerError, TypeError, ValueError) as error:
        print(f"pcmodel ledger: {error}", file=sys.stderr)
        return 2
    runs = counts["runs"]
    print(f"{args.path}: the ledger of {function or 'no job yet'}, {runs} run{'s' * (runs != 1)}")
    print(
        f"{counts['items']} items: {counts['ok']} ok, {counts['failed']} failed "
        f"({counts['dead_letters']} dead letters, failed after every retry)"
    )
    if errors:
        print("commonest errors:")
        width = len(str(errors[0].items))
        for common in errors:
            print(f"  {common.items:>{width}}  {common.error_type}  e.g. {_cut(common.example)}")
    if slowest:
        print("slowest items:")
        for row in slowest:
            outcome = "ok" if row["ok"] else f"failed: {row['error_type']}"
            print(
                f"  {row['duration']:.3f} s  {_cut(row['key'])}  ({outcome}, {_attempts(row['attempts'])}, run {row['run']})"
            )
    return 0


def _attempts(count: int) -> str:
    return f"{count} attempt{'s' * (count != 1)}"


def _cut(text: str, limit: int = 70) -> str:
    """`text` on one line, at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: `sys.argv[1:]`); return the exit code.

    A bad option exits (SystemExit) with code 2 and a one-line message; Ctrl-C returns 130
    after one line on stderr.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    name = f"pcmodel {arguments[0]}" if arguments[:1] and arguments[0] in _COMMANDS else "pcmodel"
    _tolerant_output()
    try:
        return _main(arguments)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        # Whoever read the output went away: stop quietly, as the Python docs advise.
        _drop_stdout()
        return 1
    except OSError as error:  # say, stdout on a full disk: one line, not a traceback
        _drop_stdout()
        with contextlib.suppress(OSError):
            print(f"{name}: {error}", file=sys.stderr, flush=True)
        return 1


def _drop_stdout() -> None:
    """Point stdout at devnull, so that the flush at exit does not fail a second time."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _tolerant_output() -> None:
    """Let a terminal that cannot show a character ("·", say, on an ASCII one) print "?" instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors="replace")


def _main(arguments: list[str]) -> int:
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
        return _demo(args, args.command_parser)
    if args.command == "ledger":
        return _ledger_report(args, args.command_parser)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
