"""A broker job's knobs in each worker process: its calls at once, its rate, its pause.

The controller of a running broker job may turn its knobs (`JobHandle.set_workers`,
`set_rate`, `pause`, `resume`): it writes them all, as one JSON object (`encode_knobs`), in the
`knobs` field of the job's meta hash. Every worker process's keeper reads that field each poll
interval and applies a change between two items (`apply_knobs`): no call is interrupted, no
item is lost.

- `workers=n` is per process, like `--workers`: at most `n` of the job's calls run at once in
  each process. A process whose `--workers` is lower grows its slots to `n` while the job asks
  for it (the extra slots retire when it asks for fewer again or ends: the idle ones at once,
  the busy ones after their item). A process never runs more than `MAX_WORKERS` (10 000)
  slots, whatever the field says.
- `max_per_second`/`burst`: the job's rate limit from then on, shared by every process as
  before (`rate_limit`); None removes it.
- `paused`: no process starts a call of the job (nor a retry) until it is resumed; the calls
  in flight finish.

A job that asks for `workers=Adaptive(...)` gets, in each process, an adaptive limit over that
process's slots (`pcmodel.adaptive.AimdLimit`, between `min` and `max`, both capped at the
process's slots), fed by every attempt's outcome there, retries included; a Retry-After holds
back that process's calls of the job. (One limit shared by every process would live in Redis,
as the shared rate limit does: see `docs/architecture.md`.)

Each process's gate for a job (`ProcessGate`): every attempt waits for a turn (at most `limit`
in flight, none while paused or held), then for the rate limit, and reports how it ended.
Only a job that needs one gets a gate: a job with neither knobs turned nor an adaptive pool
calls its function as before, at no cost per item.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from typing import NamedTuple

from pcmodel._turns import Turns
from pcmodel._validate import MAX_WORKERS
from pcmodel.adaptive import AimdLimit, drop_kind, retry_after
from pcmodel.broker._process import Job, ProcessState
from pcmodel.broker.rate_limit import SharedRateLimiter
from pcmodel.policies import MIN_RATE, RateLimiter
from pcmodel.worker import Policies

__all__ = ["Knobs", "apply_knobs", "decode_knobs", "encode_knobs", "room", "start_job"]

logger = logging.getLogger("pcmodel.broker")


class Knobs(NamedTuple):
    """A running job's knobs, as its controller last set them."""

    workers: int | None = None
    """Calls of the job at once in each process; None: as the job started."""
    rate: tuple[float | None, int] | None = None
    """`(max_per_second, burst)` from now on (`max_per_second` None: no limit); None: as the
    job started."""
    paused: bool = False
    """Start no call of the job."""
    rate_changes: int = 0
    """How many times the rate was set: the N-th books on a schedule of its own (`rate:N`)."""


def encode_knobs(knobs: Knobs) -> bytes:
    """The knobs as the JSON text of the meta hash's `knobs` field."""
    rate = None
    if knobs.rate is not None:
        rate = {"max_per_second": knobs.rate[0], "burst": knobs.rate[1], "generation": knobs.rate_changes}
    return json.dumps({"workers": knobs.workers, "rate": rate, "paused": knobs.paused}).encode()


def decode_knobs(raw: object) -> Knobs:
    """Read the `knobs` field.

    Raises:
        ValueError, TypeError: the field is not knobs a controller wrote (not JSON, a value out
            of range or of the wrong type).
    """
    try:
        data = json.loads(raw)  # type: ignore[arg-type]
    except (ValueError, TypeError, RecursionError) as error:
        raise ValueError(f"the job's knobs are not JSON: {error}") from None
    if not isinstance(data, dict):
        raise TypeError("the job's knobs are not a JSON object")
    workers, rate, paused = data.get("workers"), data.get("rate"), data.get("paused", False)
    if workers is not None and (type(workers) is not int or workers < 1):
        raise ValueError(f"the job's workers knob must be an int >= 1, got {workers!r}")
    if type(paused) is not bool:
        raise ValueError(f"the job's paused knob must be true or false, got {paused!r}")
    if rate is None:
        return Knobs(workers, None, paused)
    if not isinstance(rate, dict):
        raise TypeError(f"the job's rate knob is not readable: {rate!r}")
    per_second, burst, generation = rate.get("max_per_second"), rate.get("burst"), rate.get("generation")
    if type(generation) is not int or generation < 1:
        raise ValueError(f"the job's rate knob has no generation (an int >= 1): {rate!r}")
    if per_second is not None and (
        type(per_second) not in (int, float) or not math.isfinite(per_second) or per_second < MIN_RATE
    ):
        raise ValueError(f"the job's max_per_second knob must be a number >= {MIN_RATE}, got {per_second!r}")
    if type(burst) is not int or burst < 1:
        raise ValueError(f"the job's burst knob must be an int >= 1, got {burst!r}")
    return Knobs(workers, (None if per_second is None else float(per_second), burst), paused, generation)


class ProcessGate(Turns):
    """One job's attempts in one worker process: its `pcmodel.policies.AttemptGate`.

    An attempt starts only while fewer than `limit` of the job's attempts are in flight here,
    the job is not paused, and no Retry-After holds it, first come first served (so a retry
    waits its turn behind the items already waiting); then it waits for the rate limit. Its
    outcome feeds the adaptive limit, if the job has one. These are the rules of the
    in-process pool's gate (`pcmodel._pool`), over a process's slots instead of its lanes: the
    slots take items of every job from one buffer, so the gate is all a job has here.
    """

    def __init__(
        self,
        limit: int,
        aimd: AimdLimit | None,
        limiter: RateLimiter | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(loop, aimd.limit if aimd is not None else limit)
        self.aimd = aimd
        self.limiter = limiter
        self.paused = False
        self.resume_at = -math.inf
        """No attempt starts before then (loop time): a Retry-After."""
        self._timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> bool:
        """True while no attempt may start: paused, or waiting out a Retry-After."""
        return self.paused or self.loop.time() < self.resume_at

    def set_limit(self, limit: int) -> None:
        """Set the limit by hand (an adaptive one moves on from there)."""
        if self.aimd is not None:
            self.aimd.set_limit(limit, "set_workers")
            limit = self.aimd.limit
        self.limit = limit
        self.pass_turns()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.pass_turns()

    async def enter(self) -> float:
        await self.take_turn()
        if self.limiter is not None:
            try:
                await self.limiter.acquire()
            except BaseException:
                self.give_turn_back()
                raise
        return self.loop.time()

    def leave(self, started_at: float, error: BaseException | None) -> None:
        in_flight = self.in_flight  # this attempt included
        self.give_turn_back()
        aimd = self.aimd
        if aimd is None:
            return
        now = self.loop.time()
        kind = drop_kind(error, aimd.spec.congestion)
        if kind is None:
            if error is None:
                aimd.on_success(started_at, now - started_at, in_flight=in_flight)
        else:
            pause = retry_after(error)
            if pause is not None and aimd.spec.max_pause > 0:
                self._hold_until(now + min(pause, aimd.spec.max_pause))
            aimd.on_drop(started_at, kind)
        self.limit = aimd.limit
        self.pass_turns()

    def close(self) -> None:
        """The job ended here: no timer may fire after it."""
        if self._timer is not None:
            self._timer.cancel()

    def _hold_until(self, until: float) -> None:
        if until <= self.resume_at:
            return
        self.resume_at = until
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(until, self._hold_over)

    def _hold_over(self) -> None:
        self._timer = None
        self.pass_turns()


def _gate(process: ProcessState, job: Job, limit: int) -> ProcessGate:
    """The job's gate in this process, made on first need."""
    if job.gate is None:
        settings = job.settings
        aimd = None
        if settings is not None and settings.adaptive is not None:
            # Per process: the limit moves between min and max, both capped at its slots.
            spec, slots = settings.adaptive, process.base_workers
            capped = min(spec.max, slots)
            spec = dataclasses.replace(
                spec,
                min=min(spec.min, capped),
                max=capped,
                initial=None if spec.initial is None else min(spec.initial, capped),
            )
            aimd = AimdLimit(spec, process.loop.time, record=False)
        job.gate = ProcessGate(limit, aimd, job.limiter, process.loop)
        job.policies = _policies(job)
    return job.gate


def _policies(job: Job) -> Policies | None:
    """What wraps each call of the job: its timeout, retries, and its gate or its rate limit."""
    settings = job.settings
    timeout = settings.timeout if settings is not None else None
    retry = settings.retry if settings is not None else None
    if job.gate is not None:
        # The gate waits for the rate limit itself, after the turn: not twice.
        return Policies(timeout, retry, None, job.gate)
    if timeout is None and retry is None and job.limiter is None:
        return None
    return Policies(timeout, retry, job.limiter)


def _limiter(
    process: ProcessState, job: Job, per_second: float | None, burst: int, generation: int = 0
) -> RateLimiter | None:
    if per_second is None:
        return None
    return SharedRateLimiter(per_second, burst, process.client, job.keys, generation)


def start_job(process: ProcessState, job: Job) -> None:
    """A job this process just learned of: its rate limit, and its gate if it is adaptive."""
    settings = job.settings
    if settings is None:
        return
    job.limiter = _limiter(process, job, settings.max_per_second, settings.burst)
    job.policies = _policies(job)
    if settings.adaptive is not None:
        _gate(process, job, process.base_workers)


def apply_knobs(process: ProcessState, job: Job, raw: object) -> None:
    """Apply the job's knobs (the meta hash's `knobs` field) if they changed since last time."""
    if raw == job.knobs or job.settings is None:
        return
    job.knobs = raw
    if raw is None:
        return
    try:
        knobs = decode_knobs(raw)
    except (ValueError, TypeError) as unreadable:
        logger.error("job %s: ignored knobs this worker cannot read: %s", job.keys.job_id, unreadable)
        return
    if knobs.workers is not None and knobs.workers > MAX_WORKERS:
        # Its controller checks the cap; a field written by other means must not make this
        # process build a task per slot asked for until memory runs out.
        logger.warning(
            "job %s: its knobs ask for %d calls at once; this process runs at most %d",
            job.keys.job_id,
            knobs.workers,
            MAX_WORKERS,
        )
        knobs = knobs._replace(workers=MAX_WORKERS)
    if knobs.rate is not None and knobs.rate_changes != job.rate_changes:
        old, job.limiter = job.limiter, _limiter(process, job, *knobs.rate, knobs.rate_changes)
        job.rate_changes = knobs.rate_changes
        if isinstance(old, SharedRateLimiter):
            old.retire(job.limiter)  # its calls waiting for a slot book with the new rate
        if job.gate is not None:
            job.gate.limiter = job.limiter
    if knobs.workers is not None or knobs.paused or job.gate is not None:
        gate = _gate(process, job, knobs.workers or process.base_workers)
        if knobs.workers is not None:
            aimd = gate.aimd
            wanted = knobs.workers
            if aimd is not None:
                wanted = max(aimd.spec.min, min(wanted, aimd.spec.max))
            gate.set_limit(wanted)
            job.workers = knobs.workers if aimd is None else None
        if knobs.paused != gate.paused:
            (gate.pause if knobs.paused else gate.resume)()
    job.policies = _policies(job)
    process.resize()
    logger.info("job %s: knobs now %s", job.keys.job_id, knobs)


def room(job: Job) -> int | None:
    """How many more of the job's items this process may take now; None: as many as it has slots.

    A job with a gate holds at most its limit here (none while paused), so the items it
    cannot start yet wait in Redis, where another process can take them.
    """
    gate = job.gate
    if gate is None:
        return None
    if gate.held:
        return 0
    # The items whose results wait for the writer no longer count: they are done running.
    return max(0, gate.limit - (len(job.inflight) - job.written_soon))
