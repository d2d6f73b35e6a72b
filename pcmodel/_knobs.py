"""The link between a `JobHandle` and its running job, whatever thread and loop each is on.

A job started with `start_job` may run on the caller's loop, or on a private virtual-time loop
in a helper thread (`clock="virtual"` from a real loop), and its handle's knobs may be turned
from any thread, before the job's first step or after its end. `Knobs` makes that one rule:

- before the job runs, a knob is remembered, and applied (in order) as the job starts, just
  after its pieces are created and before any of them takes a step;
- while it runs, a knob is applied on the job's loop: at once when called from that loop's
  thread, otherwise through `call_soon_threadsafe`;
- once the job has ended, a knob does nothing, and says so (it returns False).

A virtual-time job paused from another thread is not stuck, though nothing on its loop can
wake it: the knob that resumes (or stops) it will come from the handle's thread. While such a
job is paused, its loop waits for that thread in real time instead of raising DeadlockError
(`VirtualTimeLoop.waits_for_another_thread`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from pcmodel.clock import VirtualTimeLoop
from pcmodel.stopping import JobControl
from pcmodel.transport import Transport, Tunable

__all__ = ["Knobs"]

Action = Callable[[Tunable | None, JobControl], None]
"""A knob's effect: it gets the job's transport (None if it has no knobs) and stop state."""


class Knobs:
    """Carries knob turns from a handle to its job (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tunable: Tunable | None = None
        self._pending: list[Action] = []
        self.ended = False
        self.ended_at: float | None = None
        """When the job ended, on its clock (seconds since it started)."""
        self.transport: Transport | None = None
        """The job's transport once it started; kept after the end, for its last figures."""
        self.control: JobControl | None = None
        self._turned_from = threading.get_ident()
        """The thread of the handle, which turns the knobs (where `start_job` was called)."""

    def attach(self, transport: Transport, control: JobControl) -> None:
        """The job started (called on its loop): the remembered knobs run at its first wait."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._loop = loop
            self.transport, self.control = transport, control
            self._tunable = transport if isinstance(transport, Tunable) else None
            pending, self._pending = self._pending, []
        tunable = self._tunable
        if (
            isinstance(loop, VirtualTimeLoop)
            and tunable is not None
            and threading.get_ident() != self._turned_from
        ):
            loop.waits_for_another_thread = lambda: tunable.counts().paused
        for action in pending:
            loop.call_soon(self._apply, action)

    def detach(self) -> None:
        """The job ended: knobs do nothing from now on."""
        with self._lock:
            self.ended = True
            if isinstance(self._loop, VirtualTimeLoop):
                self._loop.waits_for_another_thread = None
            self._loop = None
            if self.control is not None:
                self.ended_at = self.control.since_start()

    def turn(self, action: Action) -> bool:
        """Apply `action` to the job, now or as it starts; False if the job has ended."""
        with self._lock:
            if self.ended:
                return False
            loop = self._loop
            if loop is None:
                self._pending.append(action)
                return True
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._apply(action)
            return True
        try:
            loop.call_soon_threadsafe(self._apply, action)
        except RuntimeError:  # the job's loop closed already: the job is over
            return False
        return True

    @property
    def tunable(self) -> Tunable | None:
        """The job's transport if it has knobs and the job has started."""
        return self._tunable

    def _apply(self, action: Action) -> None:
        with self._lock:
            if self.ended or self.control is None:
                return
            tunable, control = self._tunable, self.control
        action(tunable, control)
