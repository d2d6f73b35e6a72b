"""What a ledger writes about an item: its key, its params as JSON, its error's name and message.

The default key of an item is its params' canonical JSON,
`json.dumps(params, sort_keys=True, separators=(",", ":"))`, computed once per item on the
job's loop (`canonical_key`); `tests/test_ledger_keys.py` holds it equal to that call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from pcmodel.stopping import Interrupted

__all__ = ["canonical_key", "error_text", "params_json", "shown", "storable", "unstorable"]

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


def shown(value: Any, limit: int = 80) -> str:
    """The repr of `value`, cut to `limit` characters, even if its repr raises."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a message must not fail on a hostile repr
        return f"<a {type(value).__name__} whose repr raised>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unstorable(text: str) -> int | None:
    """The position of the first character of `text` a ledger's file cannot hold; None if none.

    SQLite keeps text as UTF-8, which has no code for a lone surrogate (`"\\udcff"`, as
    `os.fsdecode` makes of a file name's undecodable byte): such a str cannot be written at all.
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def storable(text: str) -> str:
    """`text` as a ledger can hold it: each lone surrogate written out as `\\udcff`."""
    if unstorable(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_text(error: BaseException) -> tuple[str, str]:
    """The type name (qualified unless built-in) and the message of `error`, as a ledger keeps them."""
    kind = type(error)
    if kind.__module__ == "pcmodel.broker.messages":  # imported only then: broker jobs only
        from pcmodel.broker.messages import RemoteError

        if isinstance(error, RemoteError):  # a worker process's error: keep its type's name
            return storable(error.type_name), storable(error.message)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    try:
        message = str(error)
    except (KeyboardInterrupt, SystemExit) as interrupt:
        raise Interrupted(interrupt) from None
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not lose the outcome
        message = f"<str() of this {kind.__name__} raised>"
    # A message may hold what the file cannot (a file name's undecodable byte, say).
    return storable(name), storable(message)


def params_json(params: Any) -> str:
    """`params` as JSON for the ledger's `params` column; what JSON cannot carry, as its repr."""
    try:
        return canonical_key(params)
    except Exception:  # noqa: BLE001 - params a custom key= handles need not be JSON
        return canonical_key(shown(params, limit=10_000))
