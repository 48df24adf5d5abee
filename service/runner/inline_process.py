"""Process and thread tasks inside the process that runs the attempt: a Celery prefork
pool's child.

Celery's prefork pool already runs each task in a process of its own, which Celery
restarts when it ends; starting a second process per task would only add a hop. The
function runs in a thread of that process (its event loop keeps the lease, progress and
cancel checks going meanwhile). A thread cannot be stopped, so a cancel or timeout marks
the process for exit: once the attempt is settled, the worker ends the process
(:attr:`InlineProcessExecutor.must_exit`), which is what killing a process task means.

That thread alone takes the process pool's lower CPU priority (``lower``, run first in
it): on Linux a nice value and a scheduling policy belong to a thread, so the event loop's
thread, which renews the lease, keeps the process's own priority. (On macOS a nice value
is the whole process's.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..context import TaskContext
from .executors import ThreadExecutor
from .job import Job


class InlineProcessExecutor(ThreadExecutor):
    """One process task at a time, in this process; cancelling it dooms the process."""

    def __init__(self, lower: Callable[[], object] | None = None) -> None:
        super().__init__(1, lower)
        self.must_exit = False

    @property
    def cancellable(self) -> bool:
        return True

    async def run(self, job: Job, context: TaskContext) -> Any:
        try:
            return await super().run(job, context)
        except asyncio.CancelledError:
            self.must_exit = True  # its thread computes on: only the process's end stops it
            raise


class InlineThreadExecutor(ThreadExecutor):
    """``def`` tasks in a prefork pool's child, with Celery's soft and hard limits: a stop
    (a cancel, a timeout) makes ``cancel_requested()`` true, and a function that has not
    returned ``grace`` seconds later dooms the process (:attr:`must_exit`), which ends it
    once the attempt is settled. The outcome is the stop's either way."""

    def __init__(self, capacity: int, grace: float) -> None:
        super().__init__(capacity)
        self.grace = grace
        self.must_exit = False

    @property
    def cancellable(self) -> bool:
        return True

    async def run(self, job: Job, context: TaskContext) -> Any:
        call = asyncio.ensure_future(super().run(job, context))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            self.must_exit = True  # unless it returns in time: only the process's end stops it
            await self._grace(call)
            if call.done():
                self.must_exit = False
                if not call.cancelled():
                    call.exception()  # retrieved: the stop's outcome stands, not the call's
            raise

    async def _grace(self, call: asyncio.Future[Any]) -> None:
        """Wait up to ``grace`` for the call to return. A stop that comes again meanwhile
        (each lease renewal repeats a pending cancel; the runner counts every cancel it
        sends) does not cut the grace short."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        while not call.done() and (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait({call}, timeout=left)
            except asyncio.CancelledError:
                continue
