"""Periodic schedules: what one is, how it is declared, parsed and checked, and when it ticks.

A schedule submits one task at each of its ticks: the ticks of a cron expression in an
IANA time zone (parsed and evaluated by cronsim, which follows Debian's cron, DST rules
included), or every ``every`` seconds. Interval ticks are the multiples of ``every`` since
the Unix epoch, so every process of a deployment computes the same ticks without talking
to the others (``every=3600`` ticks on the hour, UTC).

The loop that fires the ticks is :mod:`service.scheduler`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, TypedDict, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from . import jsonutil
from .errors import InvalidSubmission, OffloadError
from .models import JSON
from .registry import Registry

MissedPolicy = Literal["skip", "latest"]
MISSED_POLICIES: tuple[MissedPolicy, ...] = ("skip", "latest")
MIN_EVERY = 1.0  # seconds: shorter intervals are a busy loop, not a schedule
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"  # safe in a URL path and in a log line
_NAME = re.compile(NAME_PATTERN)
_FIELDS = frozenset({"name", "task", "cron", "every", "timezone", "args", "kwargs", "missed",
                     "overlap"})
_ONE_MICROSECOND = timedelta(microseconds=1)


class ScheduleError(OffloadError, ValueError):
    """A schedule that cannot run: a bad cron expression, time zone, option, task or
    arguments. The message names the schedule."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"schedule {name!r}: {problem}")
        self.schedule = name


class ScheduleOptions(TypedDict, total=False):
    """How a schedule declared in code ticks (see :class:`Schedule`); ``cron`` or ``every``."""

    cron: str
    every: float
    timezone: str
    args: Sequence[JSON]
    kwargs: Mapping[str, JSON]
    missed: MissedPolicy
    overlap: bool


@dataclass(frozen=True, slots=True)
class Schedule:
    """Submit the task named ``task`` with ``args``/``kwargs`` at each tick.

    Exactly one of ``cron`` (five fields, e.g. ``"*/5 * * * *"``, in ``timezone``) and
    ``every`` (seconds, at least 1) is given. ``missed``: what happens to ticks that fell
    while no process of the deployment ran: ``"skip"`` them (the default), or run the
    ``"latest"`` of them once at start (never one per missed tick). ``overlap``: whether a
    tick starts a task while the one of an earlier tick is still queued or running (by
    default it does not; the tick is skipped and logged).
    """

    name: str
    task: str
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    args: tuple[JSON, ...] = field(default=(), hash=False)
    kwargs: Mapping[str, JSON] = field(default_factory=dict, hash=False)
    missed: MissedPolicy = "skip"
    overlap: bool = False
    zone: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ScheduleError(str(self.name)[:100], "a name is 1 to 100 letters, digits, "
                                "'_', '.' or '-', starting with a letter or digit")
        if not isinstance(self.task, str) or not self.task:
            raise ScheduleError(self.name, "'task' must be the name of a task")
        object.__setattr__(self, "args", tuple(self._json_args()))
        object.__setattr__(self, "kwargs", dict(self._json_kwargs()))
        if self.missed not in MISSED_POLICIES:
            raise ScheduleError(self.name, f"'missed' must be 'skip' or 'latest', "
                                           f"not {self.missed!r}")
        if not isinstance(self.overlap, bool):
            raise ScheduleError(self.name, "'overlap' must be true or false")
        object.__setattr__(self, "zone", self._zone())
        if (self.cron is None) == (self.every is None):
            raise ScheduleError(self.name, "give either 'cron' or 'every', not both or neither")
        if self.cron is not None:
            self._check_cron()
        else:
            self._check_every()

    def _json_args(self) -> Sequence[JSON]:
        if isinstance(self.args, str | bytes) or not isinstance(self.args, Sequence):
            raise ScheduleError(self.name, "'args' must be a list")
        _check_json(self.name, "args", list(self.args))
        return self.args

    def _json_kwargs(self) -> Mapping[str, JSON]:
        if not isinstance(self.kwargs, Mapping):
            raise ScheduleError(self.name, "'kwargs' must be an object")
        _check_json(self.name, "kwargs", dict(self.kwargs))
        return self.kwargs

    def _zone(self) -> tzinfo:
        if not isinstance(self.timezone, str):
            raise ScheduleError(self.name, "'timezone' must be an IANA time zone name")
        if self.timezone == "UTC":
            return UTC
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(self.name, f"unknown time zone {self.timezone!r} (an IANA "
                                           "name such as 'Europe/Paris' or 'UTC')") from None

    def _check_cron(self) -> None:
        cron = self.cron
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise ScheduleError(self.name, f"'cron' must have five fields (minute hour "
                                           f"day-of-month month day-of-week), not {cron!r} "
                                           "(for seconds, use 'every')")
        try:
            first = next(CronSim(cron, datetime.now(self.zone)), None)
        except CronSimError as exc:
            raise ScheduleError(self.name, f"bad cron expression {cron!r}: {exc}") from None
        if first is None:
            raise ScheduleError(self.name, f"cron expression {cron!r} never matches")

    def _check_every(self) -> None:
        every = self.every
        if (isinstance(every, bool) or not isinstance(every, int | float)
                or not math.isfinite(every) or every < MIN_EVERY):
            raise ScheduleError(self.name, f"'every' must be a number of seconds, at least "
                                           f"{MIN_EVERY:g}, not {every!r}")
        if self.timezone != "UTC":
            raise ScheduleError(self.name, "'timezone' applies to 'cron' schedules only "
                                           "('every' counts seconds since the Unix epoch)")

    @classmethod
    def of(cls, name: str, task: str, **options: Any) -> Schedule:
        """A schedule from :class:`ScheduleOptions` (what ``schedule(...)`` methods take)."""
        unknown = sorted(set(options) - _FIELDS)
        if unknown:
            raise ScheduleError(name, f"unknown option(s): {', '.join(unknown)}")
        args, kwargs = options.pop("args", ()), options.pop("kwargs", None) or {}
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise ScheduleError(name, "'args' must be a list")
        return cls(name, task, args=tuple(args), kwargs=kwargs, **options)

    # -- ticks ----------------------------------------------------------------------------

    def next_after(self, moment: float) -> float:
        """The first tick strictly after ``moment`` (epoch seconds)."""
        if self.every is not None:
            return (math.floor(moment / self.every) + 1) * self.every
        found = next(CronSim(cast(str, self.cron), datetime.fromtimestamp(moment, self.zone)),
                     None)
        return math.inf if found is None else found.timestamp()

    def latest_at_or_before(self, moment: float) -> float | None:
        """The last tick at or before ``moment`` (epoch seconds), if there is one."""
        if self.every is not None:
            return math.floor(moment / self.every) * self.every
        start = datetime.fromtimestamp(moment, self.zone) + _ONE_MICROSECOND
        found = next(CronSim(cast(str, self.cron), start, reverse=True), None)
        return None if found is None else found.timestamp()

    def describe(self) -> dict[str, JSON]:
        """What the schedule is, as ``GET /schedules`` shows it (without its state)."""
        when: dict[str, JSON] = ({"cron": self.cron} if self.cron is not None
                                 else {"every": self.every})
        return {"name": self.name, "task": self.task, **when, "timezone": self.timezone,
                "args": list(self.args), "kwargs": dict(self.kwargs),
                "missed": self.missed, "overlap": self.overlap}

    def check_task(self, registry: Registry) -> None:
        """Check that the task is registered and takes the arguments (at start)."""
        if self.task not in registry:
            raise ScheduleError(self.name, f"no task named {self.task!r} is registered")
        try:
            registry.get(self.task).bind(list(self.args), dict(self.kwargs))
        except InvalidSubmission as exc:
            problems = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
            raise ScheduleError(self.name, f"bad arguments for {self.task!r}: "
                                           f"{problems or exc}") from None


def _check_json(name: str, what: str, value: JSON) -> None:
    try:
        jsonutil.check(value)
    except jsonutil.NotJSON as exc:
        raise ScheduleError(name, f"{what!r} is not a JSON value: {exc}") from None


def parse_schedules(raw: str | Sequence[Mapping[str, Any] | Schedule] | None
                    ) -> tuple[Schedule, ...]:
    """Schedules from ``OFFLOAD_SCHEDULES``: a JSON list of objects (or that list as Python
    values, from an app's config). Every error names the schedule (or its index)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"OFFLOAD_SCHEDULES: not valid JSON: {exc}") from None
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise ValueError("OFFLOAD_SCHEDULES: must be a JSON list of schedule objects")
    schedules: dict[str, Schedule] = {}
    for index, item in enumerate(raw):
        schedule = _one(index, item)
        if schedule.name in schedules:
            raise ScheduleError(schedule.name, "two schedules have this name")
        schedules[schedule.name] = schedule
    return tuple(schedules.values())


def _one(index: int, item: object) -> Schedule:
    if isinstance(item, Schedule):
        return item
    if not isinstance(item, Mapping):
        raise ValueError(f"OFFLOAD_SCHEDULES[{index}]: must be an object with 'name', "
                         "'task' and 'cron' or 'every'")
    name = item.get("name")
    label = name if isinstance(name, str) else f"#{index}"
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise ScheduleError(label, f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                   f"known: {', '.join(sorted(_FIELDS))}")
    for required in ("name", "task"):
        if required not in item:
            raise ScheduleError(label, f"{required!r} is missing")
    return Schedule(**{str(k): v for k, v in item.items()})


__all__ = ["MissedPolicy", "Schedule", "ScheduleError", "ScheduleOptions", "parse_schedules"]
