"""The service's background upkeep: sweeping out old records, and following the changes
other processes make to a shared store (its change feed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .errors import StoreUnavailable
from .events import wait_until_set
from .models import TaskRecord
from .stores.base import ChangeKind, ChangeListener, TaskStore

log = logging.getLogger("offload")
MIN_SWEEP_AFTER = 100  # finished records that start a sweep early, at the least


class Sweeper:
    """Evicts old records every ``interval`` seconds, and also as soon as a tenth of
    ``max_records`` (at least ``MIN_SWEEP_AFTER``) have finished since the last sweep, so
    that a busy service holds about ``max_records``, not what an interval brings."""

    def __init__(self, evict: Callable[[], Awaitable[int]], interval: float,
                 max_records: int) -> None:
        self._evict = evict
        self._interval = interval
        self._after = max(MIN_SWEEP_AFTER, max_records // 10)
        self._finished = 0
        self._now = asyncio.Event()

    def finished(self) -> None:
        """One more record has finished."""
        self._finished += 1
        if self._finished >= self._after:
            self._now.set()

    async def run(self) -> None:
        """Sweep for ever (cancel to stop); a failed sweep is logged and tried again."""
        while True:
            await wait_until_set(self._now, self._interval)
            self._now.clear()
            self._finished = 0
            try:
                await self._evict()
            except Exception:
                log.exception("evicting old task records failed")


async def follow_changes(store: TaskStore, listener: ChangeListener, interval: float) -> None:
    """Read the feed every ``interval`` seconds for ever, handing each change to
    ``listener``; a store that is down is said once, and once more when it is back."""
    cursor: int | None = None
    failing_since: float | None = None  # a store that is down is said once, not per poll
    while True:
        try:
            cursor, changes = await store.changes_since(cursor)
        except Exception as exc:
            if failing_since is None:
                failing_since = time.monotonic()
                log.warning("reading the store's changes failed; trying again every %gs",
                            interval,
                            exc_info=not isinstance(exc, StoreUnavailable))
        else:
            if failing_since is not None:
                log.warning("reading the store's changes works again after %.1fs",
                            time.monotonic() - failing_since)
                failing_since = None
            hand_on(changes, listener)
        await asyncio.sleep(interval)


def hand_on(changes: list[tuple[ChangeKind, TaskRecord]], listener: ChangeListener) -> None:
    """Give each change to ``listener``; one that fails is logged, the rest still go."""
    for kind, record in changes:
        try:
            listener(kind, record)
        except Exception:  # one bad listener must not stop the feed for the rest
            log.exception("handing on a change of task %s failed", record.id)
