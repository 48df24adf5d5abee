"""The event-loop and thread executors; the process pool lives in :mod:`.process_pool`."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ..context import TaskContext, reset_current, set_current
from .job import Job
from .threads import DaemonThreadPool


class Executor(ABC):
    """Runs one call of a task function. Cancelling ``run`` must stop the work if it can."""

    capacity: int
    """How many calls can truly run at once; the scheduler never starts more."""

    @property
    def cancellable(self) -> bool:
        """False when cancelling ``run`` would abandon work that goes on (threads)."""
        return True

    @abstractmethod
    async def run(self, job: Job, context: TaskContext) -> Any:
        """Run the job's call to its end and return its value (or raise its exception)."""

    async def close(self) -> None:
        """Release workers. Work still running is abandoned."""


class AsyncExecutor(Executor):
    """``async def`` tasks, on the event loop itself."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    async def run(self, job: Job, context: TaskContext) -> Any:
        token = set_current(context)
        try:
            return await job.task_type.fn(*job.args, **job.kwargs)
        finally:
            reset_current(token)


class ThreadExecutor(Executor):
    """Plain ``def`` tasks, in a thread pool; they can only stop themselves."""

    def __init__(self, capacity: int, initializer: Callable[[], object] | None = None) -> None:
        self.capacity = capacity
        self._pool = DaemonThreadPool(capacity, "offload", initializer)

    @property
    def cancellable(self) -> bool:
        return False

    async def run(self, job: Job, context: TaskContext) -> Any:
        ctx = contextvars.Context()  # fresh: nothing the loop's side set reaches the thread
        ctx.run(set_current, context)
        target = functools.partial(ctx.run, job.task_type.fn, *job.args, **job.kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, target)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
