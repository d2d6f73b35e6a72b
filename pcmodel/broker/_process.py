"""The state the pieces of one worker process share: its jobs, the items it holds, its counts.

A worker process (`pcmodel.broker.worker`) is a few tasks over this one state: the fetcher
(`_fetch`, taking over stopped processes' items with `_reclaim`) takes items and puts them in
`buffer`; the slots (`_slots`) run them and put their results in `outbox`; the writer
(`_writer`) writes the results and acknowledges the items; the keeper (`_keeper`) keeps the
items claimed and watches the jobs. Each piece is a module of functions over `ProcessState`;
this module holds no loop of its own, only the state and the two steps more than one piece
takes: `take` an item, `forget` a job that ended.

`Backoff` is how every piece waits while Redis cannot be reached; its pauses go through the
process's `pause`, a seam that tests replace to count the pauses without waiting them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from pcmodel._validate import is_async_callable
from pcmodel.broker._redis import JobKeys, Redis
from pcmodel.broker.messages import JobSettings
from pcmodel.policies import RateLimiter
from pcmodel.worker import Policies, in_threads

if TYPE_CHECKING:
    from pcmodel.broker._tuning import ProcessGate

__all__ = ["RETRY_FIRST", "Backoff", "Item", "Job", "ProcessState", "WorkerStats", "process_name"]

logger = logging.getLogger("pcmodel.broker")

RETRY_FIRST: Final = 0.1
"""Seconds before the first retry after losing Redis; each failed try doubles the pause..."""
_RETRY_MAX: Final = 5.0
"""...up to this many seconds."""
_RETRY_WARN_EVERY: Final = 12
"""While Redis stays lost, one warning per this many failed tries (about a minute at the cap)."""


@dataclass(slots=True)
class WorkerStats:
    """What a worker process did, reported when it stops."""

    process: str
    """Its consumer name, `host:pid:token`."""
    queue: str
    """The queue it served."""
    workers: int
    """Its number of worker slots."""
    items: int = 0
    """Results it wrote."""
    failed: int = 0
    """Of those, items whose function raised (or that could not run)."""
    malformed: int = 0
    """Messages it could not read, reported as failed items."""
    taken_over: int = 0
    """Items it took over from processes that stopped before finishing them."""


def process_name() -> str:
    """A worker process's default consumer name: `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Backoff:
    """Pauses between tries of one loop while Redis cannot be reached: exponential, capped.

    Retrying at once would spin, and a fixed short pause logs a warning several times a second
    for as long as Redis is gone. The pause doubles from 0.1 s up to 5 s; the first failure is
    logged, then one in twelve, then the recovery.
    """

    __slots__ = ("_pause", "failures", "what")

    def __init__(self, what: str, pause: Callable[[float], Awaitable[None]]) -> None:
        self.what = what
        self.failures = 0
        self._pause = pause

    async def pause(self, error: BaseException) -> None:
        """Log the failure if it is due; wait before the next try."""
        self.failures += 1
        delay = min(RETRY_FIRST * 2 ** min(self.failures - 1, 10), _RETRY_MAX)
        if self.failures % _RETRY_WARN_EVERY == 1:
            logger.warning(
                "cannot %s (%s); retrying (%d failed tries, next in %g s)",
                self.what,
                error,
                self.failures,
                delay,
            )
        await self._pause(delay)

    def succeeded(self) -> None:
        """A try went through: the next failure starts again from the shortest pause."""
        if self.failures:
            logger.warning("can %s again, after %d failed tries", self.what, self.failures)
            self.failures = 0


class Job:
    """One job on the queue, as this process sees it."""

    __slots__ = (
        "claim_cursor",
        "gate",
        "gone",
        "halted",
        "inflight",
        "keys",
        "knobs",
        "limiter",
        "next_keepalive",
        "next_reclaim",
        "policies",
        "problem",
        "rate_changes",
        "running",
        "settings",
        "workers",
        "written_soon",
    )

    def __init__(self, keys: JobKeys, settings: JobSettings | None, problem: str | None) -> None:
        self.keys = keys
        self.settings = settings
        self.problem = problem
        """Why the job's settings could not be read; its items then fail without running."""
        self.policies: Policies | None = None
        self.limiter: RateLimiter | None = None
        """The job's rate limit now (its settings', or the one its knobs set since)."""
        self.gate: ProcessGate | None = None
        """Its calls' gate in this process, once it needs one (see `_tuning`)."""
        self.knobs: object = None
        self.rate_changes = 0
        """Which of the rates set on the running job `limiter` keeps (0: the job's own)."""
        """Its knobs as last read (the meta hash's `knobs` field), applied."""
        self.workers: int | None = None
        """The calls at once it asks of each process by hand (`JobHandle.set_workers`); None
        as it started."""
        self.inflight: set[bytes] = set()
        """Entry ids this process holds: waiting for a slot, running, or waiting for the writer."""
        self.running: set[asyncio.Task[Any]] = set()
        self.written_soon = 0
        """Of `inflight`, the items that ran and whose results wait for the writer."""
        self.halted = False
        """The controller stopped the job fail-fast: cancel its calls, start none."""
        self.gone = False
        """The job ended (or its controller went away): drop its items, write nothing."""
        self.claim_cursor = b"0-0"
        self.next_keepalive = 0.0
        self.next_reclaim = 0.0

    @property
    def visibility(self) -> float:
        return self.settings.visibility_timeout if self.settings is not None else 30.0


class Item(NamedTuple):
    """An item this process holds, from the fetcher to a slot."""

    job: Job
    entry_id: bytes
    fields: Any
    """The entry as Redis returned it, read by the slot (it may be malformed)."""
    deliveries: int
    """How many times Redis has handed this entry to a worker process, this time included."""


class ProcessState:
    """The state the pieces of one worker process share (see the module docstring)."""

    def __init__(
        self,
        client: Redis,
        function: Callable[[Any], Any],
        *,
        queue: str,
        workers: int,
        name: str,
        poll: float,
        pause: Callable[[float], Awaitable[None]],
    ) -> None:
        self.client = client
        self.queue = queue
        self.base_workers = workers
        """`--workers`: the slots this process runs whatever its jobs ask."""
        self.workers = workers
        """Its slots now: `--workers`, or more while a job asks for more (`resize`)."""
        self.on_resize: Callable[[], None] | None = None
        """Called when `workers` changed (by `serve_worker`, which starts the new slots and
        ends the idle ones above the new number)."""
        self.idle_slots: set[int] = set()
        """The slots waiting for an item: one above `workers` may end at once."""
        self.name = name
        self.poll = poll
        self.pause = pause
        """Wait this many seconds between two tries (a seam: see the module docstring)."""
        self.stats = WorkerStats(name, queue, workers)
        self.executor: ThreadPoolExecutor | None = None
        if is_async_callable(function):
            self.function = function
        else:
            # A plain function runs in threads, at most one per slot, as in a local job.
            self.executor = ThreadPoolExecutor(workers, thread_name_prefix="pcmodel-worker")
            self.function = in_threads(function, self.executor)
        self.plain_function = None if self.executor is None else function
        self.jobs: dict[str, Job] = {}
        self.unreadable: set[str] = set()
        self.buffer: asyncio.Queue[Any] = asyncio.Queue()
        """Items taken, waiting for a slot (then `STOP`, one per slot)."""
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        """`(job, entry id, result message)` waiting for the writer (then `STOP`)."""
        # Invariant: `outstanding` counts the items taken (read or claimed) and not yet handed
        # to the writer; the fetcher never lets it exceed `workers`.
        self.outstanding = 0
        self.wake = asyncio.Event()
        """Set by a slot that freed itself, for a fetcher waiting for room."""
        self.offset = 0.0
        """Seconds to add to this process's clock to read the server's (kept by the keeper)."""
        self.next_refresh = 0.0
        self.news_seen: bytes | str = b"0-0"
        """The last announcement of a new job this process read in the queue's news stream."""
        self.loop = asyncio.get_running_loop()

    def backoff(self, what: str) -> Backoff:
        """The growing pauses of one loop that cannot `what` while Redis is lost."""
        return Backoff(what, self.pause)

    def take(self, job: Job, entry_id: bytes, fields: Any, deliveries: int) -> None:
        """Hold an item and queue it for a slot."""
        job.inflight.add(entry_id)
        self.outstanding += 1
        self.buffer.put_nowait(Item(job, entry_id, fields, deliveries))

    def resize(self) -> None:
        """Run as many slots as the most any job asks of this process, `--workers` at least.

        Slots above the new number retire: at once if idle, else after their item (see
        `_slots`); none is cut short. So a job that asked for many slots gives their memory back
        when it asks for fewer, or ends.
        """
        asked = [job.workers for job in self.jobs.values() if job.workers is not None and not job.gone]
        workers = max([self.base_workers, *asked])
        if workers != self.workers:
            if self.executor is not None and self.plain_function is not None and workers > self.workers:
                # More slots need more threads: calls from now on go to a larger pool; the
                # calls in the old one finish there, and its threads end with them.
                self.executor.shutdown(wait=False)
                self.executor = ThreadPoolExecutor(workers, thread_name_prefix="pcmodel-worker")
                self.function = in_threads(self.plain_function, self.executor)
            self.workers = workers
            if self.on_resize is not None:
                self.on_resize()

    def forget(self, job_id: str) -> None:
        """The job ended: cancel its calls; its remaining items are dropped unanswered."""
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        job.gone = True
        for call in job.running:
            call.cancel()
        if job.gate is not None:
            job.gate.close()
        self.resize()
