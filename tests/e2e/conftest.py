"""Fixtures for the end-to-end tests: one JupyterLab and one Chromium per session.

Every test gets a fresh browser context (no state carried over from the previous test) and
leaves no kernel running. A test that fails leaves full-page screenshots of its pages, and
the tail of the server log, in `tests/e2e/artifacts/` (or `$PCMODEL_E2E_ARTIFACTS`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.lab import REPO, JupyterLab, NotebookPage, OpenNotebook, launch_browser, serve_copies

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ViewportSize, WebSocket

HERE = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("PCMODEL_E2E_ARTIFACTS", HERE / "artifacts"))
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}

# The fixture notebooks are inputs of the browser tests, not nbval tests of their own.
collect_ignore_glob = ["fixtures/*"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests of the course in JupyterLab and Chromium")


# Package scope, not session: Playwright's sync API keeps an event loop marked as running in
# the main thread while it is started, and the tests after this folder need asyncio.run().
@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """A JupyterLab serving copies of notebooks/, assets/ and the e2e fixtures."""
    base = tmp_path_factory.mktemp("e2e")
    root = base / "served"
    serve_copies(
        {"notebooks": REPO / "notebooks", "assets": REPO / "assets", "e2e-fixtures": HERE / "fixtures"},
        root,
    )
    with JupyterLab(root, base / "state") as server:
        yield server


@pytest.fixture(scope="package")
def browser(lab: JupyterLab) -> Iterator[Browser]:
    with launch_browser(lab.state_dir) as (_playwright, chromium):
        yield chromium


@pytest.fixture
def open_notebook(
    request: pytest.FixtureRequest, lab: JupyterLab, browser: Browser
) -> Iterator[OpenNotebook]:
    """Open a notebook (a path under the served folder) in a fresh page; return its driver."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    notebooks: list[NotebookPage] = []
    request.node.e2e_notebooks = notebooks  # read by pytest_runtest_makereport on failure

    def open_(path: str) -> NotebookPage:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"page error: {error}"))
        page.on("websocket", lambda socket: _log_kernel_messages(socket, console))
        request.node.e2e_console = console
        notebook = NotebookPage(page, lab, path, trace=console)
        notebooks.append(notebook)
        notebook.open()
        return notebook

    try:
        yield open_
    finally:
        context.close()
        lab.shutdown_kernels()


_MESSAGE_TYPE = re.compile(r'"msg_type":\s*"(\w+)"')
_REPLY_STATUS = re.compile(r'"status":\s*"(\w+)"')


def _log_kernel_messages(socket: WebSocket, console: list[str]) -> None:
    """Log the kernel's execute and error messages on this page, for a failure's report."""
    started = time.monotonic()

    def received(payload: str | bytes) -> None:
        text = payload.decode("latin-1") if isinstance(payload, bytes) else payload
        kinds = _MESSAGE_TYPE.findall(text)
        if not kinds or kinds[0] not in {"execute_input", "execute_reply", "error", "shutdown_reply"}:
            return
        status = _REPLY_STATUS.search(text) if kinds[0] == "execute_reply" else None
        detail = f" {status.group(1)}" if status else ""
        console.append(f"kernel at {time.monotonic() - started:7.2f} s: {kinds[0]}{detail}")

    socket.on("framereceived", received)
    socket.on("close", lambda _socket: console.append(f"kernel socket closed: {socket.url}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        saved = _save_failure_artifacts(item)
        if saved:
            report.sections.append(("e2e artifacts", "\n".join(saved)))
    return report


def _save_failure_artifacts(item: pytest.Item) -> list[str]:
    from playwright.sync_api import Error as PlaywrightError

    notebooks: list[NotebookPage] = getattr(item, "e2e_notebooks", [])
    if not notebooks:
        return []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)[:120]
    saved: list[str] = []
    for number, notebook in enumerate(notebooks):
        # What the learner sees, then the whole notebook in one tall image.
        for suffix, take in (
            ("", notebook.screenshot),
            ("-whole", notebook.screenshot_whole_notebook),
        ):
            path = ARTIFACTS / f"{stem}-{number}{suffix}.png"
            try:
                take(path)
            except PlaywrightError as error:  # a crashed page must not hide the test's own failure
                saved.append(f"no screenshot {path.name}: {error!r}")
            else:
                saved.append(f"screenshot: {path}")
    console: list[str] = getattr(item, "e2e_console", [])
    if console:
        path = ARTIFACTS / f"{stem}-console.log"
        path.write_text("\n".join(console) + "\n", encoding="utf-8")
        saved.append(f"browser console: {path}")
    lab = item.funcargs.get("lab") if isinstance(item, pytest.Function) else None
    if isinstance(lab, JupyterLab):
        log = ARTIFACTS / f"{stem}-jupyterlab.log"
        log.write_text(lab.log_tail(200) + "\n", encoding="utf-8")
        saved.append(f"server log: {log}")
    return saved
