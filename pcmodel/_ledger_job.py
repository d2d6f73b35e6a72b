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
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final

from pcmodel._ledger_file import LedgerError, LedgerWriter, begin_run, connect, function_name, load_keys
from pcmodel.records import TaskResult
from pcmodel.spec import JobSpec
from pcmodel.stopping import Interrupted, JobControl, raise_if_stopping

__all__ = ["JobBook", "canonical_key", "error_text"]

logger = logging.getLogger("pcmodel")

_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _made_once() -> Callable[[Any], str]:
    """The canonical JSON encoder, made once, for every call of `canonical_key`.

    `json.dumps(params, sort_keys=True, ...)`, and even `JSONEncoder.encode`, make a new C
    encoder on every call: about half the cost of keying a small item. This is the C encoder
    `JSONEncoder.iterencode` makes, made once, without its table of the containers being
    encoded (a table shared across calls would keep the entries of a call that raised): a
    circular structure then raises RecursionError instead of ValueError. Measured: 1.1 us
    against 2.0 us per dict of three fields; the ledger's share of a job of 1 ms calls fell
    from 13% to 8% (benchmarks/ledger.py). Where the C encoder is missing or differs (the
    probe below, also `tests/test_ledger_keys.py`), `JSONEncoder.encode` does it.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _CANONICAL.encode
    try:
        encode = make(
            None, _CANONICAL.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
        )
        probe = {"b": [1, 2.5, None, True, "\u00e9", float("nan")], "a": {"z": 1, "y": ()}}
        if "".join(encode(probe, 0)) != _CANONICAL.encode(probe):
            return _CANONICAL.encode
    except Exception:  # noqa: BLE001 - another Python's C encoder: use the plain one
        return _CANONICAL.encode

    def canonical(params: Any) -> str:
        return "".join(encode(params, 0))

    return canonical


canonical_key: Final = _made_once()
"""`json.dumps(params, sort_keys=True, separators=(",", ":"))`: the default key of an item."""


def _shown(value: Any, limit: int = 80) -> str:
    """The repr of `value`, cut to `limit` characters, even if its repr raises."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a message must not fail on a hostile repr
        return f"<a {type(value).__name__} whose repr raised>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_text(error: BaseException) -> tuple[str, str]:
    """The type name (qualified unless built-in) and the message of `error`, as a ledger keeps them."""
    kind = type(error)
    if kind.__module__ == "pcmodel.broker.messages":  # imported only then: broker jobs only
        from pcmodel.broker.messages import RemoteError

        if isinstance(error, RemoteError):  # a worker process's error: keep its type's name
            return error.type_name, error.message
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    try:
        message = str(error)
    except (KeyboardInterrupt, SystemExit) as interrupt:
        raise Interrupted(interrupt) from None
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not lose the outcome
        message = f"<str() of this {kind.__name__} raised>"
    return name, message


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
                self._run = begin_run(
                    connection,
                    path,
                    function_name(spec.function),
                    spec.clock,
                    spec.rerun,
                    allow_other_function=spec.ledger.allow_other_function,
                )
                self._listed = load_keys(connection, path, failed_only=self._run_listed)
            except BaseException:
                connection.close()
                raise
            self._writer = LedgerWriter(connection, path, self._run, self._loop, self._disk_failed)
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
                    f"item {self._read} of the params, {_shown(params)}, has no key: the ledger keys "
                    f"an item by its canonical JSON, and {error}; pass key= a function that turns "
                    "such params into a str"
                ) from error
            raise ValueError(
                f"key= raised on item {self._read} of the params, {_shown(params)}: {error!r}"
            ) from error
        if type(key) is not str:
            raise TypeError(
                f"key= must return a str, got {_shown(key)} ({type(key).__name__}) for item "
                f"{self._read} of the params, {_shown(params)}"
            )
        if (key in self._listed) is not self._run_listed:
            self.skipped += 1
            return False
        ident = id(params)
        if ident in self._keys:  # the same object produced twice, both in flight
            self._more_keys.setdefault(ident, []).append(key)
        else:
            self._keys[ident] = key
        return True

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
            logger.error("the ledger cannot key the params of a result, %s: not recorded", _shown(params))
            return None
        return made

    # -- after the result handler's callback ----------------------------------------------------

    def settle(self, result: TaskResult) -> Awaitable[None] | None:
        """Record `result`, count it if it is a dead letter; the hook's call to await, if any.

        A result that succeeded takes the short path: its key back, its row on the queue.
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
                        key, _params_json(result.params), True, None, None, result.attempts,
                        result.worker, result.enqueued_at, result.started_at, result.finished_at,
                        False, self._run, result.task_id,
                    )
                )  # fmt: skip
        return None

    def _settle_failure(self, result: TaskResult, error: BaseException) -> Awaitable[None] | None:
        key = self._key_of(result.params) if self._put is not None else None
        if isinstance(error, asyncio.CancelledError):
            control = self._control
            if control is not None and control.reason == "fail_fast":
                return None  # a stop cancelled the call: not an outcome; it runs again on resume
        dead = result.attempts >= self._max_attempts
        if self._put is not None and key is not None:
            params = key if self._default_key else _params_json(result.params)
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
        """Write what is left to the ledger and close it (at the job's end, however it ends)."""
        if self._writer is not None:
            self._writer.skipped = self.skipped
            self._writer.close()


def _params_json(params: Any) -> str:
    """`params` as JSON for the ledger's `params` column; what JSON cannot carry, as its repr."""
    try:
        return canonical_key(params)
    except Exception:  # noqa: BLE001 - params a custom key= handles need not be JSON
        return canonical_key(_shown(params, limit=10_000))


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
