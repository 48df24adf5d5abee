"""A clock that moves only when a test moves it, for the scheduler (service/scheduler.py)."""

from __future__ import annotations

import asyncio

SETTLE_TIMEOUT = 10.0  # seconds a woken loop gets to go back to sleep (generous: a shared CI)


class FakeClock:
    """Epoch seconds that stand still until :meth:`advance`; a sleeper wakes once the time
    passes its deadline. :meth:`advance` returns once every loop it woke sleeps again, so a
    test reads what the ticks did without guessing how long they take."""

    def __init__(self, now: float) -> None:
        self._now = now
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._watchers: list[asyncio.Future[None]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        entry = (self._now + max(0.0, seconds), asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        for watcher in self._watchers:
            if not watcher.done():
                watcher.set_result(None)
        self._watchers.clear()
        try:
            await entry[1]
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    @property
    def sleepers(self) -> int:
        return len(self._sleepers)

    async def wait_asleep(self, count: int = 1) -> None:
        """Return once ``count`` loops are asleep (e.g. after a service started)."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while self.sleepers < count:
                watcher = asyncio.get_running_loop().create_future()
                self._watchers.append(watcher)
                await watcher

    async def advance(self, seconds: float) -> None:
        """Move the time on, wake who is due, and wait until every sleeper sleeps again."""
        count = self.sleepers
        self._now += seconds
        for entry in list(self._sleepers):
            if entry[0] <= self._now:
                self._sleepers.remove(entry)
                entry[1].set_result(None)
        await self.wait_asleep(count)

    async def advance_to(self, moment: float) -> None:
        """Move the time on to ``moment`` (see :meth:`advance`)."""
        assert moment >= self._now, "a fake clock only moves forward here"
        await self.advance(moment - self._now)
