"""Per-type rate limits: "at most N starts per second, minute or hour", as Celery's
``rate_limit="10/m"``.

A limit is kept by a *sliding log* of start times per task name, in the store: a record of
the name may start at ``now`` only if the N-th newest start is at least a window before
``now``. So no window of that length ever holds more than N starts, wherever the window is
put (a token bucket or GCRA would let up to 2N - 1 through in some windows). The store keeps
only the N newest starts of a name, so the log stays small.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .models import JSON

PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_STARTS = 10_000
"""The largest N: every store keeps up to N start times per limited name."""
SPACING = 1e-6
"""A start is held back until a whole period *and a microsecond* have passed since the
N-th newest one: times are shown to the microsecond, so shown times also keep the limit."""
_FORM = re.compile(r"([0-9]+)/([1-9][0-9]{0,5})?([smh])")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``starts`` starts of a task type in any ``period`` seconds."""

    starts: int
    period: float

    def __post_init__(self) -> None:
        if not (self.starts >= 1 and self.period > 0):
            raise ValueError("a rate limit needs at least 1 start in a period above 0")

    @property
    def text(self) -> str:
        """The canonical form: ``"10/m"``, ``"1/5s"``."""
        for unit, seconds in reversed(PERIODS.items()):
            count = self.period / seconds
            if count.is_integer():
                return f"{self.starts}/{'' if count == 1 else int(count)}{unit}"
        return f"{self.starts}/{self.period!r}s"

    @property
    def window(self) -> float:
        """How long after a start it still counts against the limit (period + 1 µs)."""
        return self.period + SPACING

    def holds_back(self, nth_newest: float | None, now: float) -> bool:
        """Whether a start at ``now`` would break the limit, given the name's N-th newest
        start (None: it has started fewer than N times)."""
        return nth_newest is not None and now - nth_newest < self.window

    def next_start(self, nth_newest: float | None, now: float) -> float | None:
        """When a start is next allowed, if ``now`` is too soon; None if it is not."""
        if nth_newest is None or not self.holds_back(nth_newest, now):
            return None
        at = nth_newest + self.window  # rounded: the first float the test allows is near
        while self.holds_back(nth_newest, at):
            at = math.nextafter(at, math.inf)
        while not self.holds_back(nth_newest, below := math.nextafter(at, -math.inf)):
            at = below
        return at

    def describe(self) -> dict[str, JSON]:
        """The parsed form shown by ``GET /task-types``."""
        return {"starts": self.starts, "period": self.period}


def parse_rate_limit(value: object) -> RateLimit:
    """``"10/s"``, ``"10/m"``, ``"10/h"``, or a whole number of starts per second (Celery's
    forms, strictly); a count of units may come before the unit: ``"1/5s"``, ``"100/15m"``.
    Raises ValueError saying what is accepted."""
    if isinstance(value, RateLimit):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        starts, period = value, PERIODS["s"]
    elif isinstance(value, str) and (match := _FORM.fullmatch(value)) is not None:
        starts, period = int(match[1]), int(match[2] or 1) * PERIODS[match[3]]
    else:
        raise ValueError(f"rate_limit must be 'N/s', 'N/m' or 'N/h' (at most N starts per "
                         f"second, minute or hour; '1/5s': per 5 seconds; a whole number N "
                         f"is per second), not {value!r}")
    if not 1 <= starts <= MAX_STARTS:
        raise ValueError(f"rate_limit allows 1 to {MAX_STARTS} starts per period, not "
                         f"{starts} (for a higher rate, use a shorter period: "
                         "'100/s' rather than '360000/h')")
    return RateLimit(starts, period)


def task_rate_limit(task_name: str, value: object) -> RateLimit | None:
    """A task's declared ``rate_limit`` (None: none); a bad one is an error naming it."""
    if value is None:
        return None
    try:
        return parse_rate_limit(value)
    except ValueError as exc:
        raise ValueError(f"task {task_name!r}: {exc}") from None


RateOverrides = tuple[tuple[str, RateLimit | None], ...]
"""``OFFLOAD_RATE_LIMITS`` parsed: per task name, its limit (None: no limit)."""


def parse_rate_overrides(raw: object) -> RateOverrides:
    """``OFFLOAD_RATE_LIMITS``: a JSON object (or a mapping) from task name to a rate limit
    or null, which replaces what the task declared. Raises ValueError naming the setting
    and the task."""
    if isinstance(raw, tuple):
        raw = dict(raw)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ValueError(f"OFFLOAD_RATE_LIMITS: not JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ValueError('OFFLOAD_RATE_LIMITS: a JSON object of task name to rate limit, '
                         'e.g. {"send_email": "10/m"}, not ' + type(raw).__name__)
    overrides: list[tuple[str, RateLimit | None]] = []
    for name, value in raw.items():
        try:
            overrides.append((str(name), task_rate_limit(str(name), value)))
        except ValueError as exc:
            raise ValueError(f"OFFLOAD_RATE_LIMITS: {exc}") from None
    return tuple(overrides)
