"""Rate limits inside a claim, for the stores that pick records in Python (memory, SQLite).

The Redis store does the same in its claim script (``redis_lua_runner.CLAIM``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping

from ..rate_limits import RateLimit
from .base import ClaimRequest, PoolRoom

StartLog = Callable[[str, int], list[float]]
"""The newest start times of a name, at most that many, oldest first."""
NthNewest = Callable[[str, int], float | None]
"""The N-th newest start time of a name, or None if it has fewer."""


class StartRoom(PoolRoom):
    """A claim's pools, plus each rate-limited name's starts: a name whose N-th newest start
    is less than a window before the claim's ``now`` may not start now. Each start this
    claim picks counts at once, so one claim never takes more than the limit allows."""

    __slots__ = ("_logs", "_now", "_rates", "_starts_of")

    def __init__(self, request: ClaimRequest, starts_of: StartLog) -> None:
        super().__init__(request.pools)
        self._rates = request.rates
        self._now = request.now
        self._starts_of = starts_of
        self._logs: dict[str, list[float]] = {}

    def allows(self, name: str) -> bool:
        if not super().allows(name):
            return False
        limit = self._rates.get(name)
        return limit is None or not limit.holds_back(
            nth_newest(self._log(name, limit), limit.starts), self._now)

    def take(self, name: str) -> None:
        super().take(name)
        limit = self._rates.get(name)
        if limit is not None:
            bisect.insort(self._log(name, limit), self._now)

    def _log(self, name: str, limit: RateLimit) -> list[float]:
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = list(self._starts_of(name, limit.starts))
        return log


def nth_newest(oldest_first: list[float], n: int) -> float | None:
    """The n-th newest of a log kept oldest first, or None if it holds fewer."""
    return oldest_first[-n] if len(oldest_first) >= n else None


def earliest_start(rates: Mapping[str, RateLimit], nth_of: NthNewest, now: float
                   ) -> float | None:
    """The earliest time after ``now`` at which a name that its rate holds back now may
    start again; None if none is held back."""
    times = [at for name, limit in rates.items()
             if (at := limit.next_start(nth_of(name, limit.starts), now)) is not None]
    return min(times, default=None)


def log_start(log: list[float], at: float, keep: int) -> None:
    """Add a start to an in-memory log (oldest first), keeping the newest ``keep``."""
    bisect.insort(log, at)
    if len(log) > keep:
        del log[:len(log) - keep]
