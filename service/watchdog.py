"""Notices when something blocks the event loop, and names the task type doing it.

A heartbeat coroutine measures how late the loop wakes it (the lag, exported as a metric). A
thread watches the heartbeat: when it goes stale past the threshold, the loop is blocked
right now, so the thread reads the loop thread's stack and finds the task function on it —
an ``async def`` task calling ``time.sleep``, say — and logs a warning naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType

log = logging.getLogger("offload.watchdog")
Culprits = Callable[[], dict[CodeType, str]]


class LoopWatchdog:
    """Measures event-loop lag; warns once per episode of blocking, naming the culprit."""

    def __init__(self, threshold: float, culprits: Culprits,
                 on_lag: Callable[[float], None], on_block: Callable[[str], None]) -> None:
        self.threshold = threshold
        self._interval = threshold / 2
        self._culprits = culprits
        self._on_lag = on_lag
        self._on_block = on_block
        self._beat = time.monotonic()
        self._stopped = threading.Event()
        self._heart: asyncio.Task[None] | None = None
        self._measured = asyncio.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching the running loop (call from the loop's thread)."""
        loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._heart = asyncio.create_task(self._heartbeat(), name="offload:heartbeat")
        self._thread = threading.Thread(target=self._watch, args=(loop_thread,), daemon=True,
                                        name="offload-watchdog")
        self._thread.start()

    async def stop(self) -> None:
        self._stopped.set()
        if self._heart is not None:
            self._heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heart

    async def _heartbeat(self) -> None:
        while True:
            due = time.monotonic() + self._interval
            self._beat = due  # the loop is late from the moment the heartbeat is due
            await asyncio.sleep(self._interval)
            self._on_lag(max(0.0, time.monotonic() - due))
            async with self._measured:
                self._measured.notify_all()

    async def next_measurement(self) -> None:
        """Wait until the heartbeat has measured the lag once more."""
        async with self._measured:
            await self._measured.wait()

    def _watch(self, loop_thread: int) -> None:
        reported_beat = None
        while not self._stopped.wait(self._interval):
            beat = self._beat
            stalled = time.monotonic() - beat
            if stalled < self.threshold or beat == reported_beat:
                continue
            reported_beat = beat  # one warning per episode: until the heartbeat moves on
            try:
                self._report(loop_thread, stalled)
            except Exception:  # the watchdog must outlive a bad report
                log.exception("the event-loop watchdog could not report a block")

    def _report(self, loop_thread: int, stalled: float) -> None:
        culprit = self._find_culprit(sys._current_frames().get(loop_thread))
        self._on_block(culprit or "unknown")
        log.warning("event loop blocked for %.3fs so far, by %s", stalled,
                    f"task type {culprit!r}" if culprit else "code outside any task",
                    extra={"event": "loop_blocked", "task_name": culprit,
                           "blocked_seconds": round(stalled, 3)})

    def _find_culprit(self, frame: FrameType | None) -> str | None:
        names = self._culprits()
        while frame is not None:
            name = names.get(frame.f_code)
            if name is not None:
                return name
            frame = frame.f_back
        return None
