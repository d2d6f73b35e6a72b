"""Naming the code a worker process runs: the queue a function is served on, and its import.

A controller and its worker processes meet on a queue. By default the queue is named after the
function (`module:qualname`), and a worker process imports the function from the same name
given on its command line (`--function module:name`): so both sides agree without being told
twice, and the code a worker runs is always the one named on its command line, never one a
message names. `queue_name` raises if a function cannot be named so; `load_function` imports a
name, and says in one paragraph why it could not.

No redis import: the controller side names its queue with this module too.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["load_function", "queue_name"]


def queue_name(function: object) -> str:
    """The default queue of `function`: its `module:qualname`, which its workers serve too.

    Raises:
        ValueError: the function cannot be named so that another process can import it (a
            lambda, a function defined inside another, or one defined in `__main__`, such as
            a notebook cell): move it into a module, or name the queue yourself.
    """
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise ValueError(
            f"cannot name a queue after {function!r}: worker processes import the function by "
            "'module:name', so define it at the top level of a module, or pass queue='NAME' "
            "here and --queue NAME to the workers"
        )
    if module == "__main__":
        raise ValueError(
            f"{qualname} is defined in __main__ (a script or a notebook), which worker processes "
            "cannot import: move it into a module and start the workers with "
            "--function module:name, or pass queue='NAME' here and --queue NAME to the workers"
        )
    return f"{module}:{qualname}"


def load_function(name: str) -> Callable[[Any], Any]:
    """Import the function named `package.module:attribute` (as given on the command line).

    Raises:
        ValueError: the name is not `module:attribute`.
        TypeError: it names something not callable.
        ImportError, AttributeError: the module or the attribute does not exist, or the module
            raised as it was imported (the message names the module and the exception, with
            the file and line that raised it).
    """
    module_name, colon, attribute = name.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"--function must be 'package.module:name', got {name!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name is not None and (module_name + ".").startswith(missing.name + "."):
            raise  # the module itself (or its package) does not exist
        raise ImportError(_import_failure(module_name, missing)) from missing
    except Exception as error:  # the module's own code failed: say so in one paragraph
        raise ImportError(_import_failure(module_name, error)) from error
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"--function {name!r} names a {type(target).__name__}, which is not callable")
    return target  # type: ignore[no-any-return]


def _import_failure(module: str, error: BaseException) -> str:
    """One paragraph on a module that raised as it was imported: what, and where."""
    where = ""
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        where = f" (at {frames[-1].filename}, line {frames[-1].lineno})"
    return (
        f"importing module {module!r} raised {type(error).__name__}: {error}{where}. Fix the module, "
        f"or check that it imports on its own: python -c 'import {module}'"
    )
