"""How long the scheduler's workers may keep the event loop before they let it go."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WORKER_TURN = 0.001  # seconds of jobs run back to back in one pass of the loop


class LoopTurns:
    """A budget of ``seconds`` per pass of the event loop, shared by every worker.

    Shared, not given to each: a hundred workers each running a millisecond of jobs would
    hold the loop for a tenth of a second. The budget starts afresh when a marker callback,
    queued behind everything that is ready now, runs. A job that awaits something has let
    the loop's other callbacks run anyway.
    """

    def __init__(self, seconds: float = WORKER_TURN,
                 clock: Callable[[], float] = time.monotonic) -> None:  # loop.time()'s clock
        self._seconds = seconds
        self._clock = clock
        self._marked = False
        self._began = 0.0

    def spent(self) -> bool:
        """Whether this pass has had its budget: then the caller should yield."""
        now = self._clock()
        if not self._marked:
            self._marked = True
            self._began = now
            asyncio.get_running_loop().call_soon(self._end)
        return now - self._began >= self._seconds

    def _end(self) -> None:
        self._marked = False
