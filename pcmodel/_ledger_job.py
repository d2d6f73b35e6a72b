"""A job's book of outcomes: its ledger (resume, rerun), its dead letters, `on_retry_exhausted`.

The controller makes one `JobBook` for a job with a ledger, an `on_retry_exhausted` hook,
retries or a broker, and puts it on the job's path in two places, whatever carries the items:

- around each params source (`sources`): every item gets its key (`key=`, by default its
  canonical JSON), and an item the ledger says is done is skipped (counted in `skipped`)
  instead of produced. With `rerun="failed"` only the items recorded as failed go through;
- after the result handler's `on_task_complete` (`settle`): the outcome goes to the ledger's
  writer thread, a dead letter is counted and handed to `on_retry_exhausted`.

Recording after the callback means a crash can never leave an item marked done whose
`on_task_complete` did not run: at worst an item runs again (at-least-once).

A key is computed once, before the call (a function that changes its params does not change
its key), and found again by the params object's identity: the object is alive from the
moment it is produced until its result is settled, since the work item and then the result
hold it. Only a stop leaves keys behind (items taken back), and after a stop nothing more is
produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sqlite3
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from pcmodel._ledger_file import LedgerError, begin_run, connect, function_name, load_keys
from pcmodel._ledger_keys import canonical_key, error_text, params_json, shown, unstorable
from pcmodel._ledger_lock import release_lock
from pcmodel._ledger_writer import LedgerWriter
from pcmodel.records import TaskResult
from pcmodel.spec import JobSpec
from pcmodel.stopping import JobControl, raise_if_stopping

__all__ = ["JobBook"]

logger = logging.getLogger("pcmodel")


class JobBook:
    """One job's book of outcomes (see the module). Only the controller makes one."""

    def __init__(self, spec: JobSpec) -> None:
        self._callback_hook = spec.on_retry_exhausted
        self._max_attempts = 1 + (spec.retry.times if spec.retry is not None else 0)
        self._control: JobControl | None = None
        self._loop = asyncio.get_running_loop()
        self.skipped = 0
        """Items the ledger let pass by."""
        self.dead_letters = 0
        """Failed items that used every attempt they were allowed."""
        self.hook_errors = 0
        """Exceptions `on_retry_exhausted` raised."""
        self._writer: LedgerWriter | None = None
        self._put: Callable[[tuple[Any, ...]], None] | None = None
        self._key: Callable[[Any], Any] = spec.key if spec.key is not None else canonical_key
        self._default_key = spec.key is None
        self.repeated = 0
        """Items skipped because an earlier item of this run had their key (in `skipped` too)."""
        self._seen: set[str] = set()
        self._listed: set[str] = set()
        self._run_listed = spec.rerun == "failed"
        self._keys: dict[int, str] = {}
        self._more_keys: dict[int, list[str]] = {}
        self._read = 0
        self._run = 0
        if spec.ledger is not None:
            path = spec.ledger.path
            connection = connect(path, create=True)
            try:
                self._run, lock = begin_run(
                    connection,
                    path,
                    function_name(spec.function),
                    spec.clock,
                    spec.rerun,
                    allow_other_function=spec.ledger.allow_other_function,
                )
            except BaseException:
                connection.close()
                raise
            try:
                self._listed = load_keys(connection, path, failed_only=self._run_listed)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the job does not start: give the lock back
                    connection.execute("BEGIN IMMEDIATE")
                    release_lock(connection, lock)
                    connection.execute("COMMIT")
                connection.close()
                raise
            if self._run_listed and not self._listed:
                logger.warning(
                    "rerun='failed': the ledger %r records no failed item, so nothing will run", str(path)
                )
            self._writer = LedgerWriter(connection, path, self._run, self._loop, self._disk_failed, lock)
            self._put = self._writer.put

    @classmethod
    def open(cls, spec: JobSpec) -> JobBook | None:
        """The book `spec` needs, its ledger opened and checked; None if it needs none.

        A job without retries, ledger, hook or broker needs none: each of its failures used
        its one attempt, so its dead letters are its failures less the cancelled calls.

        Raises:
            LedgerError: the ledger file cannot be used (before anything starts).
        """
        if (
            spec.ledger is None
            and spec.on_retry_exhausted is None
            and spec.retry is None
            and spec.broker is None
        ):
            return None
        return cls(spec)

    def attach(self, control: JobControl) -> None:
        """The job's stop state: a stop's cancels are not outcomes, and a failing disk stops the job."""
        self._control = control

    # -- before the producers -----------------------------------------------------------------

    def sources(
        self, sources: tuple[Iterable[Any] | AsyncIterable[Any], ...]
    ) -> tuple[Iterable[Any] | AsyncIterable[Any], ...]:
        """Each source, keyed and filtered by the ledger; as they are without a ledger."""
        if self._writer is None:
            return sources
        return tuple(
            _KeyedAsyncSource(self, source) if isinstance(source, AsyncIterable) else self._keyed(source)
            for source in sources
        )

    def _keyed(self, source: Iterable[Any]) -> Iterator[Any]:
        admit = self.admit
        for params in source:
            if admit(params):
                yield params

    def admit(self, params: Any) -> bool:
        """Key `params`; True if the job is to run it (its key noted), False if it is skipped.

        Raises:
            TypeError, ValueError: `params` cannot be keyed (the message names the item). A
            producer takes it as its source's error: producing stops, the job ends with
            `stop_reason == "source_error"`.
        """
        self._read += 1
        try:
            key = self._key(params)
        except Exception as error:
            if self._default_key:
                raise TypeError(
                    f"item {self._read} of the params, {shown(params)}, has no key: the ledger keys "
                    f"an item by its canonical JSON, and {error}; pass key= a function that turns "
                    "such params into a str"
                ) from error
            raise ValueError(
                f"key= raised on item {self._read} of the params, {shown(params)}: {error!r}"
            ) from error
        if type(key) is not str:
            raise TypeError(
                f"key= must return a str, got {shown(key)} ({type(key).__name__}) for item "
                f"{self._read} of the params, {shown(params)}"
            )
        if not self._default_key and (at := unstorable(key)) is not None:  # the default is ASCII
            raise ValueError(
                f"key= returned {shown(key)} for item {self._read} of the params, {shown(params)}: "
                f"its character {at} is a lone surrogate, which the ledger's file (UTF-8) cannot "
                "hold; make key= return text without one (for a file name from os.fsdecode, say, "
                "os.fsencode(name).decode('utf-8', 'backslashreplace'))"
            )
        if key in self._seen:
            self._repeated_key(params, key)
            return False
        if (key in self._listed) is not self._run_listed:
            self.skipped += 1
            return False
        self._seen.add(key)
        ident = id(params)
        if ident in self._keys:  # the same object produced twice, both in flight
            self._more_keys.setdefault(ident, []).append(key)
        else:
            self._keys[ident] = key
        return True

    def _repeated_key(self, params: Any, key: str) -> None:
        """An item whose key an earlier item of this run had: skipped, counted, the first one logged.

        A ledger keeps one outcome per key, so the item is the same item as far as the ledger
        knows: it is done (or being done) in this run already. Two items that only share a key
        by mistake (a `key=` that tells them apart too little) would lose one of them; the
        warning says so, and the run's count of them is logged at its end.
        """
        self.skipped += 1
        self.repeated += 1
        if self.repeated == 1:
            logger.warning(
                "item %d of the params, %s, has the key %s of an earlier item of this job: it is "
                "skipped, as the ledger keeps one outcome per key (if the two are different items, "
                "give key= a function that tells them apart); further ones are only counted",
                self._read,
                shown(params),
                shown(key),
            )

    def _key_of(self, params: Any) -> str | None:
        """The key noted when `params` was admitted (None if it cannot be found or made)."""
        ident = id(params)
        if not self._more_keys:  # the common case: one dict pop
            key = self._keys.pop(ident, None)
            if key is not None:
                return key
        more = self._more_keys.get(ident)
        if more:
            noted = more.pop()
            if not more:
                del self._more_keys[ident]
            return noted
        if ident in self._keys:
            return self._keys.pop(ident)
        # A carrier that handed back other params than it was given: key them now.
        made: object = None
        with contextlib.suppress(Exception):
            made = self._key(params)
        if not isinstance(made, str):
            logger.error("the ledger cannot key the params of a result, %s: not recorded", shown(params))
            return None
        return made

    # -- after the result handler's callback ----------------------------------------------------

    def settle(self, result: TaskResult) -> Awaitable[None] | None:
        """Record `result`, count it if it is a dead letter; the hook's call to await, if any.

        A result that succeeded takes the short path: its key back, and `(key, result)` to the writer.
        """
        if result.error is not None:
            return self._settle_failure(result, result.error)
        put = self._put
        if put is not None and (key := self._key_of(result.params)) is not None:
            if self._default_key:
                put((key, result))  # the writer thread makes the row (`LedgerWriter.rows`)
            else:
                put(
                    (
                        key, params_json(result.params), True, None, None, result.attempts,
                        result.worker, result.enqueued_at, result.started_at, result.finished_at,
                        False, self._run, result.task_id,
                    )
                )  # fmt: skip
        return None

    def _settle_failure(self, result: TaskResult, error: BaseException) -> Awaitable[None] | None:
        key = self._key_of(result.params) if self._put is not None else None
        control = self._control
        if control is not None and control.is_stop_cancel(error):
            # A stop (any: fail-fast, `stop(graceful=False)`, ...) cancelled the call: that is
            # no outcome of the item. Not recorded, no dead letter, no hook: it runs on resume.
            return None
        dead = result.attempts >= self._max_attempts
        if self._put is not None and key is not None:
            params = key if self._default_key else params_json(result.params)
            error_type, message = error_text(error)
            self._put(
                (
                    key, params, False, error_type, message, result.attempts, result.worker,
                    result.enqueued_at, result.started_at, result.finished_at, dead, self._run, result.task_id,
                )
            )  # fmt: skip
        if not dead:
            return None
        self.dead_letters += 1
        return None if self._callback_hook is None else self._call_hook(result)

    async def _call_hook(self, result: TaskResult) -> None:
        """`on_retry_exhausted(result)`, sync or async; its errors counted, like a callback's."""
        assert self._callback_hook is not None
        try:
            outcome = self._callback_hook(result)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # noqa: BLE001 - a failing hook is counted, never fatal
            self._hook_failed(result)
        except BaseException as error:  # noqa: BLE001 - sorted out by raise_if_stopping
            raise_if_stopping(error)
            self._hook_failed(result)

    def _hook_failed(self, result: TaskResult) -> None:
        self.hook_errors += 1
        if self.hook_errors == 1:
            logger.exception(
                "on_retry_exhausted raised on task %d; the job goes on (further errors are only "
                "counted, in JobSummary.callback_errors)",
                result.task_id,
            )

    # -- the end --------------------------------------------------------------------------------

    def _disk_failed(self, error: LedgerError) -> None:
        """From the writer thread: the ledger cannot record, so stop the job (gracefully)."""

        def stop() -> None:
            if self._control is not None:
                self._control.stop("stop", error, drain=True)

        with contextlib.suppress(RuntimeError):  # the loop closed: the job is over anyway
            self._loop.call_soon_threadsafe(stop)

    def close(self) -> None:
        """Write what is left to the ledger and close it (at the job's end, however it ends).

        If an outcome could not be written, the summary says so, even when that happened in
        this last write, after the job stopped listening for stops: the job's `stop_reason`
        becomes "stop" (unless it stopped for another reason already) and its `error` the
        `LedgerError`; a job that stopped with an error of its own keeps that one, and the
        `LedgerError` is added to it as a note.
        """
        if self._writer is None:
            return
        if self.repeated > 1:
            logger.warning(
                "%d items repeated the key of an earlier item of this job and were skipped "
                "(counted in JobSummary.skipped)",
                self.repeated,
            )
        self._writer.skipped = self.skipped
        failure = self._writer.close()
        control = self._control
        if failure is None or control is None or control.error is failure:
            return
        if control.error is None:
            control.reason = control.reason or "stop"
            control.error = failure
        else:
            control.error.add_note(f"and then: {failure}")


class _KeyedAsyncSource:
    """An async source, keyed and filtered by a `JobBook` (a class, not an async generator:
    a producer stopped mid-source would leave a generator waiting to be finalized)."""

    def __init__(self, book: JobBook, source: AsyncIterable[Any]) -> None:
        self._book = book
        self._source = source
        self._iterator: AsyncIterator[Any] | None = None

    def __aiter__(self) -> _KeyedAsyncSource:
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = aiter(self._source)
        while True:
            params = await anext(self._iterator)
            if self._book.admit(params):
                return params
