"""The loop that fires schedules' ticks: one per :class:`~service.core.TaskService`.

Every process of a deployment runs it, and no process is special: at each tick each one
submits the tick's task under an idempotency key made of the schedule's name and the tick's
time, so the store's uniqueness rule keeps one task per tick, however many processes try.
What must be the same everywhere (paused or not, the last tick handled, the last task) is
kept in the store (:meth:`TaskStore.get_meta`), changed only by compare-and-set.

Time comes from a :class:`Clock` (a fake one in tests): the loop reads it each time it wakes
and computes the next tick from it, so sleeps never add up to a drift, and after a suspend
or a clock jump only the latest tick that passed runs, once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import NotRunning, OffloadError, QueueFull, ShuttingDown, StoreUnavailable
from .events import cancel_loops
from .models import JSON, Submission, TaskRecord, isoformat
from .registry import Registry
from .schedules import Schedule, ScheduleError
from .stores.base import TaskStore

log = logging.getLogger("offload.schedules")
MAX_NAP = 5.0
"""Seconds the loop sleeps at most before reading the clock again: a suspended machine or
a clock set forward is noticed within this, whatever the monotonic timer did meanwhile."""
CAS_TRIES = 50  # compare-and-set rounds before giving up on a change (a few processes race)
STATE_PREFIX = "schedule:"
# The idempotency key of a tick starts with a control character, which an HTTP
# Idempotency-Key cannot hold: no client's submission can take a tick's place.
KEY_PREFIX = "\x1fschedule:"

Submit = Callable[[Submission, str], Awaitable[tuple[TaskRecord, bool]]]


class Clock(Protocol):
    """Where the scheduler reads the time (epoch seconds) and sleeps."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ScheduleNotFound(OffloadError, LookupError):
    """No schedule has this name."""


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What every process shares about one schedule (stored as JSON in the store)."""

    paused: bool = False
    last_tick: float | None = None
    """The latest tick handled: its task submitted, or skipped (paused, overlapping)."""
    last_task_id: str | None = None
    last_run_at: float | None = None
    """The tick of ``last_task_id``."""

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes | None, name: str) -> ScheduleState:
        if raw is None:
            return cls()
        try:
            values = json.loads(raw)
            return cls(bool(values["paused"]), values["last_tick"], values["last_task_id"],
                       values["last_run_at"])
        except (ValueError, KeyError, TypeError):
            log.warning("schedule %s: its stored state is unreadable; starting afresh", name)
            return cls()


class Scheduler:
    """Fires the ticks of its schedules (see the module's docstring)."""

    def __init__(self, store: TaskStore, submit: Submit, clock: Clock | None = None) -> None:
        self._store = store
        self._submit = submit
        self.clock: Clock = clock or SystemClock()
        self._schedules: dict[str, Schedule] = {}
        self._last: dict[str, float] = {}  # the latest tick this process has handled
        self._loop: asyncio.Task[None] | None = None
        self._started = False

    # -- declaring ------------------------------------------------------------------------

    def add(self, schedule: Schedule) -> Schedule:
        """Add a schedule (before :meth:`start`)."""
        if self._started:
            raise RuntimeError(f"schedule {schedule.name!r}: declare schedules before the "
                               "task service starts")
        known = self._schedules.get(schedule.name)
        if known is not None and known != schedule:
            raise ScheduleError(schedule.name, "another schedule already has this name")
        self._schedules[schedule.name] = schedule
        return schedule

    def __iter__(self) -> Iterator[Schedule]:
        return iter(sorted(self._schedules.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._schedules)

    def get(self, name: str) -> Schedule:
        try:
            return self._schedules[name]
        except KeyError:
            raise ScheduleNotFound(name) from None

    def check(self, registry: Registry) -> None:
        """Refuse to start with a schedule that cannot run (raises :class:`ScheduleError`)."""
        for schedule in self:
            schedule.check_task(registry)
            if not self._store.supports_meta:
                raise ScheduleError(schedule.name, f"the task store ({type(self._store).__name__}"
                                    ") cannot keep schedule state; use memory://, sqlite:// "
                                    "or redis://")

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop (if there is any schedule)."""
        self._started = True
        if self._schedules and self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="offload:scheduler")

    async def stop(self) -> None:
        """Stop the loop at once (a tick being submitted is abandoned with it)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            await cancel_loops([loop])

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called (no schedule may be added after it)."""
        return self._started

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._loop.done()

    async def _run(self) -> None:
        started = self.clock.now()
        log.info("schedules started: %s", ", ".join(s.name for s in self),
                 extra={"event": "schedules_started", "at": isoformat(started),
                        "schedules": [s.name for s in self]})
        for schedule in self:
            self._last[schedule.name] = started
            if not await self._guarded(self._begin(schedule, started)):
                return
        while True:
            wake = math.inf
            now = self.clock.now()
            for schedule in self:
                if not await self._guarded(self._fire_if_due(schedule, now)):
                    return
                wake = min(wake, schedule.next_after(max(now, self._last[schedule.name])))
            delay = wake - self.clock.now()
            if delay > 0:
                await self.clock.sleep(min(delay, MAX_NAP))

    async def _guarded(self, step: Coroutine[Any, Any, None]) -> bool:
        """Run one step; False when the service no longer takes tasks (the loop ends).
        Any other failure is logged, and the loop goes on."""
        try:
            await step
        except (ShuttingDown, NotRunning):
            return False
        except StoreUnavailable as exc:  # said without a traceback: /readyz says it too
            log.warning("a schedule's tick was not handled: %s", exc)
        except Exception:
            log.exception("a schedule's tick failed")
        return True

    async def _begin(self, schedule: Schedule, started: float) -> None:
        """At start: apply the ``missed`` policy to ticks that fell while nothing ran."""
        state = await self.state(schedule.name)
        latest = schedule.latest_at_or_before(started)
        if state.last_tick is None or latest is None or latest <= state.last_tick:
            return  # never ran before, or nothing was missed
        if schedule.missed == "latest":
            _log(logging.INFO, schedule, latest, "schedule_catch_up",
                 f"runs the latest tick missed since {isoformat(state.last_tick)}, once")
            await self._fire(schedule, latest)
        else:
            _log(logging.INFO, schedule, latest, "schedule_missed",
                 f"skips the ticks missed since {isoformat(state.last_tick)} (missed: skip)")

    async def _fire_if_due(self, schedule: Schedule, now: float) -> None:
        last = self._last[schedule.name]
        due = schedule.latest_at_or_before(now)
        if due is None or due <= last:
            return
        expected = schedule.next_after(last)
        self._last[schedule.name] = due
        if due > expected:  # woken late: a suspend, a clock jump, a stalled loop
            _log(logging.WARNING, schedule, due, "schedule_coalesced",
                 f"ticks from {isoformat(expected)} passed while this process did not run; "
                 "only the latest runs", missed_from=isoformat(expected))
        await self._fire(schedule, due)

    async def _fire(self, schedule: Schedule, tick: float) -> None:
        """Handle one tick: skip it if it is handled, paused or would overlap; else submit
        its task (once in the deployment, by its idempotency key) and record it."""
        state = await self.state(schedule.name)
        if state.last_tick is not None and state.last_tick >= tick:
            _log(logging.DEBUG, schedule, tick, "schedule_tick", "handled by another process")
            return
        if state.paused:
            await self._advance(schedule.name, tick)
            _log(logging.INFO, schedule, tick, "schedule_skipped", "skipped: paused")
            return
        if not schedule.overlap and state.last_task_id is not None:
            previous = await self._store.get(state.last_task_id)
            if previous is not None and not previous.terminal:
                await self._advance(schedule.name, tick)
                _log(logging.INFO, schedule, tick, "schedule_skipped",
                     f"skipped: task {previous.id} of an earlier tick is still "
                     f"{previous.status.value}", task_id=previous.id)
                return
        submission = Submission(schedule.task, list(schedule.args), dict(schedule.kwargs))
        try:
            record, created = await self._submit(submission, tick_key(schedule.name, tick))
        except QueueFull:
            _log(logging.WARNING, schedule, tick, "schedule_skipped", "skipped: queue full")
            return
        await self._advance(schedule.name, tick, record.id)
        _log(logging.INFO, schedule, tick, "schedule_tick",
             f"submitted task {record.id}" if created
             else f"task {record.id} was submitted by another process",
             task_id=record.id, new_task=created)

    # -- the shared state -----------------------------------------------------------------

    async def state(self, name: str) -> ScheduleState:
        """The schedule's shared state, as the store has it now."""
        return ScheduleState.decode(await self._store.get_meta(STATE_PREFIX + name), name)

    async def _advance(self, name: str, tick: float, task_id: str | None = None) -> None:
        """Record ``tick`` as handled (with its task), unless a later one already is."""
        def change(state: ScheduleState) -> ScheduleState | None:
            if state.last_tick is not None and state.last_tick >= tick:
                return None
            if task_id is None:
                return dataclasses.replace(state, last_tick=tick)
            return dataclasses.replace(state, last_tick=tick, last_task_id=task_id,
                                       last_run_at=tick)
        await self._change(name, change)

    async def set_paused(self, name: str, paused: bool) -> ScheduleState:
        """Pause or resume a schedule for every process; returns the state after."""
        schedule = self.get(name)
        state = await self._change(schedule.name, lambda s: dataclasses.replace(s, paused=paused))
        log.info("schedule %s %s", name, "paused" if paused else "resumed",
                 extra={"event": "schedule_paused" if paused else "schedule_resumed",
                        "schedule": name})
        return state

    async def _change(self, name: str,
                      change: Callable[[ScheduleState], ScheduleState | None]) -> ScheduleState:
        key = STATE_PREFIX + name
        for _ in range(CAS_TRIES):
            raw = await self._store.get_meta(key)
            state = ScheduleState.decode(raw, name)
            changed = change(state)
            if changed is None:
                return state
            if await self._store.compare_and_set_meta(key, raw, changed.encode()):
                return changed
        raise RuntimeError(f"schedule {name!r}: its state kept changing under us; gave up")

    # -- describing -----------------------------------------------------------------------

    async def describe(self, name: str, state: ScheduleState | None = None) -> dict[str, JSON]:
        """The schedule as ``GET /schedules`` shows it: what it is, and its shared state."""
        schedule = self.get(name)
        state = state or await self.state(name)
        last = await self._store.get(state.last_task_id) if state.last_task_id else None
        upcoming = None if state.paused else schedule.next_after(self.clock.now())
        return {**schedule.describe(),
                "next_run_at": isoformat(upcoming) if upcoming is not None
                and math.isfinite(upcoming) else None,
                "last_run_at": isoformat(state.last_run_at),
                "last_task_id": state.last_task_id,
                "last_status": last.status.value if last is not None else None,
                "paused": state.paused}


def tick_key(name: str, tick: float) -> str:
    """The idempotency key of a schedule's tick: the same in every process."""
    return f"{KEY_PREFIX}{name}@{isoformat(tick)}"


def _log(level: int, schedule: Schedule, tick: float, event: str, message: str,
         **fields: object) -> None:
    if log.isEnabledFor(level):
        log.log(level, "schedule %s tick %s: %s", schedule.name, isoformat(tick), message,
                extra={"event": event, "schedule": schedule.name, "tick": isoformat(tick),
                       "task_name": schedule.task, **fields})


__all__ = ["Clock", "ScheduleNotFound", "ScheduleState", "Scheduler", "SystemClock",
           "tick_key"]
