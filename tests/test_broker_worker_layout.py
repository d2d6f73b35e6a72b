"""The broker worker's modules: every name `pcmodel.broker.worker` exported still comes from it.

The worker process is split by role (`naming`, `rate_limit`, `_process`, `_fetch`,
`_reclaim`, `_slots`, `_writer`, `_keeper`, `cli`); code written against
`pcmodel.broker.worker` and the two command lines must not notice.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("redis", reason="the broker tests need the redis package: pip install 'pcmodel[redis]'")

import pcmodel.broker
import pcmodel.broker.cli
import pcmodel.broker.naming
import pcmodel.broker.worker


@pytest.mark.parametrize("name", pcmodel.broker.worker.__all__)
def test_each_name_the_worker_module_exports_is_the_packages_own(name: str) -> None:
    assert getattr(pcmodel.broker.worker, name) is getattr(pcmodel.broker, name)


def test_the_worker_module_exports_what_it_always_did() -> None:
    assert sorted(pcmodel.broker.worker.__all__) == [
        "WorkerStats",
        "load_function",
        "queue_name",
        "serve_worker",
        "worker_main",
    ]
    assert pcmodel.broker.worker.worker_main is pcmodel.broker.cli.worker_main
    assert pcmodel.broker.worker.queue_name is pcmodel.broker.naming.queue_name


def test_a_name_the_worker_module_never_had_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=re.escape("'pcmodel.broker.worker' has no attribute 'run'")):
        pcmodel.broker.worker.run  # noqa: B018 - the access is the test


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_the_worker_module_imports_its_command_line_only_when_asked_for_it() -> None:
    # `cli` imports `serve_worker` from `worker`: importing `cli` eagerly there would be a cycle.
    code = (
        "import sys\n"
        "from pcmodel.broker.worker import serve_worker\n"
        "print('pcmodel.broker.cli' in sys.modules)\n"
        "from pcmodel.broker.worker import worker_main\n"
        "print('pcmodel.broker.cli' in sys.modules, worker_main.__module__)\n"
    )
    assert _run(code).splitlines() == ["False", "True pcmodel.broker.cli"]


def test_naming_a_queue_needs_no_redis() -> None:
    code = (
        "import sys\n"
        "sys.modules['redis'] = None\n"  # as if redis were not installed
        "from pcmodel.broker.naming import queue_name\n"
        "print(queue_name(queue_name))\n"
    )
    assert _run(code) == "pcmodel.broker.naming:queue_name"


def test_both_worker_commands_are_the_same_command() -> None:
    helps = [
        subprocess.run(
            [sys.executable, "-m", *command, "--help"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        for command in (["pcmodel", "worker"], ["pcmodel.broker"])
    ]
    assert helps[0].startswith("usage: pcmodel worker")
    assert "--function MODULE:NAME" in helps[0]
    assert helps[0] == helps[1]
