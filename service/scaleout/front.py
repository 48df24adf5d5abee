"""Offload's library API inside a task that a Celery worker runs: ``other.submit()``,
``group(...).submit()``, ``handle.refresh()``, ``handle.cancel()``.

Each pool process has one :class:`WorkerFront`, a :class:`~service.core.TaskService` that
only accepts, reads and cancels, on a store connection of its own: the records it adds
get their Celery messages as a web process's would (the dispatch plan first, then the
send). It runs nothing and ticks no schedule: the worker's runner and the web processes
do that. Waiting for another task's end inside a task is refused, as Celery refuses
``result.get()`` in a task: the waiting task holds a pool process, and with every pool
process so held the task waited for never starts. Chain the work instead
(``depends_on``, ``chain``, ``chord``).
"""

from __future__ import annotations

import time

from ..core import TaskService
from ..cursor import CursorCodec
from ..models import TaskRecord

WAIT_REFUSED = ("waiting for a task inside a task on a Celery worker could deadlock the "
                "pool (the waiting task holds a pool process); chain the work instead: "
                "depends_on, chain() or chord()")


class WaitInsideWorker(RuntimeError):
    """A task on a Celery worker waited for another task's end."""


class WorkerFront(TaskService):
    """Submit, read and cancel from a task on a Celery worker (see the module's doc)."""

    async def start(self) -> None:
        """Open the store; no runner, schedules, sweeps or dispatch loop."""
        if self._started_at is not None:
            return
        if self.settings.rate_limits:
            self.registry.override_rate_limits(dict(self.settings.rate_limits))
        await self.store.open()
        self._cursors = CursorCodec(await self.store.cursor_key())
        self._started_at = time.monotonic()

    async def stop(self, grace: float | None = None) -> None:
        """Let the messages being sent go out, then close the store."""
        if self._started_at is None or self._stopped:
            return
        self._stopping = self._stopped = True
        await self.dispatch.stop()
        await self.store.close()

    async def wait(self, task_id: str, timeout: float | None, owner: str | None = None
                   ) -> TaskRecord:
        """The record as it is (``timeout`` 0); any other wait is refused."""
        if timeout == 0:
            return await self.get(task_id, owner)
        raise WaitInsideWorker(WAIT_REFUSED)
