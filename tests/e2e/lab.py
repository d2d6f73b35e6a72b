"""A JupyterLab server and a headless Chromium, run the way a learner's machine runs them.

`JupyterLab` starts `jupyter lab` on 127.0.0.1 with a random token, serving a folder of
notebook copies, and keeps every file it writes (settings, workspaces, runtime files, IPython
and matplotlib caches) in a temporary state folder instead of the home folder. `launch_browser`
starts Debian's `/usr/bin/chromium` through Playwright (no browser download). `NotebookPage`
drives one notebook in JupyterLab through its menus, toolbar and widgets, and reads back what
the page shows.

Nothing here imports Playwright at module level, so the suite can be collected (and skipped)
on a machine without it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Playwright

REPO = Path(__file__).resolve().parents[2]
# Debian's Chromium; PCMODEL_E2E_CHROMIUM names another build of Chromium to drive.
CHROMIUM = Path(os.environ.get("PCMODEL_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
# Settings a fresh JupyterLab gets, so that no pop-up covers the page and every cell of a
# notebook stays in the page (no virtual scrolling) where the tests can read it.
USER_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
    },
    "@jupyterlab/apputils-extension/themes.jupyterlab-settings": {
        "theme": "JupyterLab Light",
    },
}
# Names of ipywidgets classes: one of these followed by "(" in a plain-text output is a
# widget that was printed as its repr instead of being rendered.
RAW_WIDGET_REPR = re.compile(
    r"\b(?:Int|Float|FloatLog)?(?:Range)?Slider\(|\b(?:VBox|HBox|GridBox|Box|Tab|Accordion|"
    r"Output|Image|IntProgress|FloatProgress|Dropdown|ToggleButtons|Button|Label|HTML|"
    r"HTMLMath|Checkbox|Play|Text|IntText|FloatText|BoundedIntText|SelectionSlider|"
    r"RadioButtons|interactive)\((?:children|value|layout|description|options|outputs|"
    r"min|max|index|style|_dom_classes|msg_id)="
)

# An exception as a view shows it in an HTML widget, e.g. "ValueError: workers must be >= 1".
SHOWN_ERROR = re.compile(r"\s*[A-Za-z_][\w.]*(?:Error|Exception|Interrupt)\w*: ")


def missing_requirements() -> str | None:
    """Why the end-to-end tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install it with `bash .ci/e2e-setup.sh` (as root)"
    for module in ("playwright", "jupyterlab", "nbclient"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: `pip install -e '.[test,e2e]'`"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def state_environment(state_dir: Path) -> dict[str, str]:
    """The environment for a server, its kernels and the browser, all writing under `state_dir`."""
    folders = {
        "XDG_CONFIG_HOME": "xdg-config",
        "XDG_CACHE_HOME": "xdg-cache",
        "XDG_DATA_HOME": "xdg-data",
        "XDG_RUNTIME_DIR": "xdg-runtime",
        "JUPYTER_CONFIG_DIR": "jupyter-config",
        "JUPYTER_DATA_DIR": "jupyter-data",
        "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "IPYTHONDIR": "ipython",
        "MPLCONFIGDIR": "matplotlib",
        "npm_config_cache": "npm-cache",
        "npm_config_logs_dir": "npm-logs",
    }
    env = dict(os.environ)
    for name, folder in folders.items():
        path = state_dir / folder
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[name] = str(path)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    # A kernel must not pick up the test run's own plugins or warning filters.
    env.pop("PYTEST_CURRENT_TEST", None)
    env.pop("PYTHONWARNINGS", None)
    return env


def descendants(pid: int) -> list[int]:
    """The ids of every process below `pid` (children, their children...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_processes(pids: list[int], *, timeout: float = 10.0) -> None:
    """Kill the processes `pids` that still run, and wait until they are gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)


def write_user_settings(settings_dir: Path) -> None:
    """Write `USER_SETTINGS` as JupyterLab user-settings files under `settings_dir`."""
    for relative, values in USER_SETTINGS.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


class JupyterLab:
    """A `jupyter lab` server on 127.0.0.1 with a token, serving `root_dir`.

    Use it as a context manager: the server and every kernel it started are gone after the
    `with` block, whatever happened inside.
    """

    def __init__(self, root_dir: Path, state_dir: Path, *, start_timeout: float = 90.0) -> None:
        self.root_dir = root_dir
        self.state_dir = state_dir
        self.start_timeout = start_timeout
        self.token = secrets.token_hex(24)
        self.port = free_port()
        self.env = state_environment(state_dir)
        self.log_path = state_dir / "jupyterlab.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        """The address of `path` on the server, token included."""
        separator = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{separator}token={self.token}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        write_user_settings(Path(self.env["JUPYTERLAB_SETTINGS_DIR"]))
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # window.jupyterapp lets the tests read the notebook model the page shows.
            "--LabApp.expose_app_in_browser=True",
        ]
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            command,
            cwd=self.root_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                log = self.log_tail()
                self.stop()
                raise RuntimeError(f"jupyter lab exited with code {self._process.returncode}:\n{log}")
            with contextlib.suppress(OSError):
                if self.api("GET", "api/status") is not None:
                    return
            if time.monotonic() > deadline:
                log = self.log_tail()
                self.stop()
                raise RuntimeError(f"jupyter lab did not answer within {self.start_timeout} s:\n{log}")
            time.sleep(0.25)

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API; return the decoded JSON answer (None for no content)."""
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut down every kernel the server runs (each test starts from none)."""
        with contextlib.suppress(OSError, urllib.error.URLError):
            for session in self.api("GET", "api/sessions"):
                self.api("DELETE", f"api/sessions/{session['id']}")
            for kernel in self.api("GET", "api/kernels"):
                self.api("DELETE", f"api/kernels/{kernel['id']}")

    def log_tail(self, lines: int = 40) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and every process it started (kernels included)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self.shutdown_kernels()
            # Kernels run in sessions of their own: remember them to end any left over.
            children = descendants(process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            end_processes(children)
        if self._log is not None:
            self._log.close()
            self._log = None


def serve_copies(folders: dict[str, Path], root_dir: Path) -> None:
    """Copy each source folder to `root_dir / name`, the folder the server serves.

    The server gets copies because "Run All" marks a notebook changed and autosave would
    write the browser's outputs back into the course. The repository's layout is kept
    (notebooks/ next to assets/), so relative links and images resolve as they do for a
    learner.
    """
    root_dir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "artifacts")
    for name, source in folders.items():
        if source.is_dir():
            shutil.copytree(source, root_dir / name, ignore=ignore, dirs_exist_ok=True)


@contextlib.contextmanager
def launch_browser(state_dir: Path) -> Iterator[tuple[Playwright, Browser]]:
    """Start Playwright and Debian's Chromium (headless); close both afterwards."""
    from playwright.sync_api import sync_playwright

    env: dict[str, str | float | bool] = dict(state_environment(state_dir))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=list(CHROMIUM_ARGS),
            headless=True,
            env=env,
        )
        try:
            yield playwright, browser
        finally:
            browser.close()


@dataclass(frozen=True)
class CellReport:
    """What one cell of the open notebook holds, read from the page's notebook model."""

    index: int
    cell_type: str
    source: str
    tags: tuple[str, ...]
    execution_count: int | None
    outputs: tuple[dict[str, Any], ...]

    @property
    def errors(self) -> list[str]:
        """`ename: evalue` of every error output."""
        return [f"{o['ename']}: {o['evalue']}" for o in self.outputs if o.get("output_type") == "error"]

    @property
    def widget_views(self) -> int:
        """How many outputs are widget views."""
        return sum(1 for o in self.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))

    def text(self) -> str:
        """Every text/plain output and stream of the cell, joined."""
        parts: list[str] = []
        for output in self.outputs:
            if output.get("output_type") == "stream":
                parts.append(_joined(output.get("text", "")))
            elif "text/plain" in output.get("data", {}):
                parts.append(_joined(output["data"]["text/plain"]))
        return "".join(parts)


def _joined(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


_READ_CELLS_JS = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i).toJSON();
    out.push({
      cell_type: cell.cell_type,
      source: Array.isArray(cell.source) ? cell.source.join('') : cell.source,
      tags: (cell.metadata && cell.metadata.tags) || [],
      execution_count: cell.execution_count === undefined ? null : cell.execution_count,
      outputs: cell.outputs || [],
    });
  }
  return out;
}
"""

_PENDING_JS = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) { return 'no notebook'; }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const status = kernel ? kernel.status : 'no kernel';
  const prompts = Array.from(panel.content.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
    .map(node => node.textContent.trim());
  const busy = prompts.filter(text => text.includes('*')).length;
  return status + ' / ' + busy + ' running or queued';
}
"""


_IMAGE_BYTES_JS = """
async img => {
  const response = await fetch(img.src);
  const bytes = new Uint8Array(await response.arrayBuffer());
  let text = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  }
  return btoa(text);
}
"""

# Logs what JupyterLab's notebook session and kernel connection do (status, connection,
# replies) to the browser console, which a failing test saves: the story of a Run All.
_WATCH_KERNEL_JS = """
() => {
  const started = performance.now();
  const log = (...parts) => console.log(
    'lab at ' + ((performance.now() - started) / 1000).toFixed(2).padStart(7) + ' s: ' + parts.join(' '));
  const context = window.jupyterapp.shell.currentWidget.sessionContext;
  const watch = kernel => {
    if (!kernel) { return; }
    kernel.statusChanged.connect((_, status) => log('kernel status', status));
    kernel.connectionStatusChanged.connect((_, status) => log('kernel connection', status));
    kernel.disposed.connect(() => log('kernel connection disposed'));
    kernel.anyMessage.connect((_, args) => {
      const type = args.msg.header.msg_type;
      if (['execute_reply', 'execute_input', 'error', 'kernel_info_request', 'kernel_info_reply',
           'create_subshell_request', 'create_subshell_reply', 'interrupt_request',
           'shutdown_request'].includes(type)) {
        log(args.direction, type, (args.msg.content && args.msg.content.status) || '');
      }
    });
  };
  context.kernelChanged.connect((_, change) => {
    log('session kernel changed to', change.newValue ? change.newValue.id : 'none');
    watch(change.newValue);
  });
  context.statusChanged.connect((_, status) => log('session status', status));
  watch(context.session && context.session.kernel);
}
"""

CELLS = ".jp-NotebookPanel .jp-Notebook .jp-Cell"

# Counts the cell's own outputs (not those nested in an Output widget) whose content is a
# widget view: its root element carries the `jupyter-widgets` class.
_RENDERED_WIDGETS_JS = """
cell => {
  const area = cell.querySelector('.jp-OutputArea');
  if (!area) { return 0; }
  let count = 0;
  for (const child of area.children) {
    const output = child.querySelector(':scope > .jp-OutputArea-output');
    if (output && output.querySelector(':scope > .jupyter-widgets')) { count += 1; }
  }
  return count;
}
"""


class NotebookPage:
    """One notebook open in JupyterLab, driven like a learner drives it."""

    def __init__(self, page: Page, lab: JupyterLab, path: str, trace: list[str] | None = None) -> None:
        self.page = page
        self.lab = lab
        self.path = path
        # What the test saw and did, with times, for the report of a failure.
        self.trace = trace if trace is not None else []
        self._started = time.monotonic()

    def note(self, text: str) -> None:
        """Add a line to the trace."""
        self.trace.append(f"test at {time.monotonic() - self._started:7.2f} s: {text}")

    # -- opening -----------------------------------------------------------------------------

    def open(self, *, timeout: float = 90.0) -> None:
        """Load JupyterLab on the notebook (fresh workspace) and wait for its kernel."""
        self.page.goto(self.lab.url(f"lab/tree/{self.path}?reset"), wait_until="domcontentloaded")
        self.page.locator(CELLS).first.wait_for(state="attached", timeout=timeout * 1000)
        idle = self.page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text="| Idle")
        # A notebook without kernel metadata asks which kernel to start instead.
        dialog = self.page.locator(".jp-Dialog", has_text="Kernel")
        idle.or_(dialog).first.wait_for(state="visible", timeout=timeout * 1000)
        if dialog.is_visible():
            dialog.locator(".jp-mod-accept").click()
        self.wait_for_status_idle(timeout=timeout)
        self.page.evaluate(_WATCH_KERNEL_JS)
        self.note(f"opened {self.path}")

    # -- the status bar and the kernel -------------------------------------------------------

    def status_text(self) -> str:
        """The status bar's kernel item, e.g. "Python 3 (ipykernel) | Idle"."""
        item = self.page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text=re.compile(r" \| \w+"))
        if item.count() == 0:
            return ""
        text: str = item.first.inner_text()
        return text.strip()

    def wait_for_status_idle(self, *, timeout: float) -> None:
        """Wait for "| Idle" in the status bar."""
        self.page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(
            state="visible", timeout=timeout * 1000
        )

    def pending(self) -> str:
        """The kernel status and how many code cells are running or queued ("[*]")."""
        result: str = self.page.evaluate(_PENDING_JS)
        return result

    def wait_until_idle(self, *, timeout: float, settle: float = 1.0) -> None:
        """Wait until the status bar says "| Idle" and no cell is running or queued.

        The state must hold for `settle` seconds, because under "Run All" the kernel goes
        idle for a moment between two cells.
        """
        deadline = time.monotonic() + timeout
        calm_since: float | None = None
        last = ""
        self.note("waiting for the kernel to go idle")
        seen = ""
        while time.monotonic() < deadline:
            last = f"status bar: {self.status_text()!r}; {self.pending()}"
            if last != seen:
                self.note(last)
                seen = last
            calm = "| Idle" in last and last.endswith("idle / 0 running or queued")
            if calm:
                calm_since = calm_since or time.monotonic()
                if time.monotonic() - calm_since >= settle:
                    return
            else:
                calm_since = None
            self.page.wait_for_timeout(200)
        raise TimeoutError(f"{self.path}: the kernel did not go idle within {timeout} s ({last})")

    # -- menus and toolbar -------------------------------------------------------------------

    def menu(self, top: str, item: str) -> None:
        """Click `top` in the menu bar, then `item` in the menu that opens."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()

    def run_all(self) -> None:
        """Run > Run All Cells, as a learner starts a notebook."""
        self.page.locator(".jp-NotebookPanel").first.click(position={"x": 5, "y": 5})
        self.menu("Run", "Run All Cells")
        self.note("clicked Run > Run All Cells")

    def interrupt_from_toolbar(self) -> None:
        """Press the notebook toolbar's "Interrupt the kernel" button."""
        self.page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:interrupt-kernel']").click()

    def run_cell(self, index: int) -> None:
        """Select cell `index` and press Shift+Enter, as a learner runs one cell."""
        self.cell_locator(index).locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Shift+Enter")

    # -- widgets -----------------------------------------------------------------------------

    def sliders(self, index: int) -> Locator:
        """The slider views in cell `index`'s outputs."""
        return self.cell_locator(index).locator(".widget-slider")

    def slider_value(self, slider: Locator) -> str:
        """The number a slider's readout shows."""
        text: str = slider.locator(".widget-readout").inner_text()
        return text.strip()

    def press_slider(self, slider: Locator, key: str, times: int = 1) -> None:
        """Focus the slider's handle and press `key` (ArrowRight, ArrowLeft...) `times` times."""
        handle = slider.locator(".noUi-handle").first
        handle.focus()
        for _ in range(times):
            handle.press(key)

    def type_into_slider(self, slider: Locator, value: str) -> None:
        """Type `value` into the slider's readout and press Enter."""
        readout = slider.locator(".widget-readout")
        readout.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(value)
        self.page.keyboard.press("Enter")

    def image_bytes(self, image: Locator) -> bytes:
        """The bytes behind an `<img>` (a blob: or data: URL), fetched by the page itself."""
        encoded: str = image.evaluate(_IMAGE_BYTES_JS)
        return base64.b64decode(encoded)

    def widget_view(self, cell: int, view: int) -> Locator:
        """The root element of cell `cell`'s `view`-th widget output (counting from 0)."""
        return (
            self.cell_locator(cell)
            .locator(".jp-OutputArea")
            .first.locator(":scope > .jp-OutputArea-child > .jp-OutputArea-output > .jupyter-widgets")
            .nth(view)
        )

    def control(self, view: Locator, kind: str, name: str) -> Locator:
        """The control described `name` in a widget view: a slider or toggle buttons."""
        selector = {"slider": ".widget-slider", "toggle": ".widget-toggle-buttons"}[kind]
        label = self.page.locator("label.widget-label", has_text=re.compile(f"^{re.escape(name)}$"))
        return view.locator(selector).filter(has=label).first

    def click_toggle(self, control: Locator, label: str) -> None:
        """Click the button labelled `label` in a ToggleButtons view."""
        control.locator("button", has_text=re.compile(f"^{re.escape(label)}$")).click()

    def image_digest(self, image: Locator) -> str:
        """SHA-256 of the bytes an `<img>` shows."""
        return hashlib.sha256(self.image_bytes(image)).hexdigest()

    def wait_for_image(self, image: Locator, digest: str, *, timeout: float = 30.0) -> str:
        """Wait until `image` shows bytes with SHA-256 `digest`; return the last digest seen."""
        deadline = time.monotonic() + timeout
        seen = ""
        while True:
            seen = self.image_digest(image)
            if seen == digest or time.monotonic() > deadline:
                return seen
            self.page.wait_for_timeout(200)

    def broken_images(self) -> list[str]:
        """Every image on the notebook that shows no picture.

        A figure file that is missing comes back as its path in the served folder
        ("notebooks/missing.png"); a widget image without a picture (an `ipywidgets.Image`
        whose value is empty or not an image) as "widget image in cell N".
        """
        broken: list[list[Any]] = self.page.locator(CELLS).evaluate_all(
            "cells => cells.flatMap((cell, index) => Array.from(cell.querySelectorAll('img'))"
            ".filter(i => i.complete && i.naturalWidth === 0)"
            ".map(i => [index, i.getAttribute('src') || '']))"
        )
        found = []
        for index, src in broken:
            if src.startswith(("blob:", "data:")) or not src:
                found.append(f"widget image in cell {index}")
            else:
                path = urllib.parse.urlsplit(src).path
                found.append(urllib.parse.unquote(path.split("/files/", 1)[-1]))
        return found

    def fingerprint(self, index: int) -> str:
        """A digest of what cell `index`'s outputs show: their text and every image's bytes."""
        cell = self.cell_locator(index)
        digest = hashlib.sha256(self.output_texts()[index].encode())
        images = cell.locator(".jp-OutputArea img")
        for number in range(images.count()):
            digest.update(self.image_bytes(images.nth(number)))
        return digest.hexdigest()

    def screenshot(self, path: Path) -> None:
        """Save what the page shows now."""
        self.page.screenshot(path=str(path))

    def screenshot_whole_notebook(self, path: Path) -> None:
        """Save one image of the whole notebook: the page is made as tall as the notebook."""
        height: int = self.page.evaluate(
            "() => { const o = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');"
            " return o ? o.scrollHeight : 0; }"
        )
        size = self.page.viewport_size or {"width": 1400, "height": 1000}
        self.page.set_viewport_size(
            {"width": size["width"], "height": min(max(height + 200, size["height"]), 30_000)}
        )
        try:
            self.page.wait_for_timeout(500)
            self.page.screenshot(path=str(path))
        finally:
            self.page.set_viewport_size(size)

    # -- reading what the page shows ---------------------------------------------------------

    def cells(self) -> list[CellReport]:
        raw: list[dict[str, Any]] = self.page.evaluate(_READ_CELLS_JS)
        return [
            CellReport(
                index=index,
                cell_type=cell["cell_type"],
                source=cell["source"],
                tags=tuple(cell["tags"]),
                execution_count=cell["execution_count"],
                outputs=tuple(cell["outputs"]),
            )
            for index, cell in enumerate(raw)
        ]

    def cell_locator(self, index: int) -> Locator:
        return self.page.locator(CELLS).nth(index)

    def output_texts(self) -> list[str]:
        """The visible text of every output area, one string per cell."""
        texts: list[str] = self.page.locator(CELLS).evaluate_all(
            "nodes => nodes.map(n => { const o = n.querySelector('.jp-OutputArea');"
            " return o ? o.innerText : ''; })"
        )
        return texts

    def rendered_widget_views(self, index: int) -> int:
        """How many of cell `index`'s outputs are widget views the widget manager rendered."""
        count: int = self.cell_locator(index).evaluate(_RENDERED_WIDGETS_JS)
        return count

    def log_entries(self) -> list[str]:
        """What the kernel wrote outside any cell: the Log Console's entries, at every level.

        Output of a widget callback (a slider's observer that prints or raises) is not shown
        in a cell; JupyterLab puts it in the Log Console and counts it in the status bar.
        """
        status = self.page.locator("#jp-main-statusbar .jp-LogConsoleStatusItem [title]")
        title = status.first.get_attribute("title") if status.count() else None
        match = re.search(r"(\d+) log entr", title or "")
        if not match or match.group(1) == "0":
            return []
        panel = self.page.locator(".jp-LogConsolePanel")
        if not panel.is_visible():
            status.first.click()
            panel.wait_for(state="visible")
            self.page.locator(".jp-LogConsole-toolbarLogLevelDropdown select").select_option("debug")
        entries: list[str] = panel.locator(".jp-OutputArea-output").all_inner_texts()
        return [entry.strip() for entry in entries if not entry.startswith("Log level set to")]

    def problems(self, *, expected_errors: Collection[int] = ()) -> list[str]:
        """Everything on the page that a learner would see as broken after a run.

        Errors in cells not tagged `raises-exception`, code cells that never ran, widget views
        that show "Error displaying widget" or a raw repr instead of the widget, widget outputs
        the widget manager did not render, a view that shows an exception (as `explore` does
        when its draw function raises), and anything the kernel wrote into the Log Console.
        Cells listed in `expected_errors` may show an error.
        """
        problems: list[str] = []
        cells = self.cells()
        texts = self.output_texts()
        for cell in cells:
            if cell.cell_type != "code":
                continue
            where = f"cell {cell.index} ({cell.source.strip().splitlines()[0][:60] if cell.source.strip() else 'empty'})"
            if cell.source.strip() and cell.execution_count is None:
                problems.append(f"{where}: never ran")
            if cell.errors and "raises-exception" not in cell.tags and cell.index not in expected_errors:
                problems.append(f"{where}: error {cell.errors}")
            text = texts[cell.index] if cell.index < len(texts) else ""
            if "Error displaying widget" in text:
                problems.append(f"{where}: shows 'Error displaying widget'")
            for shown in self.cell_locator(cell.index).locator(".widget-html").all_inner_texts():
                if SHOWN_ERROR.match(shown):
                    problems.append(f"{where}: a widget shows an error: {shown.strip()[:200]!r}")
            raw = RAW_WIDGET_REPR.search(text)
            if raw:
                problems.append(f"{where}: shows a raw widget repr {raw.group(0)!r} instead of the widget")
            if cell.widget_views:
                rendered = self.rendered_widget_views(cell.index)
                if rendered < cell.widget_views:
                    problems.append(
                        f"{where}: {cell.widget_views} widget views, {rendered} rendered by the widget manager"
                    )
        for entry in self.log_entries():
            lines = [line for line in entry.splitlines() if line.strip()]
            problems.append(
                "log console: " + " / ".join([*lines[:2], "...", *lines[-2:]] if len(lines) > 4 else lines)
            )
        return problems


OpenNotebook = Callable[[str], NotebookPage]
"""What the `open_notebook` fixture gives a test: open a served path, get its driver."""
