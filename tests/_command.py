"""`python -m pcmodel ...` in a subprocess, for the tests that signal the command line."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading

BOUND = 60.0  # seconds: reached only by a regression


class Command:
    """`python -m pcmodel ARGUMENTS` in a subprocess, its stdout lines read by a thread."""

    def __init__(self, *arguments: str) -> None:
        argv = [sys.executable, "-m", "pcmodel", *arguments]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def line(self) -> str:
        """The next stdout line (bounded wait)."""
        line = self.lines.get(timeout=BOUND)
        assert line is not None, "the command ended early"
        return line

    def rest(self) -> list[str]:
        """The remaining stdout lines, once the command has ended."""
        lines = []
        while (line := self.lines.get(timeout=BOUND)) is not None:
            lines.append(line)
        return lines

    def finish(self, stop_signal: signal.Signals | None = None, times: int = 1) -> tuple[int, str]:
        """Send `stop_signal` (if any) `times` times, wait (bounded); return the exit code and stderr."""
        try:
            if stop_signal is not None:
                for _ in range(times):
                    self.process.send_signal(stop_signal)
            self.process.wait(timeout=BOUND)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=BOUND)
            self._pump.join(timeout=BOUND)
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.process.stdout.close()
        with self.process.stderr:
            return self.process.returncode, self.process.stderr.read()
