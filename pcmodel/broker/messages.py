"""What travels through Redis: JSON only, and never code.

Three kinds of message, each a JSON object in one stream field or hash field:

- a **work item** (`m` in the work stream): `{"task": 7, "params": {...}}`;
- a **result** (a line of `r` in the result stream: a worker writes the results of one batch
  for one job in one entry, one JSON object per line): the task id, the stream entry it
  answers, the worker process and slot that ran it, when it started and finished (seconds on the Redis
  server's clock), how many calls it took, how many times it was delivered, and either
  `"value"` or `"error"` (with `"cancelled": true` when a fail-fast stop cancelled the call).
  A worker that could not read an entry, or gave it up unread after `max_deliveries`, reports
  it with no task id: the controller knows which task each entry it sent carries;
- the **job's settings** (`spec` in the job's meta hash): timeout, retries, rate limit and
  the crash-safety knobs.

Every message is read defensively: whatever bytes a stream holds (not JSON, nested 100,000
deep, fields missing or of the wrong type) become a `MalformedMessageError`, never another
exception. Nothing is pickled, and nothing in a message names code to import: a worker runs only the
function named on its own command line. Errors travel as their type's name, message and
traceback; the controller rebuilds a built-in exception (`ValueError`, `TimeoutError`, ...)
as itself and any other as a `RemoteError` that keeps the type's name and its bases' names.
Retry rules travel the same way, as exception type names matched against the raised
exception's class hierarchy, so a worker never imports a module a message names.

At about 500 lines this is still one concern, the wire format: the three kinds of message
share the defensive reading (`_loads`, the field checks), and splitting them would put the
rules for what a malformed entry is in three places.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import math
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, cast

from pcmodel.adaptive import Adaptive
from pcmodel.policies import Retry

__all__ = [
    "MalformedMessageError",
    "RemoteError",
    "ResultMessage",
    "WorkerLostError",
    "decode_error",
    "encode_error",
    "qualified_name",
]

_COMPACT: Final = json.JSONEncoder(separators=(",", ":"))
"""`json.dumps(..., separators=(",", ":"))` without a new encoder per call: two are made per
item (its work message and its result), and a made one saves about 1 us each."""
_DECODER: Final = json.JSONDecoder()

FORMAT_VERSION: Final = 2
"""Version of the messages' format (2: results in batches, one per line); a worker refuses the
settings of a job of another version, whose controller would not read its results."""
_TRACEBACK_LIMIT: Final = 4000
_RAW_PREVIEW: Final = 200


class RemoteError(Exception):
    """An exception raised in a worker process whose type is not a built-in one.

    The controller never imports a module a message names, so it cannot rebuild the original
    type; this keeps its name (`type_name`), the names of its classes (`type_names`, most
    derived first) and the worker's traceback (`remote_traceback`).

    Example:
        `result.error.type_names` holds `"pcmodel.workloads.PriceAPIError"` for a failed
        price call; `isinstance(result.error, RemoteError)` is True.
    """

    def __init__(
        self, type_name: str, message: str, type_names: tuple[str, ...] = (), remote_traceback: str = ""
    ):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        """The qualified name of the exception's type, like `mypackage.errors.QuotaError`."""
        self.message = message
        """`str()` of the original exception."""
        self.type_names = type_names or (type_name,)
        """Qualified names of the type and its bases, most derived first."""
        self.remote_traceback = remote_traceback
        """The traceback as the worker formatted it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.type_names, self.remote_traceback))


class MalformedMessageError(ValueError):
    """An entry of a job's streams that is not a message pcmodel wrote, or cannot be read.

    In the work stream: not JSON, nested too deep to read, or not `{"task": int, "params":
    ...}`; in the result stream: not a result message. Nobody crashes on one: the worker that
    took a malformed work entry reports it and goes on, and the controller counts every such
    entry once, in `BrokerJobSummary.malformed`, apart from the job's tasks.
    """

    def __init__(self, message: str, task: int | None = None) -> None:
        super().__init__(message)
        self.task = task
        """The task a result too deep to read says it answers (its leading `"task"` field), or
        None: a worker on a newer Python can write a value nested deeper than this side reads,
        and that task must still get an outcome."""


class WorkerLostError(RuntimeError):
    """An item was taken by workers that all stopped before finishing it, too many times.

    After `max_deliveries` deliveries an item is reported failed instead of being run again,
    so an item that kills its worker (out of memory, a crash in C code) cannot take down every
    worker in turn.
    """


# Errors the controller rebuilds by name, besides the built-in ones. Nothing is imported.
_KNOWN: Final[dict[str, type[BaseException]]] = {
    "asyncio.exceptions.CancelledError": asyncio.CancelledError,
    "pcmodel.broker.messages.MalformedMessageError": MalformedMessageError,
    "pcmodel.broker.messages.WorkerLostError": WorkerLostError,
}


def qualified_name(kind: type) -> str:
    """`module.QualName` of a class, the way errors and retry rules name types."""
    return f"{kind.__module__}.{kind.__qualname__}"


def encode_error(error: BaseException) -> dict[str, Any]:
    """An exception as JSON-ready data: type name, message, class names, traceback."""
    try:
        message = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the result
        message = f"<{type(error).__name__} with an unprintable message>"
    try:
        text = "".join(traceback.format_exception(error))
    except Exception:  # noqa: BLE001 - a traceback too deep to format must not lose the result
        text = f"<the traceback of {type(error).__name__} could not be formatted>"
    if len(text) > _TRACEBACK_LIMIT:
        text = "...\n" + text[-_TRACEBACK_LIMIT:]
    return {
        "type": qualified_name(type(error)),
        "message": message,
        "types": [qualified_name(kind) for kind in type(error).__mro__ if issubclass(kind, BaseException)],
        "traceback": text,
    }


def decode_error(data: object, where: str) -> BaseException:
    """Rebuild an exception from `encode_error`'s data; `where` names the worker, for a note."""
    if not isinstance(data, dict):
        return RemoteError("unknown", f"unreadable error data {data!r:.80}")
    type_name = str(data.get("type", "unknown"))
    message = str(data.get("message", ""))
    raw_types = data.get("types")
    type_names = tuple(str(name) for name in raw_types) if isinstance(raw_types, list) else (type_name,)
    remote_traceback = str(data.get("traceback", ""))
    error: BaseException | None = None
    kind = _KNOWN.get(type_name)
    module, _, name = type_name.rpartition(".")
    if kind is None and module == "builtins":
        candidate = getattr(builtins, name, None)
        # Only ordinary exceptions are rebuilt as themselves: a message must never plant a
        # KeyboardInterrupt or SystemExit in the job, nor a StopIteration, which asyncio
        # refuses to carry through a Future.
        if (
            isinstance(candidate, type)
            and issubclass(candidate, Exception)
            and candidate is not StopIteration
        ):
            kind = candidate
    if kind is not None:
        try:
            error = kind(message) if message else kind()
        except Exception:  # noqa: BLE001 - a type that needs other arguments: keep it by name
            error = None
    if error is None:
        error = RemoteError(type_name, message, type_names, remote_traceback)
    elif remote_traceback:
        error.add_note(f"raised in worker process {where}:\n{remote_traceback.rstrip()}")
    return error


def encode_work(task_id: int, params: Any) -> bytes:
    """A work item as the JSON text of the work stream's `m` field.

    Raises:
        TypeError, ValueError: `params` is not JSON-serialisable.
    """
    return _COMPACT.encode({"task": task_id, "params": params}).encode()


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A work item as a worker read it."""

    task_id: int
    params: Any


def decode_work(fields: object) -> WorkItem:
    """Read a work stream entry's fields.

    Raises:
        MalformedMessageError: saying what is wrong with the entry.
    """
    if not isinstance(fields, dict) or b"m" not in fields:
        raise MalformedMessageError("the work message has no 'm' field")
    raw = fields[b"m"]
    message = _loads(raw, "the work message")
    if not isinstance(message, dict):
        raise MalformedMessageError(f"the work message is not a JSON object: {preview(raw)}")
    task_id = message.get("task")
    if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 0:
        raise MalformedMessageError(f"the work message has no task id (an int >= 0): {preview(raw)}")
    if "params" not in message:
        raise MalformedMessageError(f"the work message has no params: {preview(raw)}")
    return WorkItem(task_id, message["params"])


def preview(raw: object) -> str:
    """A short printable view of raw message data."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "replace")
    elif isinstance(raw, dict):
        text = repr({preview(key): preview(value) for key, value in raw.items()})
    else:
        text = str(raw)
    return text if len(text) <= _RAW_PREVIEW else text[:_RAW_PREVIEW] + "..."


def _loads(raw: object, what: str) -> Any:
    """JSON text as data; anything unreadable (nested too deep included) as MalformedMessageError."""
    try:
        if isinstance(raw, bytes):
            # What json.loads does with bytes, less its guess at the encoding: pcmodel writes
            # UTF-8 (ASCII, in fact) only.
            return _DECODER.decode(raw.decode("utf-8"))
        return json.loads(raw)  # type: ignore[arg-type]
    except RecursionError:
        raise MalformedMessageError(f"{what} is nested too deep to read: {preview(raw)}") from None
    except (ValueError, TypeError) as error:
        raise MalformedMessageError(f"{what} is not JSON: {error}") from None


def _dumps(message: dict[str, Any]) -> bytes:
    return _COMPACT.encode(message).encode()


def encode_result(message: dict[str, Any]) -> bytes:
    """A result message as JSON text; a value that is not JSON becomes the item's error.

    `message` holds either `value` or `error` (already encoded). A value JSON cannot carry
    (a set, a custom object, a structure nested too deep) fails the item with a `TypeError`
    that says so, rather than losing it, pickling it, or taking the worker down.
    """
    try:
        return _dumps(message)
    except (TypeError, ValueError, RecursionError) as problem:
        value = message.pop("value", None)
        reason = "it is nested too deep" if isinstance(problem, RecursionError) else str(problem)
        message["error"] = encode_error(
            TypeError(
                f"the function returned {_short_repr(value)}, which JSON cannot carry back to the "
                f"controller ({reason}): return dicts, lists, strings, numbers, booleans or None"
            )
        )
        return _dumps(message)


def _short_repr(value: object) -> str:
    """`type value` in at most 80 characters, for a value whose repr may fail or never end."""
    try:
        text = repr(value)
    except (Exception, RecursionError):  # noqa: BLE001 - only for a message
        text = "<unprintable>"
    return f"{type(value).__name__} {text[:80]}"


_TASK_HEAD: Final = re.compile(rb'\{"task":(\d{1,18}),')
"""The start of a result message as `encode_result` writes it: the task id comes first."""
_MAX_SLOTS: Final = 1_000_000
"""More worker slots than any process has: a result claiming more is not a real one."""


class ResultMessage(NamedTuple):
    """A result stream entry as the controller read it: every field checked.

    A named tuple, not a dataclass: one is built per result on the controller's hot path.
    """

    task: int | None
    """The task id; None when the worker could not tell it (a work entry it could not read,
    or gave up on without reading): `entry` then says which entry the report is about."""
    entry: str
    """The work stream entry id the result answers."""
    process: str
    """The worker process that wrote it, `host:pid:token`."""
    slot: int
    """The worker slot that ran it, in `0 .. slots - 1`."""
    slots: int
    """The worker process's number of slots."""
    started: float
    """When the call started, on the Redis server's clock."""
    finished: float
    """When it finished, on the same clock."""
    attempts: int
    """Calls made, retries included (0 when the item did not run)."""
    deliveries: int
    """How many times the item was delivered to a worker."""
    value: Any
    """The function's return value, if it succeeded."""
    error: dict[str, Any] | None
    """The error, as `encode_error` made it; None if it succeeded."""
    cancelled: bool
    """True if a fail-fast stop of the job cancelled the call (or kept it from starting)."""


_RESULT_RULES: Final = (
    "task (an int >= 0, or null with an error), entry and process (strings), slot and slots "
    "(ints, 0 <= slot < slots), started and finished (finite numbers), attempts (an int >= 0), "
    "deliveries (an int >= 1), error (an object or null)"
)


def _is_time(value: object) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))


def encode_results(payloads: list[bytes]) -> bytes:
    """Result messages (`encode_result`'s) as one result stream entry's `r` field: one per line.

    A worker writes every result of a batch for one job in one entry: one `XADD` per batch
    instead of one per item, and one entry for the controller to read and delete. JSON text as
    `encode_result` writes it never holds a raw newline, so the lines split back unambiguously.
    """
    return b"\n".join(payloads)


def decode_results(fields: object) -> list[ResultMessage | MalformedMessageError]:
    """Read a result stream entry's fields: each line's result message, or why it is unreadable.

    One line that cannot be read spoils only itself: the others are results all the same.
    """
    if not isinstance(fields, dict) or b"r" not in fields:
        return [MalformedMessageError("the result message has no 'r' field")]
    raw = fields[b"r"]
    lines = raw.split(b"\n") if isinstance(raw, bytes) else [raw]
    messages: list[ResultMessage | MalformedMessageError] = []
    for line in lines:
        try:
            messages.append(_decode_result_line(line))
        except MalformedMessageError as problem:
            messages.append(problem)
    return messages


def decode_result(fields: object) -> ResultMessage:
    """Read a result stream entry's fields holding one result message, checking every field.

    Raises:
        MalformedMessageError: the entry is not a result message a worker wrote.
    """
    if not isinstance(fields, dict) or b"r" not in fields:
        raise MalformedMessageError("the result message has no 'r' field")
    return _decode_result_line(fields[b"r"])


def _decode_result_line(raw: object) -> ResultMessage:
    """One result message, checking every field (see `decode_result`)."""
    try:
        message = _loads(raw, "the result message")
    except MalformedMessageError as unreadable:
        head = (
            _TASK_HEAD.match(raw) if isinstance(raw, bytes) and "nested too deep" in str(unreadable) else None
        )
        if head is None:
            raise
        raise MalformedMessageError(str(unreadable), task=int(head[1])) from None
    if not isinstance(message, dict):
        raise MalformedMessageError(f"the result message is not a JSON object: {preview(raw)}")
    get = message.get
    task, entry, process, error = get("task"), get("entry", ""), get("process"), get("error")
    slot, attempts, deliveries = get("slot"), get("attempts", 1), get("deliveries", 1)
    slots = get("slots", slot + 1 if type(slot) is int else None)
    started: Any = get("started")
    finished: Any = get("finished")
    # `type(...) is int` rather than isinstance: a bool is not a count. One expression, since
    # this runs once per result on the controller.
    if not (
        ((type(task) is int and task >= 0) or (task is None and type(error) is dict))
        and type(entry) is str
        and type(process) is str
        and type(slot) is int
        and type(slots) is int
        and 0 <= slot < slots <= _MAX_SLOTS
        and _is_time(started)
        and _is_time(finished)
        and type(attempts) is int
        and attempts >= 0
        and type(deliveries) is int
        and deliveries >= 1
        and (error is None or type(error) is dict)
    ):
        raise MalformedMessageError(f"the result message breaks the rules ({_RESULT_RULES}): {preview(raw)}")
    return ResultMessage(
        task,
        entry,
        process,
        slot,
        slots,
        float(started),
        float(finished),
        attempts,
        deliveries,
        get("value"),
        error,
        get("cancelled") is True,
    )


def encode_spec(
    *,
    timeout: float | None,
    retry: Retry | None,
    max_per_second: float | None,
    burst: int,
    visibility_timeout: float,
    max_deliveries: int,
    adaptive: Adaptive | None = None,
) -> bytes:
    """The job's settings for its workers, as JSON text.

    `adaptive` (`workers=Adaptive(...)`) travels with its congestion types by name, as retry
    rules do: each worker process runs its own adaptive limit over its slots.

    Raises:
        ValueError: the retry policy decides with a function, which cannot travel to another
            process.
    """
    retry_data: dict[str, Any] | None = None
    if retry is not None:
        if not isinstance(retry.on, tuple):
            raise ValueError(
                f"Retry(on={retry.on!r}) decides with a function, which cannot travel to worker "
                "processes: give a tuple of exception types, such as Retry(3, on=(TimeoutError,))"
            )
        retry_data = {
            "times": retry.times,
            "on": [qualified_name(kind) for kind in retry.on],
            "backoff": retry.backoff,
            "multiplier": retry.multiplier,
            "max_backoff": retry.max_backoff,
            "jitter": retry.jitter,
            "seed": retry.seed,
        }
    return json.dumps(
        {
            "version": FORMAT_VERSION,
            "timeout": timeout,
            "retry": retry_data,
            "max_per_second": max_per_second,
            "burst": burst,
            "visibility_timeout": visibility_timeout,
            "max_deliveries": max_deliveries,
            "adaptive": None
            if adaptive is None
            else {
                "min": adaptive.min,
                "max": adaptive.max,
                "initial": adaptive.initial,
                "backoff": adaptive.backoff,
                "max_pause": adaptive.max_pause,
                "congestion": [qualified_name(kind) for kind in adaptive.congestion],
            },
        }
    ).encode()


@dataclass(frozen=True, slots=True)
class JobSettings:
    """A job's settings as a worker read them."""

    timeout: float | None
    retry: Retry | None
    max_per_second: float | None
    burst: int
    visibility_timeout: float
    max_deliveries: int
    adaptive: Adaptive | None = None
    """`workers=Adaptive(...)`: each process finds its own limit; its congestion types are
    matched by name (see `_ByName`)."""


class _ByName(type):
    """The type of a stand-in exception class for exception types named in a message.

    `isinstance(error, stand_in)` is True when the error's class or one of its bases bears
    one of the names: a worker never imports a module a message names.
    """

    names: frozenset[str]

    def __instancecheck__(cls, instance: object) -> bool:
        return any(qualified_name(kind) in cls.names for kind in type(instance).__mro__)


def _by_name(names: frozenset[str]) -> type[BaseException]:
    """A stand-in for the exception types named `names` (see `_ByName`)."""
    return cast(type[BaseException], _ByName("NamedCongestion", (Exception,), {"names": names}))


def _adaptive(data: object) -> Adaptive | None:
    """An `Adaptive` from the settings' data (its own checks apply), or None."""
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("congestion"), list):
        raise TypeError("the job's adaptive settings are not readable")
    names = frozenset(str(name) for name in data["congestion"])
    return Adaptive(
        min=data.get("min"),  # type: ignore[arg-type]  # Adaptive checks each field
        max=data.get("max"),  # type: ignore[arg-type]
        initial=data.get("initial"),
        backoff=data.get("backoff"),  # type: ignore[arg-type]
        max_pause=data.get("max_pause"),  # type: ignore[arg-type]
        congestion=(_by_name(names),) if names else (),
    )


def _matcher(names: frozenset[str]) -> Callable[[BaseException], bool]:
    """A retry rule from type names: does the error's class or one of its bases bear one?"""

    def wanted(error: BaseException) -> bool:
        return any(qualified_name(kind) in names for kind in type(error).__mro__)

    return wanted


def _number(data: dict[str, Any], name: str, *, optional: bool = False) -> float | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def decode_spec(raw: object) -> JobSettings:
    """Read a job's settings.

    Raises:
        ValueError, TypeError, KeyError: the settings are not readable (not JSON, another
            format version, a value missing or out of range).
    """
    if not isinstance(raw, bytes | str):
        raise TypeError("the job has no settings")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise TypeError("the job settings are not a JSON object")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"the job settings have format version {data.get('version')!r}, this worker reads "
            f"version {FORMAT_VERSION}: run the same pcmodel version on both sides"
        )
    retry: Retry | None = None
    retry_data = data.get("retry")
    if retry_data is not None:
        if not isinstance(retry_data, dict) or not isinstance(retry_data.get("on"), list):
            raise ValueError("the job's retry settings are not readable")
        seed = retry_data.get("seed")
        retry = Retry(
            retry_data["times"],
            on=_matcher(frozenset(str(name) for name in retry_data["on"])),
            backoff=retry_data["backoff"],
            multiplier=retry_data["multiplier"],
            max_backoff=retry_data["max_backoff"],
            jitter=retry_data["jitter"],
            seed=seed if isinstance(seed, int) else None,
        )
    burst = data.get("burst")
    max_deliveries = data.get("max_deliveries")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an int >= 1, got {burst!r}")
    if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int) or max_deliveries < 1:
        raise ValueError(f"max_deliveries must be an int >= 1, got {max_deliveries!r}")
    visibility = _number(data, "visibility_timeout")
    assert visibility is not None
    return JobSettings(
        timeout=_number(data, "timeout", optional=True),
        retry=retry,
        max_per_second=_number(data, "max_per_second", optional=True),
        burst=burst,
        visibility_timeout=visibility,
        max_deliveries=max_deliveries,
        adaptive=_adaptive(data.get("adaptive")),
    )
